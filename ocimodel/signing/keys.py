"""Key mode: ECDSA P-256 key pairs, and DSSE bundles signed with them.

``P.key`` is an encrypted PKCS#8 PEM private key (never written unencrypted), ``P.pub``
the SubjectPublicKeyInfo PEM; cosign's ``cosign.key`` (:mod:`.cosignkey`) and
``cosign.pub`` are read too. A key-mode bundle is a v0.3 Sigstore bundle whose
``verificationMaterial.publicKey.hint`` is the key fingerprint as cosign writes it (base64
sha256 of the DER SubjectPublicKeyInfo; older ocimodel wrote hex, still recognised), with
no transparency log entry; its DSSE signature is
ECDSA P-256 / SHA-256 over the PAE. sigstore-python can neither write nor read such
bundles (sigstore-python#1244), so both directions live here.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ocimodel.errors import UsageError, VerificationError
from ocimodel.signing import cosignkey
from ocimodel.signing.statement import BUNDLE_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPES, PAYLOAD_TYPE, pae

PASSWORD_ENV = "OCIMODEL_KEY_PASSWORD"


def key_password(
    *, confirm: bool, environ: Mapping[str, str] | None = None, interactive: bool | None = None
) -> bytes:
    """The key password: ``OCIMODEL_KEY_PASSWORD``, else asked on the terminal.

    ``confirm`` asks twice (for keygen). Without the variable and without a terminal this
    is a UsageError: ocimodel never silently uses an empty password.
    """
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV].encode()
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise UsageError(
            f"no key password: set {PASSWORD_ENV} or run on a terminal "
            "(ocimodel does not use unencrypted private keys)"
        )
    password = getpass.getpass("Key password: ")
    if confirm and getpass.getpass("Key password (again): ") != password:
        raise UsageError("the two passwords differ")
    if confirm and not password:
        raise UsageError("empty key password refused: the private key must be encrypted")
    return password.encode()


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key hint as cosign writes it: standard base64 of sha256(DER SubjectPublicKeyInfo)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _hints(public_key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    """The hints this key may appear under: cosign's, and the hex one older ocimodel wrote."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return fingerprint(public_key), hashlib.sha256(der).hexdigest()


def generate_keypair(prefix: Path, password: bytes) -> tuple[Path, Path]:
    """Write ``prefix.key`` (encrypted, mode 0600) and ``prefix.pub``; never overwrite."""
    if not password:
        raise UsageError("empty key password refused: the private key must be encrypted")
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise UsageError(f"{path} already exists; not overwriting it")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    pub_path.write_bytes(public_pem)
    return key_path, pub_path


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


PRIVATE_FORMATS = (
    "cosign's ENCRYPTED SIGSTORE PRIVATE KEY (cosign generate-key-pair) "
    "or an encrypted PKCS#8 ENCRYPTED PRIVATE KEY PEM (ocimodel keygen)"
)
_UNENCRYPTED = ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY")


def _p256_private(key: object, path: Path) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError(f"{path} is not an ECDSA P-256 private key (the only kind ocimodel signs with)")
    return key


def load_private_key(path: Path, password: bytes) -> ec.EllipticCurvePrivateKey:
    """Decrypt the private key at ``path``: cosign's format or encrypted PKCS#8.

    The UsageError says which of "wrong password" and "not a key format ocimodel reads"
    happened.
    """
    data = _read(path, "private key")
    if not password:
        raise UsageError(f"no password given for private key {path}")
    kind = cosignkey.pem_type(data)
    if kind in cosignkey.COSIGN_PEM_TYPES:
        try:
            return _p256_private(cosignkey.decrypt_cosign_key(data, password), path)
        except cosignkey.WrongPassword:
            raise UsageError(f"cannot decrypt private key {path}: wrong password") from None
        except cosignkey.NotCosignKey as exc:
            raise UsageError(f"{path} is a damaged cosign key ({exc}); expected {PRIVATE_FORMATS}") from None
    if kind in _UNENCRYPTED:
        raise UsageError(f"{path} is not encrypted; ocimodel only uses encrypted keys")
    if kind == "PUBLIC KEY":
        raise UsageError(f"{path} is a public key; signing needs the private key (e.g. cosign.key)")
    if kind != "ENCRYPTED PRIVATE KEY":
        raise UsageError(f"{path} is not a key format ocimodel reads (expected {PRIVATE_FORMATS})")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except ValueError as exc:
        if "Incorrect password" in str(exc):
            raise UsageError(f"cannot decrypt private key {path}: wrong password") from None
        raise UsageError(f"{path} is not a key format ocimodel reads (expected {PRIVATE_FORMATS})") from None
    return _p256_private(key, path)


