"""Checking a signature bundle against a policy, for a manifest digest or a local file.

A signature counts only if the bundle verifies under the trusted root (keyless) or one of
the policy's keys, the payload is an in-toto statement, its predicate type is the expected
one, and a subject's sha256 is the digest being checked (sigstore's ``verify_dsse`` does
not look at subjects). Every failure is an :class:`~ocimodel.errors.VerificationError`
whose message says which check failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ocimodel.errors import UsageError, VerificationError
from ocimodel.signing import keys, messagesig
from ocimodel.signing.policy import (
    VerificationPolicy,
    certificate_identities,
    certificate_issuer,
)
from ocimodel.signing.statement import PAYLOAD_TYPE, PREDICATE_TYPE, parse_statement, sha256_hex
from ocimodel.signing.trust import load_trusted_root

if TYPE_CHECKING:
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle


@dataclass(frozen=True)
class SignatureInfo:
    """Who signed what, from a verified bundle."""

    kind: Literal["keyless", "key"]
    signer: str  # the certificate identity, or the key fingerprint (base64 sha256 of its DER, as cosign's hint)
    issuer: str | None  # the OIDC issuer (keyless only)
    digest: str  # "sha256:<hex>" of what was verified
    signed_at: dt.datetime | None  # the transparency log's integrated time, when present

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``verified`` is always true: only a verified bundle gives one)."""
        return {
            "kind": self.kind,
            "signer": self.signer,
            "issuer": self.issuer,
            "digest": self.digest,
            "signedAt": self.signed_at.isoformat() if self.signed_at else None,
            "verified": True,
        }


def _load_json(bundle_json: bytes | str) -> dict[str, Any]:
    try:
        doc = json.loads(bundle_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"bad bundle: not JSON ({exc})") from None
    except RecursionError:
        raise VerificationError("bad bundle: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise VerificationError("bad bundle: not a JSON object")
    return doc


def _is_key_bundle(doc: dict[str, Any]) -> bool:
    material = doc.get("verificationMaterial")
    return isinstance(material, dict) and "publicKey" in material


def _parse_sigstore_bundle(bundle_json: bytes | str) -> Bundle:
    from sigstore.errors import Error
    from sigstore.models import Bundle

    try:
        return Bundle.from_json(bundle_json)
    except (Error, ValueError) as exc:
        raise VerificationError(f"bad bundle: {exc}") from None


def _sigstore_failure(exc: Exception) -> VerificationError:
    """Translate sigstore's verification error into ours, naming the failed check."""
    from sigstore.errors import CertValidationError

    message = str(exc)
    if isinstance(exc, CertValidationError):
        return VerificationError(
            f"untrusted certificate: not issued by the trusted root's CA ({message})"
        )
    if message.startswith("wrong "):  # raised by our CertificateRule
        return VerificationError(message)
    return VerificationError(f"signature invalid: {message}")


def _keyless_info(bundle: Bundle, digest_hex: str) -> SignatureInfo:
    cert = bundle.signing_certificate
    identities = certificate_identities(cert)
    integrated = bundle.log_entry._inner.integrated_time
    return SignatureInfo(
        kind="keyless",
        signer=identities[0] if identities else "",
        issuer=certificate_issuer(cert),
        digest=f"sha256:{digest_hex}",
        signed_at=dt.datetime.fromtimestamp(integrated, dt.timezone.utc) if integrated else None,
    )


def _check_statement(
    payload_type: str, payload: bytes, digest_hex: str, predicate_type: str | None
) -> None:
    if payload_type != PAYLOAD_TYPE:
        raise VerificationError(f"wrong payload type {payload_type!r}, expected {PAYLOAD_TYPE}")
    statement = parse_statement(payload)
    if predicate_type is not None and statement.predicate_type != predicate_type:
        raise VerificationError(
            f"wrong predicate type {statement.predicate_type!r}, expected {predicate_type}"
        )
    if digest_hex not in statement.subject_sha256:
        signed = ", ".join(f"sha256:{d}" for d in statement.subject_sha256) or "nothing"
        raise VerificationError(
            f"digest mismatch: the signature covers {signed}, not sha256:{digest_hex}"
        )


def _verify_keyless_dsse(bundle: Bundle, policy: VerificationPolicy) -> tuple[str, bytes]:
    from sigstore.errors import VerificationError as SigstoreVerificationError
    from sigstore.verify import Verifier

    if bundle._dsse_envelope is None:
        raise VerificationError("bad bundle: expected a DSSE envelope, found a message signature")
    trusted_root = load_trusted_root(policy.trusted_root, staging=policy.staging)
    try:
        verifier = Verifier(trusted_root=trusted_root)
        return verifier.verify_dsse(bundle, policy.certificate_policy())
    except SigstoreVerificationError as exc:
        raise _sigstore_failure(exc) from None


def _require_keyless_rules(policy: VerificationPolicy) -> None:
    if not policy.has_certificate_rules:
        raise VerificationError(
            "keyless signature, but the policy trusts only keys (--key); "
            "add --certificate-identity and --certificate-oidc-issuer to accept it"
        )


def verify_bundle(
    bundle_json: bytes | str,
    digest: str,
    policy: VerificationPolicy,
    *,
    predicate_type: str | None = PREDICATE_TYPE,
) -> SignatureInfo:
    """Verify a DSSE bundle signing ``digest`` (``sha256:<hex>`` or hex) under ``policy``.

    ``predicate_type=None`` accepts any predicate (a generic attestation).
    """
    policy.validate()
    digest_hex = sha256_hex(digest)
    doc = _load_json(bundle_json)
    if _is_key_bundle(doc):
        if not policy.keys:
            raise VerificationError("signed with a key, but the policy names no key (--key)")
        payload_type, payload, key_fingerprint = keys.verify_key_bundle(doc, policy.keys)
        _check_statement(payload_type, payload, digest_hex, predicate_type)
        return SignatureInfo("key", key_fingerprint, None, f"sha256:{digest_hex}", None)
    _require_keyless_rules(policy)
    bundle = _parse_sigstore_bundle(bundle_json)
    payload_type, payload = _verify_keyless_dsse(bundle, policy)
    _check_statement(payload_type, payload, digest_hex, predicate_type)
    return _keyless_info(bundle, digest_hex)


def _hash_file(path: Path) -> Hashed:
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=sha.digest())


