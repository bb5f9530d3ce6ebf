"""Keys and bundles cosign users already have: ``cosign.key``/``cosign.pub`` and the bundles of
``cosign sign-blob --key``.

The test side writes cosign's formats from their specification (go-securesystemslib's
``encrypted`` JSON, cosign's bundles: /work/wt/notes/cosign-keys.md), independently of the
code under test, and one key comes from cosign's own test data (tests/data/cosign).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ocimodel.errors import UsageError, VerificationError
from ocimodel.signing import keys
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.signing.statement import build_statement
from ocimodel.signing.verify import verify_blob, verify_bundle

DATA = Path(__file__).parent.parent / "data" / "cosign"
COSIGN_FIXTURE = DATA / "pemsigstorekey.key"  # written by cosign; password "hello"
DIGEST = "sha256:" + "ab" * 32


def pem(kind: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def cosign_encrypt(
    der: bytes, password: bytes, *, n: int = 65536, kind: str = "ENCRYPTED SIGSTORE PRIVATE KEY"
) -> bytes:
    """What ``cosign generate-key-pair`` writes: scrypt + secretbox over PKCS#8 DER, in JSON
    with Go's field order and padded standard base64, in a PEM block."""
    salt, nonce = os.urandom(32), os.urandom(24)
    key = hashlib.scrypt(password, salt=salt, n=n, r=8, p=1, dklen=32, maxmem=256 * 2**20)
    ciphertext = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(ciphertext),
    }
    return pem(kind, json.dumps(doc, separators=(",", ":")).encode()).encode()


def pkcs8(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def cosign_pair(tmp_path: Path) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    """A cosign-format key pair (the cheaper legacy scrypt cost), password "pw"."""
    private = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "cosign.key").write_bytes(cosign_encrypt(pkcs8(private), b"pw", n=32768))
    (tmp_path / "cosign.pub").write_bytes(public_pem(private))
    return tmp_path / "cosign.key", tmp_path / "cosign.pub", private


# --- cosign.key / cosign.pub -------------------------------------------------------------


def test_key_written_by_cosign_signs_and_its_public_key_verifies(tmp_path: Path) -> None:
    key = keys.load_private_key(COSIGN_FIXTURE, b"hello")
    (tmp_path / "cosign.pub").write_bytes(public_pem(key))
    bundle = keys.sign_statement_with_key(build_statement("r/m", DIGEST), COSIGN_FIXTURE, b"hello")
    info = verify_bundle(bundle, DIGEST, VerificationPolicy(keys=(tmp_path / "cosign.pub",)))
    assert info.kind == "key" and info.signer == keys.fingerprint(key.public_key())
    with pytest.raises(UsageError, match=r"pemsigstorekey\.key: wrong password$"):
        keys.load_private_key(COSIGN_FIXTURE, b"hello\n")  # stdin's newline is part of a password


@pytest.mark.parametrize("kind, n", [("ENCRYPTED SIGSTORE PRIVATE KEY", 65536),  # cosign's default today
                                     ("ENCRYPTED SIGSTORE PRIVATE KEY", 32768),  # older cosign
                                     ("ENCRYPTED COSIGN PRIVATE KEY", 32768)])  # before 2022
def test_cosign_key_types_and_scrypt_costs(tmp_path: Path, kind: str, n: int) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "cosign.key"
    path.write_bytes(cosign_encrypt(pkcs8(private), b"pw", n=n, kind=kind))
    loaded = keys.load_private_key(path, b"pw")
    assert loaded.private_numbers() == private.private_numbers()
    with pytest.raises(UsageError, match="wrong password"):
        keys.load_private_key(path, b"pW")


