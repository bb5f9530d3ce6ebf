"""Authentication pieces without a registry: challenge parsing, the deferred TLS trust."""

from __future__ import annotations

import ssl

from ocimodel.registry.auth import Challenge, parse_challenges
from ocimodel.registry.tls import DeferredTrustContext


def test_parse_bearer_challenge_with_commas_in_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://auth.example.com/token"
    assert challenge.scopes == {"repository:a/b:pull,push", "repository:c:pull"}
    assert challenge.params["error"] == "insufficient_scope"


def test_parse_several_challenges_and_escapes() -> None:
    header = 'Basic realm="say \\"hi\\", ok", Bearer realm=https://t/x, service=s'
    assert parse_challenges(header) == [
        Challenge("basic", {"realm": 'say "hi", ok'}),
        Challenge("bearer", {"realm": "https://t/x", "service": "s"}),
    ]


def test_default_trust_is_loaded_at_the_first_tls_connection_only() -> None:
    context = DeferredTrustContext()
    # Verifying from the start: a connection can never happen before the trust is there.
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing loaded yet: start-up stays fast
    context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="registry.example")
    assert context.cert_store_stats()["x509_ca"] > 0