def _verify_key_message(doc: dict[str, Any], file_digest: bytes, policy: VerificationPolicy) -> SignatureInfo:
    if not policy.keys:
        raise VerificationError("signed with a key, but the policy names no key (--key)")
    if messagesig.is_legacy_bundle(doc):
        signer = messagesig.verify_legacy_bundle(doc, file_digest, policy.keys)
    else:
        signer = messagesig.verify_message_bundle(doc, file_digest, policy.keys)
    return SignatureInfo("key", signer, None, f"sha256:{file_digest.hex()}", None)


def verify_blob(file_path: Path, bundle_path: Path, policy: VerificationPolicy) -> SignatureInfo:
    """Verify a detached bundle over a local file, like ``cosign verify-blob``.

    The bundle is either a message signature over the file's sha256 (keyless, or with a
    key as ``cosign sign-blob --key`` writes it, new or legacy format), or a DSSE envelope
    of an in-toto statement (any predicate) with a subject sha256 equal to the file's.
    """
    from sigstore.errors import VerificationError as SigstoreVerificationError
    from sigstore.verify import Verifier

    policy.validate()
    hashed = _hash_file(file_path)
    try:
        bundle_json = Path(bundle_path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read bundle {bundle_path}: {exc.strerror}") from None
    doc = _load_json(bundle_json)
    if messagesig.is_legacy_bundle(doc) or (_is_key_bundle(doc) and messagesig.is_message_bundle(doc)):
        return _verify_key_message(doc, hashed.digest, policy)
    if _is_key_bundle(doc) or "dsseEnvelope" in doc:
        return verify_bundle(bundle_json, hashed.digest.hex(), policy, predicate_type=None)
    _require_keyless_rules(policy)
    bundle = _parse_sigstore_bundle(bundle_json)
    trusted_root = load_trusted_root(policy.trusted_root, staging=policy.staging)
    try:
        verifier = Verifier(trusted_root=trusted_root)
        verifier.verify_artifact(hashed, bundle, policy.certificate_policy())
    except SigstoreVerificationError as exc:
        if "digest mismatch" in str(exc) or "invalid for input" in str(exc):
            raise VerificationError(
                f"digest mismatch: the bundle does not sign {file_path} ({exc})"
            ) from None
        raise _sigstore_failure(exc) from None
    return _keyless_info(bundle, hashed.digest.hex())
