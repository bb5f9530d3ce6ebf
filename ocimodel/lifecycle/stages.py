"""Every stage of a repository: the digest it holds, its version tags, its newest promotion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..storage import Target
from . import recordtrust
from .actor import Actor
from .chain import PROBLEM_TEXT
from .records import HISTORY_TAG_PREFIX, LoadedRecord, history_tag, is_internal_tag, tag_digest, try_load

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy


@dataclass(frozen=True)
class StageInfo:
    """One stage: the digest it holds, other tags on that digest, and its newest promotion."""

    stage: str
    digest: str | None
    tags: list[str]
    record: str | None
    promoted_at: str | None
    promoted_by: Actor | None
    reason: str | None
    finding: str | None  # when the stage tag and its newest record disagree, or the record is unreadable
    signature_verified: bool | None = None  # the newest record under the policy; None: no policy given
    signed_by: str | None = None
    signature_finding: str | None = None  # why the newest record is not verified

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "digest": self.digest,
            "tags": list(self.tags),
            "record": self.record,
            "promotedAt": self.promoted_at,
            "promotedBy": self.promoted_by.to_dict() if self.promoted_by else None,
            "reason": self.reason,
            "finding": self.finding,
            "signatureVerified": self.signature_verified,
            "signedBy": self.signed_by,
            "signatureFinding": self.signature_finding,
        }


def tag_digests(target: Target, tags: list[str]) -> dict[str, str | None]:
    """The digest each of ``tags`` points at (None for a tag that is gone)."""
    return {tag: tag_digest(target, tag) for tag in tags}


def _head_signature(
    target: Target, head: str | None, loaded: LoadedRecord | None, policy: VerificationPolicy
) -> tuple[bool, str | None, str | None]:
    """(verified, signed by, finding) for a stage's newest record under ``policy``."""
    if head is None or loaded is None:
        return False, None, "its newest record cannot be read, so it cannot be verified"
    verdict = recordtrust.judge_record(target, head, policy)
    if verdict.problem is None:
        return True, verdict.signed_by, None
    return False, None, f"{verdict.problem}: newest record {head} {PROBLEM_TEXT[verdict.problem]}"


def _stage_info(
    target: Target, stage: str, head: str | None, digests: Mapping[str, str | None],
    stage_names: set[str], policy: VerificationPolicy | None,
) -> StageInfo:
    digest = digests.get(stage)
    tags = sorted(t for t, d in digests.items() if d == digest and digest and t not in stage_names)
    loaded = try_load(target, head)
    finding = None
    if loaded is None:
        finding = f"newest record {head} of {stage} is missing or unreadable: run 'history' for details"
    elif loaded.record.digest != digest:
        finding = f"stage tag points at {digest or 'nothing'}, its newest record says {loaded.record.digest}: moved outside ocimodel"
    record = loaded.record if loaded else None
    verified, signer, problem = (None, None, None) if policy is None else _head_signature(target, head, loaded, policy)
    return StageInfo(
        stage=stage,
        digest=digest,
        tags=tags,
        record=head,
        promoted_at=record.time if record else None,
        promoted_by=record.actor if record else None,
        reason=record.reason if record else None,
        finding=finding,
        signature_verified=verified,
        signed_by=signer,
        signature_finding=problem,
    )


def stages(target: Target, *, policy: VerificationPolicy | None = None) -> list[StageInfo]:
    """Every stage of ``target`` (a tag with an ocimodel history), sorted by name.

    With ``policy`` each stage's newest record is verified under it (``signature_verified``);
    the whole chain is ``history``'s job.
    """
    if policy is not None:
        policy.validate()
    tags = target.tags()
    names = {t[len(HISTORY_TAG_PREFIX) :] for t in tags if t.startswith(HISTORY_TAG_PREFIX)}
    digests = tag_digests(target, [t for t in tags if not is_internal_tag(t)])
    heads = tag_digests(target, [history_tag(s) for s in names])
    return [_stage_info(target, s, heads[history_tag(s)], digests, names, policy) for s in sorted(names)]
