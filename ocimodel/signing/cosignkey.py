"""Reading the encrypted private keys ``cosign generate-key-pair`` writes (``cosign.key``).

The PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older files: ``ENCRYPTED COSIGN PRIVATE
KEY``) holds a JSON document: scrypt parameters and salt, a NaCl secretbox nonce, and the
ciphertext of the PKCS#8 DER private key (go-securesystemslib's ``encrypted`` format).
Decryption is scrypt(password, salt, N, r=8, p=1, 32 bytes) then XSalsa20-Poly1305; a
failing Poly1305 tag means the password is wrong. Only the three scrypt cost settings cosign
itself accepts are honoured: the parameters come from the file, and an attacker-chosen N
would otherwise let a key file demand gigabytes of memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

COSIGN_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
#: (N, r, p) sets cosign decrypts: legacy 2^15, default 2^16, OWASP 2^17.
SCRYPT_PARAMETERS = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
#: hashlib's default limit (32 MiB) is below what N=2^16 needs (128*r*N = 64 MiB).
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class WrongPassword(Exception):
    """The key is in cosign's format but the password does not open it."""


class NotCosignKey(Exception):
    """The data is not a cosign encrypted private key (the message says what is wrong)."""


@dataclass(frozen=True)
class _Sealed:
    n: int
    r: int
    p: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def pem_type(data: bytes) -> str | None:
    """The type of the first PEM block in ``data`` (``"PUBLIC KEY"``...), or None."""
    start = data.find(b"-----BEGIN ")
    end = data.find(b"-----", start + 11) if start >= 0 else -1
    if end < 0:
        return None
    try:
        return data[start + 11 : end].decode("ascii")
    except UnicodeDecodeError:
        return None


def _pem_body(data: bytes, kind: str) -> bytes:
    begin, end = f"-----BEGIN {kind}-----".encode(), f"-----END {kind}-----".encode()
    start = data.find(begin)
    stop = data.find(end, start)
    if start < 0 or stop < 0:
        raise NotCosignKey(f"the {kind} PEM block is not terminated")
    body = b"".join(data[start + len(begin) : stop].split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise NotCosignKey(f"the {kind} PEM block is not base64") from None


def _b64(doc: dict[str, Any], key: str) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise NotCosignKey(f"field {key!r} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise NotCosignKey(f"field {key!r} is not base64") from None


def _parse(body: bytes) -> _Sealed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotCosignKey("the PEM body is not the expected JSON document") from None
    kdf = doc.get("kdf") if isinstance(doc, dict) else None
    cipher = doc.get("cipher") if isinstance(doc, dict) else None
    if not isinstance(kdf, dict) or not isinstance(cipher, dict):
        raise NotCosignKey("the JSON document has no 'kdf' or 'cipher'")
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise NotCosignKey(
            f"unsupported kdf {str(kdf.get('name'))[:40]!r} / cipher {str(cipher.get('name'))[:40]!r} "
            "(expected scrypt and nacl/secretbox)"
        )
    params = kdf.get("params")
    values = tuple(params.get(k) for k in ("N", "r", "p")) if isinstance(params, dict) else ()
    if values not in SCRYPT_PARAMETERS or any(type(v) is not int for v in values):
        raise NotCosignKey(f"unsupported scrypt parameters {str(params)[:80]} (cosign uses N=2^15..2^17, r=8, p=1)")
    salt, nonce, ciphertext = _b64(kdf, "salt"), _b64(cipher, "nonce"), _b64(doc, "ciphertext")
    if len(nonce) != 24 or not salt or len(ciphertext) < 16:  # 16: the Poly1305 tag
        raise NotCosignKey("bad salt, nonce or ciphertext length")
    n, r, p = values
    return _Sealed(n, r, p, salt, nonce, ciphertext)


def decrypt_cosign_key(data: bytes, password: bytes) -> PrivateKeyTypes:
    """The private key in a cosign ``cosign.key`` file's bytes.

    Raises :class:`WrongPassword` when the secretbox tag does not verify, and
    :class:`NotCosignKey` when ``data`` is not in cosign's format.
    """
    import nacl.exceptions
    import nacl.secret

    kind = pem_type(data)
    if kind not in COSIGN_PEM_TYPES:
        raise NotCosignKey(f"PEM type {kind!r} is not a cosign private key")
    sealed = _parse(_pem_body(data, kind))
    key = hashlib.scrypt(
        password, salt=sealed.salt, n=sealed.n, r=sealed.r, p=sealed.p, dklen=32, maxmem=_SCRYPT_MAXMEM
    )
    try:
        der = nacl.secret.SecretBox(key).decrypt(sealed.ciphertext, sealed.nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPassword() from None
    try:
        return serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise NotCosignKey("the decrypted key is not a PKCS#8 private key") from None