def test_attacker_chosen_scrypt_cost_is_refused_before_running_scrypt(tmp_path: Path) -> None:
    data = cosign_encrypt(pkcs8(ec.generate_private_key(ec.SECP256R1())), b"pw", n=32768)
    body = json.loads(base64.b64decode(b"".join(data.splitlines()[1:-1])))
    body["kdf"]["params"]["N"] = 2**30  # 1 TiB of scrypt memory if honoured
    (tmp_path / "k.key").write_bytes(pem("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(body).encode()).encode())
    with pytest.raises(UsageError, match="damaged cosign key .*unsupported scrypt parameters"):
        keys.load_private_key(tmp_path / "k.key", b"pw")


def _damaged(field: str, value: object) -> bytes:
    data = cosign_encrypt(pkcs8(ec.generate_private_key(ec.SECP256R1())), b"pw", n=32768)
    body = json.loads(base64.b64decode(b"".join(data.splitlines()[1:-1])))
    holder = body["cipher"] if field == "nonce" else body["kdf"] if field in ("name", "salt") else body
    holder[field] = value
    return pem("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(body).encode()).encode()


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
         "damaged cosign key (the PEM body is not the expected JSON"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJ9\n", "damaged cosign key (the ENCRYPTED SIGSTORE"),
        (_damaged("name", "argon2"), "damaged cosign key (unsupported kdf 'argon2'"),
        (_damaged("nonce", "AAAA"), "damaged cosign key (bad salt, nonce or ciphertext length"),
        (_damaged("ciphertext", "AAAA"), "damaged cosign key (bad salt, nonce or ciphertext length"),
        (_damaged("salt", "!!"), "damaged cosign key (field 'salt' is not base64"),
        (b"not a key at all\n", "is not a key format ocimodel reads (expected cosign's ENCRYPTED SIGSTORE"),
        (pem("CERTIFICATE", b"\x30\x00").encode(), "is not a key format ocimodel reads"),
        (pem("ENCRYPTED PRIVATE KEY", b"\x30\x03\x02\x01\x00").encode(), "is not a key format ocimodel reads"),
        (pem("PRIVATE KEY", pkcs8(ec.generate_private_key(ec.SECP256R1()))).encode(), "is not encrypted"),
        (pem("PUBLIC KEY", b"\x30\x00").encode(), "is a public key; signing needs the private key"),
    ],
)
def test_not_a_key_format_is_told_apart_from_a_wrong_password(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(data)
    with pytest.raises(UsageError) as raised:
        keys.load_private_key(path, b"pw")
    assert fragment in str(raised.value) and "wrong password" not in str(raised.value)


@pytest.mark.parametrize(
    "private", [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP384R1())], ids=["ed25519", "p384"]
)
def test_cosign_keys_of_other_algorithms_are_named(tmp_path: Path, private: object) -> None:
    (tmp_path / "k.key").write_bytes(cosign_encrypt(pkcs8(private), b"pw", n=32768))
    with pytest.raises(UsageError, match="not an ECDSA P-256 private key"):
        keys.load_private_key(tmp_path / "k.key", b"pw")


def test_encrypted_pkcs8_wrong_password_and_rsa(tmp_path: Path) -> None:
    made, _ = keys.generate_keypair(tmp_path / "own", b"pw")
    with pytest.raises(UsageError, match="own.key: wrong password$"):
        keys.load_private_key(made, b"other")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.key").write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(UsageError, match="not an ECDSA P-256 private key"):
        keys.load_private_key(tmp_path / "rsa.key", b"pw")


def test_public_key_errors_name_what_was_given(cosign_pair: tuple[Path, Path, ec.EllipticCurvePrivateKey],
                                               tmp_path: Path) -> None:
    key, pub, _ = cosign_pair
    assert keys.load_public_key(pub)  # cosign.pub: a PUBLIC KEY PEM
    with pytest.raises(UsageError, match="is a private key; verifying needs the public key"):
        keys.load_public_key(key)
    (tmp_path / "ed.pub").write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(UsageError, match="not an ECDSA P-256 public key"):
        keys.load_public_key(tmp_path / "ed.pub")
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(UsageError, match="not a key format ocimodel reads"):
        keys.load_public_key(tmp_path / "junk.pub")


def test_hint_is_cosigns_and_old_hex_hints_still_verify(
    cosign_pair: tuple[Path, Path, ec.EllipticCurvePrivateKey], tmp_path: Path
) -> None:
    key, pub, private = cosign_pair
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.standard_b64encode(hashlib.sha256(der).digest()).decode()
    assert len(expected) == 44 and expected.endswith("=")
    doc = json.loads(keys.sign_statement_with_key(build_statement("r/m", DIGEST), key, b"pw"))
    assert doc["verificationMaterial"]["publicKey"]["hint"] == expected
    # A bundle written by an older ocimodel (hex hint) keeps verifying.
    doc["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(der).hexdigest()
    other, _ = keys.generate_keypair(tmp_path / "other", b"pw")
    info = verify_bundle(json.dumps(doc), DIGEST, VerificationPolicy(keys=(other.with_suffix(".pub"), pub)))
    assert info.signer == expected


# --- cosign sign-blob --key --bundle ---------------------------------------------------------


def message_bundle(private: ec.EllipticCurvePrivateKey, content: bytes, *, tlog: bool = False) -> dict:
    """What ``cosign sign-blob --key K --bundle B FILE`` writes (new bundle format)."""
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    material: dict = {"publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}}
    if tlog:  # a Rekor entry as cosign embeds it; ocimodel cannot check it and must not rely on it
        material["tlogEntries"] = [{"logIndex": "1", "logId": {"keyId": "AAAA"},
                                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                                    "integratedTime": "1700000000", "canonicalizedBody": "e30="}]
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256",
                              "digest": base64.b64encode(hashlib.sha256(content).digest()).decode()},
            "signature": base64.b64encode(private.sign(content, ec.ECDSA(hashes.SHA256()))).decode(),
        },
    }


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(5000))
    return path


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "model.bin.sigstore.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("tlog", [False, True], ids=["no-tlog", "tlog"])
def test_sign_blob_message_bundle_verifies_with_key(cosign_pair, blob: Path, tmp_path: Path, tlog: bool) -> None:
    _, pub, private = cosign_pair
    bundle = write(tmp_path, message_bundle(private, blob.read_bytes(), tlog=tlog))
    info = verify_blob(blob, bundle, VerificationPolicy(keys=(pub,)))
    assert info.kind == "key" and info.digest == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert info.signed_at is None  # an unchecked log entry's time is not evidence


