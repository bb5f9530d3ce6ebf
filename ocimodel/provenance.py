"""The provenance use-cases: sign a model where it is stored, verify it, list its signatures.

``sign`` resolves a reference to its manifest digest once, signs that digest (keyless via
Sigstore, or with a local key) and stores the bundle as a referrer
(:mod:`ocimodel.signing.bundles`). ``verify`` finds every bundle attached to the digest and
succeeds if any one satisfies the policy. ``pull`` with a policy and ``promote`` with a gate
call :func:`require_signature` on the digest they resolved, before writing anything.
Everything talks to a :class:`~ocimodel.storage.Target`, never to a registry client.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .descriptor import Descriptor
from .errors import VerificationError
from .signing import bundles
from .signing import keys as signing_keys
from .signing.describe import ClaimedSigner, describe_bundle
from .signing.policy import VerificationPolicy
from .signing.statement import build_statement
from .signing.verify import SignatureInfo, verify_bundle
from .storage import TargetRef

__all__ = ["SignResult", "VerifyResult", "keygen", "list_signatures", "require_signature", "sign", "verify"]


@dataclass(frozen=True)
class SignResult:
    """What :func:`sign` stored: which digest, signed by whom, in which referrer."""

    reference: str
    digest: str
    referrer: str
    fallback_tag: str | None
    kind: str
    signer: str | None
    issuer: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "referrer": self.referrer,
            "fallbackTag": self.fallback_tag,
            "kind": self.kind,
            "signer": self.signer,
            "issuer": self.issuer,
        }


@dataclass(frozen=True)
class VerifyResult:
    """The signatures of ``digest`` that satisfied the policy (at least one)."""

    reference: str
    digest: str
    signatures: list[SignatureInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "signatures": [s.to_dict() for s in self.signatures],
        }


def _subject(ref: TargetRef) -> Descriptor:
    """The manifest at ``ref``, fetched once (digest verified), as a descriptor."""
    fetched = ref.target.fetch_manifest(ref.identifier)
    return Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw))


def _make_bundle(
    statement: bytes,
    *,
    key: str | Path | None,
    identity_token: str | None,
    staging: bool,
    trust_config: str | Path | None,
    interactive: bool | None,
) -> str:
    if key is not None:
        password = signing_keys.key_password(confirm=False, interactive=interactive)
        return signing_keys.sign_statement_with_key(statement, Path(key), password)
    from .signing import keyless

    config = keyless.trust_config(staging, Path(trust_config) if trust_config else None)
    tty = sys.stdin.isatty() if interactive is None else interactive
    token = keyless.obtain_identity_token(identity_token, interactive=tty, config=config)
    return keyless.sign_statement_keyless(statement, token, config)


def sign(
    ref: TargetRef,
    *,
    key: str | Path | None = None,
    identity_token: str | None = None,
    staging: bool = False,
    trust_config: str | Path | None = None,
    annotations: Mapping[str, str] | None = None,
    interactive: bool | None = None,
) -> SignResult:
    """Sign the manifest ``ref`` names (its digest, resolved once) and attach the bundle.

    Keyless by default: the identity token comes from ``identity_token``,
    ``OCIMODEL_IDENTITY_TOKEN``, the CI environment or (``interactive``) a browser login;
    ``trust_config`` names a private Sigstore deployment. With ``key`` (an encrypted
    private key) the password comes from ``OCIMODEL_KEY_PASSWORD`` or the terminal.
    ``annotations`` go into the signed statement's predicate.
    """
    subject = _subject(ref)
    statement = build_statement(ref.target.name, subject.digest, annotations)
    bundle = _make_bundle(
        statement,
        key=key,
        identity_token=identity_token,
        staging=staging,
        trust_config=trust_config,
        interactive=interactive,
    )
    stored = bundles.attach_bundle(ref.target, subject, bundle.encode())
    claimed = describe_bundle(bundle)
    return SignResult(
        reference=str(ref),
        digest=subject.digest,
        referrer=stored.referrer.digest,
        fallback_tag=stored.fallback_tag,
        kind=claimed.kind,
        signer=claimed.signer,
        issuer=claimed.issuer,
    )


def _short(digest: str) -> str:
    return digest[:19]


def require_signature(ref: TargetRef, policy: VerificationPolicy) -> list[SignatureInfo]:
    """The signatures of ``ref.digest`` satisfying ``policy``; VerificationError if none does.

    Every referrer is fetched by digest and judged from its own manifest; unrelated
    referrers are ignored. The error names each candidate's failed check.
    """
    policy.validate()
    if not ref.digest:
        raise ValueError("require_signature needs a reference pinned to a digest")
    passed: list[SignatureInfo] = []
    reasons: list[str] = []
    for stored in bundles.find_bundles(ref.target, ref.digest):
        if stored.bundle is None:
            reasons.append(f"{_short(stored.referrer)}: {stored.error}")
            continue
        try:
            passed.append(verify_bundle(stored.bundle, ref.digest, policy))
        except VerificationError as exc:
            reasons.append(f"{_short(stored.referrer)}: {exc}")
    if passed:
        return passed
    if not reasons:
        raise VerificationError(f"no signature found for {ref.digest} in {ref.target.name}")
    raise VerificationError(
        f"no signature of {ref.digest} satisfies the policy ({len(reasons)} checked): " + "; ".join(reasons)
    )


def verify(ref: TargetRef, policy: VerificationPolicy) -> VerifyResult:
    """Verify that the manifest ``ref`` names (resolved once) is signed as ``policy`` demands."""
    policy.validate()
    digest = _subject(ref).digest
    passed = require_signature(ref.with_digest(digest), policy)
    return VerifyResult(reference=str(ref), digest=digest, signatures=passed)


def list_signatures(ref: TargetRef) -> list[dict[str, Any]]:
    """The signatures attached to ``ref.digest`` with the signer each CLAIMS (unverified)."""
    if not ref.digest:
        raise ValueError("list_signatures needs a reference pinned to a digest")
    found = []
    for stored in bundles.find_bundles(ref.target, ref.digest):
        claimed = describe_bundle(stored.bundle) if stored.bundle is not None else ClaimedSigner("unknown", None)
        entry = {"referrer": stored.referrer, "created": stored.created, **claimed.to_dict()}
        if stored.error:
            entry["error"] = stored.error
        found.append(entry)
    return found


def keygen(prefix: str | Path = "ocimodel", password: bytes | None = None) -> tuple[Path, Path]:
    """Write an encrypted ECDSA P-256 key pair ``prefix.key`` / ``prefix.pub``.

    Without ``password``, it comes from ``OCIMODEL_KEY_PASSWORD`` or the terminal (twice).
    """
    secret = password if password is not None else signing_keys.key_password(confirm=True)
    return signing_keys.generate_keypair(Path(prefix), secret)