PUBLIC_FORMATS = "an ECDSA P-256 PUBLIC KEY PEM (cosign.pub, or ocimodel keygen's .pub)"


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The ECDSA P-256 public key in the PEM file at ``path`` (cosign's ``cosign.pub``)."""
    data = _read(path, "public key")
    kind = cosignkey.pem_type(data)
    if kind is not None and "PRIVATE KEY" in kind:
        raise UsageError(f"{path} is a private key; verifying needs the public key (e.g. cosign.pub)")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise UsageError(f"{path} is not a key format ocimodel reads (expected {PUBLIC_FORMATS})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise UsageError(f"{path} is not an ECDSA P-256 public key (expected {PUBLIC_FORMATS})")
    return key


def sign_statement_with_key(statement: bytes, key_path: Path, password: bytes) -> str:
    """A v0.3 bundle (JSON) holding a DSSE envelope of ``statement`` signed by the key."""
    key = load_private_key(key_path, password)
    signature = key.sign(pae(PAYLOAD_TYPE, statement), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": fingerprint(key.public_key())}},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle)


def _envelope_parts(bundle: Mapping[str, Any]) -> tuple[str, bytes, bytes]:
    """``(payload_type, payload, signature)`` of a key-mode bundle, or VerificationError."""
    media_type = bundle.get("mediaType")
    if not isinstance(media_type, str) or media_type not in BUNDLE_V03_MEDIA_TYPES:
        raise VerificationError(f"bad bundle: unsupported media type {str(media_type)[:80]!r}")
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise VerificationError("bad bundle: a key-signed bundle must hold a DSSE envelope")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise VerificationError("bad bundle: DSSE envelope must have exactly one signature")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(signatures[0]["sig"], validate=True)
        payload_type = str(envelope["payloadType"])
    except (KeyError, TypeError, binascii.Error) as exc:
        raise VerificationError(f"bad bundle: malformed DSSE envelope ({exc})") from None
    return payload_type, payload, signature


def key_hint(bundle: Mapping[str, Any]) -> object:
    """``verificationMaterial.publicKey.hint`` of a key-signed bundle (any JSON value)."""
    material = bundle.get("verificationMaterial")
    public_key = material.get("publicKey") if isinstance(material, dict) else None
    if not isinstance(public_key, dict):
        raise VerificationError("bad bundle: verificationMaterial.publicKey must be an object")
    return public_key.get("hint")


def matching_key(
    public_keys: Sequence[Path], hint: object, signature: bytes, signed: bytes, *, prehashed: bool = False
) -> str:
    """The fingerprint of the first of ``public_keys`` whose ECDSA/SHA-256 signature over
    ``signed`` (a sha256 digest when ``prehashed``) is ``signature``; VerificationError if none.

    The hint only orders the attempts: it is not trusted.
    """
    keys = [load_public_key(path) for path in public_keys]
    keys.sort(key=lambda k: hint not in _hints(k))
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256())
    for key in keys:
        try:
            key.verify(signature, signed, algorithm)
        except InvalidSignature:
            continue
        return fingerprint(key)
    names = ", ".join(str(p) for p in public_keys)
    raise VerificationError(
        f"wrong key: the signature does not verify with any of: {names} "
        "(signed by another key, or the content was altered)"
    )


def verify_key_bundle(
    bundle: Mapping[str, Any], public_keys: Sequence[Path]
) -> tuple[str, bytes, str]:
    """Check a key-mode DSSE bundle against ``public_keys``; any one may match.

    Returns ``(payload_type, payload, fingerprint of the matching key)``.
    """
    payload_type, payload, signature = _envelope_parts(bundle)
    hint = key_hint(bundle)
    return payload_type, payload, matching_key(public_keys, hint, signature, pae(payload_type, payload))
