"""Auth against real registries: TLS + Basic (htpasswd), Bearer tokens; challenge parsing."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from registry_fixtures import RegistryServer, TokenRegistry, fast_retry

from ocimodel.descriptor import LAYER_MEDIA_TYPE, MANIFEST_V1, Descriptor, Manifest
from ocimodel.errors import AuthError, NetworkError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore


def _round_trip(client: RegistryClient, server: RegistryServer, repo: str, payload: bytes = b"w") -> None:
    """Push a blob and a manifest, read both back."""
    ref = Reference(server.host, repo, "v1")
    config = client.push_blob_bytes(ref, "application/vnd.ocimodel.config.v1+json", b"{}")
    layer = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, payload)
    manifest = Manifest.build(config, [layer])
    client.put_manifest(ref, manifest.raw, MANIFEST_V1)
    assert client.get_manifest(ref).raw == manifest.raw
    assert client.fetch_blob_bytes(ref, layer) == payload


def _login(server: RegistryServer) -> None:
    """Store the fixture's right username and password in the test's DOCKER_CONFIG."""
    assert server.username and server.password
    CredentialStore().login(server.host, server.username, server.password)


# -- challenge parsing -------------------------------------------------------------------------


# -- TLS + Basic -------------------------------------------------------------------------------


def test_tls_basic_auth_round_trip(tls_basic_registry: RegistryServer, repo: str, docker_config: Path) -> None:
    server = tls_basic_registry
    _login(server)
    with RegistryClient(Connection(ca_file=server.ca_file)) as client:
        client.ping(server.host)
        _round_trip(client, server, repo)


def test_wrong_password_is_auth_error_without_the_password(
    tls_basic_registry: RegistryServer, repo: str, docker_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = tls_basic_registry
    secret = "Wr0ng-but-S3cret-passw0rd"
    assert server.username
    CredentialStore().login(server.host, server.username, secret)
    caplog.set_level(logging.DEBUG)
    with RegistryClient(Connection(ca_file=server.ca_file)) as client:
        with pytest.raises(AuthError, match=f"wrong username or password for {server.host}") as info:
            client.ping(server.host)
        with pytest.raises(AuthError) as info2:
            client.push_blob_bytes(Reference(server.host, repo), LAYER_MEDIA_TYPE, b"x")
    for text in (str(info.value), str(info2.value), repr(info.value), caplog.text):
        assert secret not in text
    assert info.value.exit_code == AuthError.exit_code


def test_no_credentials_says_login(tls_basic_registry: RegistryServer, repo: str, docker_config: Path) -> None:
    server = tls_basic_registry
    with RegistryClient(Connection(ca_file=server.ca_file)) as client:
        with pytest.raises(AuthError, match=f"authentication required for {server.host}: run 'ocimodel login"):
            client.head_manifest(Reference(server.host, repo, "v1"))


def test_tls_without_ca_is_network_error(tls_basic_registry: RegistryServer, docker_config: Path) -> None:
    with RegistryClient(retry=fast_retry()) as client:
        with pytest.raises(NetworkError, match=f"certificate verify failed for {tls_basic_registry.host}: pass --ca-file"):
            client.ping(tls_basic_registry.host)


def test_default_trust_honours_ssl_cert_file(
    tls_basic_registry: RegistryServer, repo: str, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --ca-file the trust is httpx's default, SSL_CERT_FILE included (loaded lazily)."""
    server = tls_basic_registry
    _login(server)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    with RegistryClient(retry=fast_retry()) as client:
        _round_trip(client, server, repo)


def test_insecure_skips_verification(tls_basic_registry: RegistryServer, repo: str, docker_config: Path) -> None:
    server = tls_basic_registry
    _login(server)
    with RegistryClient(Connection(insecure=True)) as client:
        _round_trip(client, server, repo)


# -- Bearer tokens -----------------------------------------------------------------------------


