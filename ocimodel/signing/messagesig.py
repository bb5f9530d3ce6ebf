"""Key-signed signatures over a file's bytes, as ``cosign sign-blob --key K --bundle B`` writes.

Two shapes: the v0.3 Sigstore bundle with a ``messageSignature`` (``messageDigest`` =
SHA2_256 of the file, ``signature`` = ECDSA over the file's bytes) and a ``publicKey`` hint;
and cosign's legacy ``--bundle`` JSON ``{"base64Signature", "cert", "rekorBundle"}``. The
digest a bundle states is compared with the file's own before any signature check, and the
signature is checked against the file's digest, never the bundle's. Transparency-log
entries are not checked (no Rekor key is trusted in key mode), so they are not evidence of
anything: nothing, not even the signing time, is taken from them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocimodel.errors import VerificationError
from ocimodel.signing.keys import key_hint, matching_key
from ocimodel.signing.statement import BUNDLE_V03_MEDIA_TYPES


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise VerificationError(f"bad bundle: {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationError(f"bad bundle: {what} is not base64") from None


def is_message_bundle(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` is a bundle holding a message signature (not a DSSE envelope)."""
    return "messageSignature" in doc


def is_legacy_bundle(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` is cosign's legacy ``sign-blob --bundle`` JSON."""
    return "base64Signature" in doc


def _require_digest(stated: bytes, file_digest: bytes) -> None:
    if stated != file_digest:
        raise VerificationError(
            f"digest mismatch: the bundle signs sha256:{stated.hex()[:64]}, "
            f"but the file's is sha256:{file_digest.hex()}"
        )


def verify_message_bundle(doc: Mapping[str, Any], file_digest: bytes, public_keys: Sequence[Path]) -> str:
    """Check a key-signed v0.3 message-signature bundle over a file whose sha256 is
    ``file_digest``; returns the matching key's fingerprint."""
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str) or media_type not in BUNDLE_V03_MEDIA_TYPES:
        raise VerificationError(f"bad bundle: unsupported media type {str(media_type)[:80]!r}")
    if "dsseEnvelope" in doc:
        raise VerificationError("bad bundle: both a message signature and a DSSE envelope")
    message = doc.get("messageSignature")
    digest = message.get("messageDigest") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(digest, dict):
        raise VerificationError("bad bundle: messageSignature.messageDigest must be an object")
    if digest.get("algorithm") != "SHA2_256":
        raise VerificationError(
            f"bad bundle: message digest algorithm {str(digest.get('algorithm'))[:40]!r} (only SHA2_256 is read)"
        )
    _require_digest(_b64(digest.get("digest"), "messageDigest.digest"), file_digest)
    signature = _b64(message.get("signature"), "messageSignature.signature")
    return matching_key(public_keys, key_hint(doc), signature, file_digest, prehashed=True)


def verify_legacy_bundle(doc: Mapping[str, Any], file_digest: bytes, public_keys: Sequence[Path]) -> str:
    """Check cosign's legacy ``{base64Signature, cert, rekorBundle}`` bundle with a key."""
    if doc.get("cert"):
        raise VerificationError(
            "legacy cosign bundle with a certificate (keyless): not read; "
            "sign with cosign's new bundle format (the v3 default) instead"
        )
    signature = _b64(doc.get("base64Signature"), "base64Signature")
    return matching_key(public_keys, None, signature, file_digest, prehashed=True)
