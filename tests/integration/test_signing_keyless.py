"""Keyless signing and verification, end to end against the local Sigstore stand-in.

The real sigstore-python Signer and Verifier run unchanged; only the services are local.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore.models import ClientTrustConfig
from sigstore_standin import GITHUB_ISSUER, SigstoreStandin

from ocimodel.errors import OcimodelError, UsageError, VerificationError
from ocimodel.signing.keyless import obtain_identity_token, sign_statement_keyless, trust_config
from ocimodel.signing.keys import generate_keypair
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.signing.statement import build_statement
from ocimodel.signing.verify import verify_blob, verify_bundle

pytest_plugins = ["sigstore_fixtures"]

REPO = "registry.example/models/bert"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
ALICE = "alice@example.com"
ISSUER = "https://issuer.example"
AMBIENT_VARS = (
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "GOOGLE_SERVICE_ACCOUNT_NAME",
)
WORKFLOW = "acme/models/.github/workflows/release.yml@refs/tags/v1"


@pytest.fixture(scope="module")
def config(sigstore_standin: SigstoreStandin) -> ClientTrustConfig:
    return trust_config(path=sigstore_standin.trust_config_path)


@pytest.fixture(scope="module")
def alice_bundle(sigstore_standin: SigstoreStandin, config: ClientTrustConfig) -> str:
    token = obtain_identity_token(sigstore_standin.mint_token(ALICE, ISSUER), interactive=False)
    return sign_statement_keyless(build_statement(REPO, DIGEST, {"stage": "prod"}), token, config)


@pytest.fixture
def no_ambient(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AMBIENT_VARS, "OCIMODEL_IDENTITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def policy(standin: SigstoreStandin, **rules: str) -> VerificationPolicy:
    return VerificationPolicy(trusted_root=standin.trusted_root_path, **rules)


def test_exact_identity_and_issuer(sigstore_standin: SigstoreStandin, alice_bundle: str) -> None:
    info = verify_bundle(
        alice_bundle,
        DIGEST,
        policy(sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer=ISSUER),
    )
    assert (info.kind, info.signer, info.issuer, info.digest) == ("keyless", ALICE, ISSUER, DIGEST)
    assert info.signed_at is not None
    assert abs(info.signed_at - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)
    doc = json.loads(alice_bundle)
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert doc["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"] == "dsse"


def test_identity_regexp_must_match_whole_identity(
    sigstore_standin: SigstoreStandin, alice_bundle: str
) -> None:
    ok = policy(
        sigstore_standin,
        certificate_identity_regexp=r"[a-z]+@example\.com",
        certificate_oidc_issuer=ISSUER,
    )
    assert verify_bundle(alice_bundle, DIGEST, ok).signer == ALICE
    for partial in ("alice", r"alice@example", r"example\.com"):
        rules = policy(
            sigstore_standin, certificate_identity_regexp=partial, certificate_oidc_issuer=ISSUER
        )
        with pytest.raises(VerificationError, match="wrong identity"):
            verify_bundle(alice_bundle, DIGEST, rules)


def test_issuer_regexp(sigstore_standin: SigstoreStandin, alice_bundle: str) -> None:
    ok = policy(
        sigstore_standin,
        certificate_identity=ALICE,
        certificate_oidc_issuer_regexp=r"https://issuer\.(example|test)",
    )
    assert verify_bundle(alice_bundle, DIGEST, ok).issuer == ISSUER
    prefix = policy(
        sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer_regexp="https://iss"
    )
    with pytest.raises(VerificationError, match="wrong issuer"):
        verify_bundle(alice_bundle, DIGEST, prefix)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            {"certificate_identity": "mallory@example.com", "certificate_oidc_issuer": ISSUER},
            "wrong identity",
        ),
        (
            {
                "certificate_identity": ALICE,
                "certificate_oidc_issuer": "https://accounts.google.com",
            },
            "wrong issuer",
        ),
        (
            {
                "certificate_identity": ALICE,
                "certificate_oidc_issuer": ISSUER,
                "certificate_github_workflow_repository": "acme/models",
            },
            "wrong GitHub workflow repository",
        ),
    ],
)
def test_policy_refusals(
    sigstore_standin: SigstoreStandin, alice_bundle: str, rules: dict[str, str], message: str
) -> None:
    with pytest.raises(VerificationError, match=message):
        verify_bundle(alice_bundle, DIGEST, policy(sigstore_standin, **rules))


def test_other_digest_refused(sigstore_standin: SigstoreStandin, alice_bundle: str) -> None:
    rules = policy(sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer=ISSUER)
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_bundle(alice_bundle, OTHER_DIGEST, rules)


def test_tampered_payload_refused(sigstore_standin: SigstoreStandin, alice_bundle: str) -> None:
    doc = json.loads(alice_bundle)
    forged = build_statement(REPO, OTHER_DIGEST, {"stage": "prod"})
    doc["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()
    rules = policy(sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer=ISSUER)
    with pytest.raises(VerificationError, match="signature invalid"):
        verify_bundle(json.dumps(doc), OTHER_DIGEST, rules)


def test_production_root_does_not_trust_standin(alice_bundle: str) -> None:
    rules = VerificationPolicy(certificate_identity=ALICE, certificate_oidc_issuer=ISSUER)
    with pytest.raises(VerificationError, match="untrusted certificate"):
        verify_bundle(alice_bundle, DIGEST, rules)


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"certificate_identity": ALICE},
        {"certificate_oidc_issuer": ISSUER},
        {"certificate_github_workflow_repository": "a/b"},
    ],
)
def test_keyless_needs_identity_and_issuer(
    sigstore_standin: SigstoreStandin, alice_bundle: str, rules: dict[str, str]
) -> None:
    with pytest.raises(UsageError):
        verify_bundle(alice_bundle, DIGEST, policy(sigstore_standin, **rules))


def test_key_only_policy_refuses_keyless_bundle(
    sigstore_standin: SigstoreStandin, alice_bundle: str, tmp_path: Path
) -> None:
    _, public = generate_keypair(tmp_path / "unused", b"pw")
    rules = VerificationPolicy(keys=(public,), trusted_root=sigstore_standin.trusted_root_path)
    with pytest.raises(VerificationError, match="trusts only keys"):
        verify_bundle(alice_bundle, DIGEST, rules)
    # A key file that cannot be read is a usage error, not "no matching signature".
    missing = VerificationPolicy(keys=(tmp_path / "missing.pub",), trusted_root=sigstore_standin.trusted_root_path)
    with pytest.raises(UsageError, match="cannot read public key"):
        verify_bundle(alice_bundle, DIGEST, missing)


def test_github_actions_ambient_credential(
    sigstore_standin: SigstoreStandin,
    config: ClientTrustConfig,
    monkeypatch: pytest.MonkeyPatch,
    no_ambient: None,
) -> None:
    for name, value in sigstore_standin.github_env("acme/models", WORKFLOW).items():
        monkeypatch.setenv(name, value)
    token = obtain_identity_token(None, interactive=False)
    assert token.issuer == GITHUB_ISSUER
    bundle = sign_statement_keyless(build_statement(REPO, DIGEST), token, config)
    rules = policy(
        sigstore_standin,
        certificate_identity=f"https://github.com/{WORKFLOW}",
        certificate_oidc_issuer=GITHUB_ISSUER,
        certificate_github_workflow_repository="acme/models",
    )
    info = verify_bundle(bundle, DIGEST, rules)
    assert (info.signer, info.issuer) == (f"https://github.com/{WORKFLOW}", GITHUB_ISSUER)
    other_repo = policy(
        sigstore_standin,
        certificate_identity_regexp=r"https://github\.com/acme/.+",
        certificate_oidc_issuer=GITHUB_ISSUER,
        certificate_github_workflow_repository="acme/other",
    )
    with pytest.raises(VerificationError, match="wrong GitHub workflow repository"):
        verify_bundle(bundle, DIGEST, other_repo)


def test_github_actions_bad_request_token(
    sigstore_standin: SigstoreStandin, monkeypatch: pytest.MonkeyPatch, no_ambient: None
) -> None:
    for name, value in sigstore_standin.github_env("acme/models", WORKFLOW).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "not-the-token")
    with pytest.raises(UsageError, match="ambient CI credential"):
        obtain_identity_token(None, interactive=False)


def test_token_sources(sigstore_standin: SigstoreStandin, no_ambient: None) -> None:
    env_token = sigstore_standin.mint_token("bob@example.com", ISSUER)
    token = obtain_identity_token(
        None, interactive=False, environ={"OCIMODEL_IDENTITY_TOKEN": env_token}
    )
    assert token.identity == "bob@example.com"
    explicit = sigstore_standin.mint_token(ALICE, ISSUER)
    assert (
        obtain_identity_token(
            explicit, interactive=False, environ={"OCIMODEL_IDENTITY_TOKEN": env_token}
        ).identity
        == ALICE
    )
    with pytest.raises(UsageError, match="OCIMODEL_IDENTITY_TOKEN"):
        obtain_identity_token(None, interactive=False, environ={})
    expired = sigstore_standin.mint_token(ALICE, ISSUER, lifetime=-60)
    with pytest.raises(UsageError, match="rejected"):
        obtain_identity_token(expired, interactive=False)


def test_fulcio_refuses_token_not_from_the_provider(
    sigstore_standin: SigstoreStandin, config: ClientTrustConfig
) -> None:
    claims = jwt.decode(
        sigstore_standin.mint_token(ALICE, ISSUER), options={"verify_signature": False}
    )
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    token = obtain_identity_token(forged, interactive=False)  # sigstore does not check signatures
    with pytest.raises(OcimodelError, match="keyless signing failed"):
        sign_statement_keyless(build_statement(REPO, DIGEST), token, config)


def test_verify_blob_message_signature(
    sigstore_standin: SigstoreStandin, config: ClientTrustConfig, tmp_path: Path
) -> None:
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    blob = tmp_path / "model.bin"
    blob.write_bytes(b"weights" * 1000)
    with SigningContext.from_trust_config(config).signer(
        IdentityToken(sigstore_standin.mint_token(ALICE, ISSUER))
    ) as signer:
        bundle = signer.sign_artifact(blob.read_bytes())
    bundle_path = tmp_path / "model.bin.sigstore.json"
    bundle_path.write_text(bundle.to_json())
    rules = policy(sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer=ISSUER)
    info = verify_blob(blob, bundle_path, rules)
    assert info.digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    blob.write_bytes(b"poisoned")
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_blob(blob, bundle_path, rules)


def test_verify_blob_dsse_bundle(
    sigstore_standin: SigstoreStandin, config: ClientTrustConfig, tmp_path: Path
) -> None:
    blob = tmp_path / "config.json"
    blob.write_bytes(b'{"layers": []}')
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    token = obtain_identity_token(sigstore_standin.mint_token(ALICE, ISSUER), interactive=False)
    bundle_path = tmp_path / "config.json.sigstore.json"
    bundle_path.write_text(sign_statement_keyless(build_statement(REPO, digest), token, config))
    rules = policy(sigstore_standin, certificate_identity=ALICE, certificate_oidc_issuer=ISSUER)
    assert verify_blob(blob, bundle_path, rules).digest == f"sha256:{digest}"
    blob.write_bytes(b"{}")
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_blob(blob, bundle_path, rules)
