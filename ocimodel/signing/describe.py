"""Who a bundle SAYS signed it, read without verifying anything (for ``inspect`` and ``sign``).

Nothing here is evidence: a bundle can claim any certificate or key hint. Verification is
:mod:`ocimodel.signing.verify`'s job; callers must label this output "unverified".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from ocimodel.signing.policy import certificate_identities, certificate_issuer


@dataclass(frozen=True)
class ClaimedSigner:
    """The signer a bundle names: certificate identity and issuer, or a key fingerprint hint."""

    kind: Literal["keyless", "key", "unknown"]
    signer: str | None
    issuer: str | None = None
    signed_at: dt.datetime | None = None  # the log entry's integrated time, if any

    def to_dict(self) -> dict[str, Any]:
        """JSON form, labelled unverified."""
        return {
            "kind": self.kind,
            "signer": self.signer,
            "issuer": self.issuer,
            "signedAt": self.signed_at.isoformat() if self.signed_at else None,
            "verified": False,
        }


def _leaf_der(material: dict[str, Any]) -> bytes | None:
    cert = material.get("certificate")
    if isinstance(cert, dict):
        raw = cert.get("rawBytes")
    else:  # v0.1 / v0.2 bundles carry a chain
        holder = material.get("x509CertificateChain")
        chain = holder.get("certificates") if isinstance(holder, dict) else None
        first = chain[0] if isinstance(chain, list) and chain else None
        raw = first.get("rawBytes") if isinstance(first, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        return None


def _integrated_time(material: dict[str, Any]) -> dt.datetime | None:
    entries = material.get("tlogEntries") or []
    try:
        seconds = int(entries[0]["integratedTime"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc) if seconds else None


def describe_bundle(bundle_json: bytes | str) -> ClaimedSigner:
    """The signer ``bundle_json`` claims; ``kind="unknown"`` when it cannot be read."""
    from cryptography import x509

    try:
        doc = json.loads(bundle_json)
        material = doc["verificationMaterial"]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, RecursionError):  # RecursionError: deep nesting
        return ClaimedSigner("unknown", None)
    if not isinstance(material, dict):
        return ClaimedSigner("unknown", None)
    if isinstance(material.get("publicKey"), dict):
        hint = material["publicKey"].get("hint")
        return ClaimedSigner("key", hint if isinstance(hint, str) else None)
    der = _leaf_der(material)
    if der is None:
        return ClaimedSigner("unknown", None)
    try:
        cert = x509.load_der_x509_certificate(der)
        identities = certificate_identities(cert)
        issuer = certificate_issuer(cert)
    except (ValueError, x509.ExtensionNotFound):
        return ClaimedSigner("unknown", None)
    return ClaimedSigner("keyless", identities[0] if identities else None, issuer, _integrated_time(material))
