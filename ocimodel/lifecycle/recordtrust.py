"""Whether a promotion record is signed under a verification policy, and if not, how not.

A record's signatures are Sigstore bundles attached to the record manifest as referrers, the
same storage and the same checks as a model's signature (:mod:`ocimodel.signing`). A record
is *verified* when at least one bundle passes the policy for the record's own digest. When
none does, the verdict names the most telling reason:

- ``unsigned``: no bundle is attached at all;
- ``signature-mismatch``: a bundle's statement names other bytes (e.g. a valid signature of
  another record re-attached to this one);
- ``signed-by-other``: a bundle names this record but is not signed by anyone the policy
  trusts (another key, identity, issuer or certificate authority), or its signature fails;
- ``invalid-signature``: the attached bundles cannot be read, or not even listed (a
  referrers index that is not one).

An unreachable registry or refused credentials are errors, not verdicts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AuthError, NetworkError, RegistryError, VerificationError
from ..signing.bundles import find_bundles
from ..signing.statement import parse_statement, sha256_hex
from ..storage import Target

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy
    from ..signing.verify import SignatureInfo

UNSIGNED = "unsigned"
SIGNATURE_MISMATCH = "signature-mismatch"
SIGNED_BY_OTHER = "signed-by-other"
INVALID_SIGNATURE = "invalid-signature"
#: Every kind a verdict can have, most telling first.
PROBLEMS = (UNSIGNED, SIGNATURE_MISMATCH, SIGNED_BY_OTHER, INVALID_SIGNATURE)


@dataclass(frozen=True)
class RecordVerdict:
    """What the policy says about one record's signatures."""

    signed: bool  # at least one bundle is attached
    signers: tuple[SignatureInfo, ...]  # the bundles that passed the policy
    problem: str | None  # one of PROBLEMS when no bundle passed, else None
    detail: str  # why each bundle failed ("" when verified)

    @property
    def verified(self) -> bool:
        return bool(self.signers)

    @property
    def signed_by(self) -> str | None:
        """Who signed, for people: ``key <fingerprint>`` or ``identity (issuer)``."""
        if not self.signers:
            return None
        info = self.signers[0]
        return f"key {info.signer[:16]}" if info.kind == "key" else f"{info.signer} ({info.issuer})"


def claimed_subjects(bundle: bytes) -> tuple[str, ...] | None:
    """The sha256 subjects a bundle's DSSE statement names, read WITHOUT verifying; None if unreadable."""
    try:
        doc = json.loads(bundle)
        payload = base64.b64decode(doc["dsseEnvelope"]["payload"], validate=True)
        return parse_statement(payload).subject_sha256
    except (ValueError, KeyError, TypeError, binascii.Error, VerificationError, RecursionError):
        return None


def judge_record(target: Target, digest: str, policy: VerificationPolicy) -> RecordVerdict:
    """The verdict of ``policy`` on the signatures attached to record ``digest`` in ``target``."""
    from ..signing.verify import verify_bundle  # sigstore: only when a policy is checked

    try:
        found = find_bundles(target, digest)
    except (AuthError, NetworkError):
        raise
    except RegistryError as exc:  # e.g. a fallback tag that is not a referrers index
        return RecordVerdict(False, (), INVALID_SIGNATURE, f"its signatures cannot be listed: {exc}")
    if not found:
        return RecordVerdict(False, (), UNSIGNED, "no signature is attached")
    passed: list[SignatureInfo] = []
    failed: dict[str, list[str]] = {kind: [] for kind in PROBLEMS}
    for stored in found:
        where = stored.referrer[:19]
        if stored.bundle is None:
            failed[INVALID_SIGNATURE].append(f"{where}: {stored.error}")
            continue
        try:
            passed.append(verify_bundle(stored.bundle, digest, policy))
        except VerificationError as exc:
            covers = claimed_subjects(stored.bundle)
            if covers is None:
                kind = INVALID_SIGNATURE
            elif sha256_hex(digest) not in covers:
                kind = SIGNATURE_MISMATCH
            else:
                kind = SIGNED_BY_OTHER
            failed[kind].append(f"{where}: {exc}")
    if passed:
        return RecordVerdict(True, tuple(passed), None, "")
    problem = next(kind for kind in PROBLEMS if failed[kind])
    detail = "; ".join(reason for kind in PROBLEMS for reason in failed[kind])
    return RecordVerdict(True, (), problem, detail)
