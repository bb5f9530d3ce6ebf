"""The provenance verbs: sign a model in its registry, verify it, and the offline helpers.

``sign`` resolves a reference to its manifest digest once, signs that digest (keyless via
Sigstore, or with a local key) and stores the bundle as a referrer
(:mod:`ocimodel.signing.storage`). ``verify`` finds every bundle attached to the digest and
succeeds if any one satisfies the policy. ``pull`` with a policy calls
:func:`require_signature` on the digest it resolved, before writing anything.

Each verb accepts ``registry=`` (a :class:`RegistryClient` to reuse, e.g. ``Client.registry``)
or the connection options ``plain_http``, ``insecure``, ``ca_file``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .descriptor import Descriptor
from .errors import VerificationError
from .reference import Reference
from .registry.client import RegistryClient
from .registry.connection import Connection
from .signing import keys as signing_keys
from .signing import storage
from .signing.describe import ClaimedSigner, describe_bundle
from .signing.policy import VerificationPolicy
from .signing.statement import build_statement
from .signing.verify import SignatureInfo, verify_blob, verify_bundle

__all__ = [
    "SignResult",
    "SignatureInfo",
    "VerificationPolicy",
    "VerifyResult",
    "keygen",
    "list_signatures",
    "require_signature",
    "sign",
    "verify",
    "verify_blob",
    "verify_bundle",
]


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


def signature_dict(info: SignatureInfo) -> dict[str, Any]:
    """JSON form of a verified signature."""
    return {
        "kind": info.kind,
        "signer": info.signer,
        "issuer": info.issuer,
        "digest": info.digest,
        "signedAt": info.signed_at.isoformat() if info.signed_at else None,
        "verified": True,
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
            "signatures": [signature_dict(s) for s in self.signatures],
        }


@contextmanager
def _session(
    registry: RegistryClient | None, ref: Reference, plain_http: bool, insecure: bool, ca_file: str | Path | None
) -> Iterator[RegistryClient]:
    """``registry`` as given (left open), or a new client closed afterwards (the environment's
    ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD`` then go to ``ref``'s registry, and no other)."""
    if registry is not None:
        yield registry
        return
    connection = Connection(plain_http=plain_http, insecure=insecure, ca_file=ca_file, credentials_for=ref.registry)
    with RegistryClient(connection) as client:
        yield client


def _parse(ref: str | Reference) -> Reference:
    return Reference.coerce(ref)


def _subject(client: RegistryClient, ref: Reference) -> Descriptor:
    """The manifest at ``ref``, fetched once (digest verified), as a descriptor."""
    fetched = client.get_manifest(ref)
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
    ref: str | Reference,
    *,
    key: str | Path | None = None,
    identity_token: str | None = None,
    staging: bool = False,
    trust_config: str | Path | None = None,
    annotations: Mapping[str, str] | None = None,
    interactive: bool | None = None,
    registry: RegistryClient | None = None,
    plain_http: bool = False,
    insecure: bool = False,
    ca_file: str | Path | None = None,
) -> SignResult:
    """Sign the manifest ``ref`` names (its digest, resolved once) and attach the bundle.

    Keyless by default: the identity token comes from ``identity_token``,
    ``OCIMODEL_IDENTITY_TOKEN``, the CI environment or (``interactive``) a browser login;
    ``trust_config`` names a private Sigstore deployment. With ``key`` (an encrypted
    private key) the password comes from ``OCIMODEL_KEY_PASSWORD`` or the terminal.
    ``annotations`` go into the signed statement's predicate.
    """
    reference = _parse(ref)
    with _session(registry, reference, plain_http, insecure, ca_file) as client:
        subject = _subject(client, reference)
        statement = build_statement(reference.name, subject.digest, annotations)
        bundle = _make_bundle(
            statement,
            key=key,
            identity_token=identity_token,
            staging=staging,
            trust_config=trust_config,
            interactive=interactive,
        )
        stored = storage.attach_bundle(client, reference, subject, bundle.encode())
    claimed = describe_bundle(bundle)
    return SignResult(
        reference=str(reference),
        digest=subject.digest,
        referrer=stored.referrer.digest,
        fallback_tag=stored.fallback_tag,
        kind=claimed.kind,
        signer=claimed.signer,
        issuer=claimed.issuer,
    )


def _short(digest: str) -> str:
    return digest[:19]


def require_signature(client: RegistryClient, ref: Reference, policy: VerificationPolicy) -> list[SignatureInfo]:
    """The signatures of ``ref.digest`` satisfying ``policy``; VerificationError if none does.

    Every referrer is fetched by digest and judged from its own manifest; unrelated
    referrers are ignored. The error names each candidate's failed check.
    """
    policy.validate()
    if not ref.digest:
        raise ValueError("require_signature needs a reference pinned to a digest")
    passed: list[SignatureInfo] = []
    reasons: list[str] = []
    for stored in storage.find_bundles(client, ref, ref.digest):
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
        raise VerificationError(f"no signature found for {ref.digest} in {ref.name}")
    raise VerificationError(
        f"no signature of {ref.digest} satisfies the policy ({len(reasons)} checked): " + "; ".join(reasons)
    )


def verify(
    ref: str | Reference,
    policy: VerificationPolicy,
    *,
    registry: RegistryClient | None = None,
    plain_http: bool = False,
    insecure: bool = False,
    ca_file: str | Path | None = None,
) -> VerifyResult:
    """Verify that the manifest ``ref`` names (resolved once) is signed as ``policy`` demands."""
    policy.validate()
    reference = _parse(ref)
    with _session(registry, reference, plain_http, insecure, ca_file) as client:
        digest = _subject(client, reference).digest
        passed = require_signature(client, reference.with_digest(digest), policy)
    return VerifyResult(reference=str(reference), digest=digest, signatures=passed)


def list_signatures(client: RegistryClient, ref: Reference) -> list[dict[str, Any]]:
    """The signatures attached to ``ref.digest`` with the signer each CLAIMS (unverified)."""
    if not ref.digest:
        raise ValueError("list_signatures needs a reference pinned to a digest")
    found = []
    for stored in storage.find_bundles(client, ref, ref.digest):
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
