"""Key mode: key generation, signing and verification with local ECDSA P-256 keys."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from ocimodel.errors import UsageError, VerificationError
from ocimodel.signing import keys
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.signing.statement import PREDICATE_TYPE, build_statement
from ocimodel.signing.verify import verify_blob, verify_bundle

DIGEST = "sha256:" + "12" * 32
PASSWORD = b"correct horse"


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return keys.generate_keypair(tmp_path / "signer", PASSWORD)


def sign(key: Path, digest: str = DIGEST) -> str:
    return keys.sign_statement_with_key(build_statement("reg.example/m", digest), key, PASSWORD)


def test_keygen_writes_encrypted_key(keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    assert key.name == "signer.key" and pub.name == "signer.pub"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(UsageError, match=r"signer\.key: wrong password"):
        keys.load_private_key(key, b"wrong")
    with pytest.raises(UsageError, match=r"no password given for private key .*signer\.key"):
        keys.load_private_key(key, b"")
    with pytest.raises(UsageError, match="already exists"):
        keys.generate_keypair(key.with_suffix(""), PASSWORD)


def test_keygen_refuses_unencrypted(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="encrypted"):
        keys.generate_keypair(tmp_path / "k", b"")
    assert not (tmp_path / "k.key").exists()


def test_key_password_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keys.key_password(confirm=True, environ={"OCIMODEL_KEY_PASSWORD": "s3cret"}) == b"s3cret"
    with pytest.raises(UsageError, match="OCIMODEL_KEY_PASSWORD"):
        keys.key_password(confirm=True, environ={}, interactive=False)
    answers = iter(["typed", "typed"])
    monkeypatch.setattr(keys.getpass, "getpass", lambda prompt: next(answers))
    assert keys.key_password(confirm=True, environ={}, interactive=True) == b"typed"
    answers = iter(["one", "two"])
    with pytest.raises(UsageError, match="differ"):
        keys.key_password(confirm=True, environ={}, interactive=True)


def test_sign_and_verify(keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    bundle = sign(key)
    doc = json.loads(bundle)
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    hint = keys.fingerprint(keys.load_public_key(pub))
    assert doc["verificationMaterial"] == {"publicKey": {"hint": hint}}
    assert doc["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    info = verify_bundle(bundle, DIGEST, VerificationPolicy(keys=(pub,)))
    assert (info.kind, info.signer, info.digest) == ("key", hint, DIGEST)


def test_wrong_key_refused(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_pub = keys.generate_keypair(tmp_path / "other", PASSWORD)
    with pytest.raises(VerificationError, match="wrong key"):
        verify_bundle(sign(keypair[0]), DIGEST, VerificationPolicy(keys=(other_pub,)))


def test_any_of_several_keys(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_pub = keys.generate_keypair(tmp_path / "other", PASSWORD)
    info = verify_bundle(sign(keypair[0]), DIGEST, VerificationPolicy(keys=(other_pub, keypair[1])))
    assert info.signer == keys.fingerprint(keys.load_public_key(keypair[1]))


def test_tampered_payload_refused(keypair: tuple[Path, Path]) -> None:
    doc = json.loads(sign(keypair[0]))
    forged = build_statement("reg.example/m", "sha256:" + "34" * 32)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()
    with pytest.raises(VerificationError, match="wrong key"):
        verify_bundle(json.dumps(doc), "34" * 32, VerificationPolicy(keys=(keypair[1],)))


def test_other_digest_and_missing_key_refused(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = sign(keypair[0])
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_bundle(bundle, "sha256:" + "34" * 32, VerificationPolicy(keys=(keypair[1],)))
    rules = VerificationPolicy(
        certificate_identity="a@example.com", certificate_oidc_issuer="https://i"
    )
    with pytest.raises(VerificationError, match="names no key"):
        verify_bundle(bundle, DIGEST, rules)


def test_cosign_statement_without_subject_name(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    """cosign writes subjects without ``name``; they must still verify (and verify-blob)."""
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00" * 4096)
    import hashlib

    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": hashlib.sha256(blob.read_bytes()).hexdigest()}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {},
        }
    ).encode()
    bundle = tmp_path / "weights.bin.sigstore.json"
    bundle.write_text(keys.sign_statement_with_key(statement, keypair[0], PASSWORD))
    assert verify_blob(blob, bundle, VerificationPolicy(keys=(keypair[1],))).kind == "key"


@pytest.mark.parametrize(
    "path, value",
    [(("mediaType",), []), (("mediaType",), {}), (("verificationMaterial", "publicKey"), None),
     (("verificationMaterial", "publicKey"), "hint"), (("verificationMaterial", "publicKey"), [])],
)
def test_bundle_fields_of_the_wrong_type_are_a_bad_bundle_not_a_crash(
    keypair: tuple[Path, Path], path: tuple[str, ...], value: object
) -> None:
    # A registry writer can attach any JSON as a bundle: wrong types are refused, never a traceback.
    doc = json.loads(sign(keypair[0]))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(VerificationError, match="bad bundle"):
        verify_bundle(json.dumps(doc), DIGEST, VerificationPolicy(keys=(keypair[1],)))