def test_message_bundle_refusals(cosign_pair, blob: Path, tmp_path: Path) -> None:
    _, pub, private = cosign_pair
    policy = VerificationPolicy(keys=(pub,))
    # A genuine bundle of another file.
    other = message_bundle(private, b"other content")
    with pytest.raises(VerificationError, match="digest mismatch: the bundle signs sha256:.* but the file's"):
        verify_blob(blob, write(tmp_path, other), policy)
    # Its digest rewritten to the file's: the signature is over the other content.
    other["messageSignature"]["messageDigest"] = message_bundle(private, blob.read_bytes())["messageSignature"][
        "messageDigest"]
    with pytest.raises(VerificationError, match="wrong key"):
        verify_blob(blob, write(tmp_path, other), policy)
    # Signed by another key.
    stranger = message_bundle(ec.generate_private_key(ec.SECP256R1()), blob.read_bytes())
    with pytest.raises(VerificationError, match="wrong key"):
        verify_blob(blob, write(tmp_path, stranger), policy)
    good = message_bundle(private, blob.read_bytes())
    with pytest.raises(VerificationError, match="names no key"):
        verify_blob(blob, write(tmp_path, good), VerificationPolicy(certificate_identity="a@b.c",
                                                                    certificate_oidc_issuer="https://i"))
    for mutate, fragment in [
        (lambda d: d["messageSignature"]["messageDigest"].update(algorithm="SHA2_384"), "only SHA2_256"),
        (lambda d: d.update(dsseEnvelope={}), "both a message signature and a DSSE envelope"),
        (lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.1"), "media type"),
        (lambda d: d["messageSignature"].update(signature="%%"), "not base64"),
        (lambda d: d["messageSignature"].update(messageDigest=[]), "messageDigest must be an object"),
        (lambda d: d["verificationMaterial"].update(publicKey="x"), "publicKey must be an object"),
    ]:
        doc = json.loads(json.dumps(good))
        mutate(doc)
        with pytest.raises(VerificationError, match=fragment):
            verify_blob(blob, write(tmp_path, doc), policy)


def test_legacy_sign_blob_bundle(cosign_pair, blob: Path, tmp_path: Path) -> None:
    _, pub, private = cosign_pair
    signature = private.sign(blob.read_bytes(), ec.ECDSA(hashes.SHA256()))
    legacy = {"base64Signature": base64.b64encode(signature).decode(),
              "rekorBundle": {"SignedEntryTimestamp": "AAAA", "Payload": {"logIndex": 1}}}
    assert verify_blob(blob, write(tmp_path, legacy), VerificationPolicy(keys=(pub,))).kind == "key"
    tampered = blob.read_bytes()[:-1] + b"!"
    blob.write_bytes(tampered)
    with pytest.raises(VerificationError, match="wrong key"):
        verify_blob(blob, write(tmp_path, legacy), VerificationPolicy(keys=(pub,)))
    with pytest.raises(VerificationError, match="legacy cosign bundle with a certificate"):
        verify_blob(blob, write(tmp_path, {**legacy, "cert": "LS0tLS1CRUdJTg=="}), VerificationPolicy(keys=(pub,)))


# --- the signed statement, as cosign verify -a reads it ------------------------------------


def test_annotations_go_where_cosign_verify_a_matches_them() -> None:
    from ocimodel.signing.statement import parse_statement

    doc = json.loads(build_statement("r/m", DIGEST, {"stage": "prod"}))
    [subject] = doc["subject"]
    assert subject["digest"] == {"sha256": "ab" * 32} and subject["annotations"] == {"stage": "prod"}
    assert doc["predicate"] == {} and doc["predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert parse_statement(json.dumps(doc).encode()).annotations == {"stage": "prod"}
    assert "annotations" not in json.loads(build_statement("r/m", DIGEST))["subject"][0]
    # Statements signed before the move carried them in the predicate: still read.
    old = {**doc, "subject": [{"name": "r/m", "digest": {"sha256": "ab" * 32}}],
           "predicate": {"annotations": {"stage": "dev", "n": 3}}}
    assert parse_statement(json.dumps(old).encode()).annotations == {"stage": "dev"}