def test_token_flow_and_caching(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    _login(token_registry)
    before = token_registry.token_requests
    with RegistryClient(Connection(plain_http=True)) as client:
        _round_trip(client, token_registry, repo)
        ref = Reference(token_registry.host, repo, "v1")
        for _ in range(20):
            client.head_manifest(ref)
            client.list_tags(ref)
    # One pull,push token for the push; the reads reuse it (it covers pull).
    assert token_registry.token_requests - before == 1


def test_token_wrong_password(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    CredentialStore().login(token_registry.host, "bob", "not-the-password")
    with RegistryClient(Connection(plain_http=True)) as client:
        with pytest.raises(AuthError, match=f"wrong username or password for {token_registry.host}") as info:
            client.head_manifest(Reference(token_registry.host, repo, "v1"))
    assert "not-the-password" not in str(info.value)


def test_token_anonymous_is_denied(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    with RegistryClient(Connection(plain_http=True)) as client:
        with pytest.raises(AuthError, match="run 'ocimodel login"):
            client.head_manifest(Reference(token_registry.host, repo, "v1"))


def test_refused_token_is_fetched_again_once(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    _login(token_registry)
    tokens = token_registry.token_server
    with RegistryClient(Connection(plain_http=True)) as client:
        ref = Reference(token_registry.host, repo, "v1")
        client.head_manifest(ref)  # learn the challenge, cache a good token
        tokens.bad_tokens = 1
        other = Reference(token_registry.host, repo + "x", "v1")
        before = tokens.token_requests
        assert client.head_manifest(other) is None  # bad token refused → new token → 404
        assert tokens.token_requests - before == 2


def test_expired_token_is_refreshed(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    _login(token_registry)
    tokens = token_registry.token_server
    tokens.expires_in = 1
    try:
        with RegistryClient(Connection(plain_http=True)) as client:
            ref = Reference(token_registry.host, repo, "v1")
            client.head_manifest(ref)
            before = tokens.token_requests
            time.sleep(0.6)  # past the 1 s lifetime minus its 0.5 s safety margin
            client.head_manifest(ref)
            assert tokens.token_requests - before == 1
    finally:
        tokens.expires_in = 300


def test_identity_token_uses_oauth2_post(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    (docker_config / "config.json").write_text(
        '{"auths": {"%s": {"identitytoken": "%s"}}}' % (token_registry.host, token_registry.refresh_token)
    )
    tokens = token_registry.token_server
    start = len(tokens.server.requests)
    with RegistryClient(Connection(plain_http=True)) as client:
        _round_trip(client, token_registry, repo)
    methods = {r.method for r in tokens.server.requests[start:]}
    assert methods == {"POST"}


def test_identity_token_falls_back_to_get(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    (docker_config / "config.json").write_text(
        '{"auths": {"%s": {"identitytoken": "%s"}}}' % (token_registry.host, token_registry.refresh_token)
    )
    tokens = token_registry.token_server
    tokens.allow_post = False
    try:
        with RegistryClient(Connection(plain_http=True)) as client:
            _round_trip(client, token_registry, repo)
    finally:
        tokens.allow_post = True


def test_cross_repo_mount_with_tokens(token_registry: TokenRegistry, repo: str, docker_config: Path) -> None:
    _login(token_registry)
    data = b"mount me"
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    with RegistryClient(Connection(plain_http=True)) as client:
        client.push_blob(Reference(token_registry.host, repo), desc, lambda: [data])
        target = Reference(token_registry.host, repo + "-copy")
        client.push_blob(target, desc, lambda: pytest.fail("must mount, not upload"), mount_from=repo)
        assert client.fetch_blob_bytes(target, desc) == data


def test_ping_checks_token_credentials(token_registry: TokenRegistry, docker_config: Path) -> None:
    with RegistryClient(Connection(plain_http=True)) as client:
        client.ping(token_registry.host)  # anonymous tokens may read /v2/
        CredentialStore().login(token_registry.host, "bob", "wrong")
        with pytest.raises(AuthError, match="wrong username or password"):
            RegistryClient(Connection(plain_http=True)).ping(token_registry.host)
    _login(token_registry)
    with RegistryClient(Connection(plain_http=True)) as client:
        client.ping(token_registry.host)
