"""Promoting: point a stage at a model's manifest and record who did it, when and why.

The stage tag is moved by storing the exact manifest bytes under it (same digest, no blob
moves), after the promotion record is stored and made the history head. Stores offer no
compare-and-swap on tags, so a promotion checks the history head right before moving it,
moves it, and reads it back right away and after a settle time (:mod:`ocimodel.settle`): a
racer who overwrote it is detected and the loser is told who won (:class:`StageConflictError`).
The stage tag only moves once the record is the head.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import referrers
from .._version import __version__
from ..config import timestamp
from ..descriptor import DOCKER_MANIFEST_LIST_V2, EMPTY_JSON, EMPTY_V1, INDEX_V1, Descriptor, Manifest
from ..errors import OcimodelError, UsageError
from ..settle import SETTLE_SECONDS, holds
from ..storage import FetchedManifest, Target, TargetRef
from .actor import Actor, detect_actor
from .records import (
    PROMOTION_ARTIFACT_TYPE,
    RECORD_MEDIA_TYPE,
    SUCCESSOR_SEARCH,
    PromotionRecord,
    build_record_manifest,
    history_tag,
    short,
    tag_digest,
    try_load,
    validate_stage,
)

#: ``verify(ref)``: checks a model (or signs a record) at ``ref``; refuses by raising.
Verifier = Callable[[TargetRef], object]


class StageConflictError(OcimodelError):
    """Another promotion of the same stage won a race; ``winner_*`` name it when known."""

    def __init__(self, message: str, *, winner_digest: str | None = None, winner_record: str | None = None) -> None:
        super().__init__(message)
        self.winner_digest = winner_digest
        self.winner_record = winner_record


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` (or :func:`rollback`) did."""

    repository: str
    stage: str
    digest: str
    previous_digest: str | None
    record: str | None  # None when the stage already held the digest (nothing written)
    previous_record: str | None
    actor: Actor | None
    time: str | None
    reason: str
    signed: bool
    fallback_tag: str | None  # the referrers fallback tag updated, None with a referrers API
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "stage": self.stage,
            "digest": self.digest,
            "previousDigest": self.previous_digest,
            "record": self.record,
            "previousRecord": self.previous_record,
            "actor": self.actor.to_dict() if self.actor else None,
            "time": self.time,
            "reason": self.reason,
            "signed": self.signed,
            "fallbackTag": self.fallback_tag,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class _StageState:
    """The stage tag's digest and the history head (digest and, if readable, its record)."""

    stage_digest: str | None
    head: str | None
    head_record: PromotionRecord | None

    @property
    def in_flight(self) -> bool:
        """Head record and stage tag disagree: a promotion is between its two tag moves (or outside)."""
        return self.head_record is not None and self.head_record.digest != self.stage_digest


def _read_state(target: Target, stage: str) -> _StageState:
    head = tag_digest(target, history_tag(stage))
    loaded = try_load(target, head)
    stage_digest = tag_digest(target, stage)
    return _StageState(stage_digest, head, loaded.record if loaded else None)


def _settled_state(target: Target, stage: str, settle: float) -> _StageState:
    """The state, waiting once for an in-flight promotion to finish moving the stage tag."""
    state = _read_state(target, stage)
    if state.in_flight:
        time.sleep(2 * settle)
        state = _read_state(target, stage)
    return state


def _resolve_model(ref: TargetRef) -> FetchedManifest:
    """The manifest bytes to promote (fetched once); promotion records themselves are refused."""
    fetched = ref.target.fetch_manifest(ref.identifier)
    if fetched.media_type not in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        manifest = Manifest.parse(fetched.raw, f"manifest of {ref}")
        if manifest.artifact_type == PROMOTION_ARTIFACT_TYPE:
            raise UsageError(f"{ref} is a promotion record, not a model; promote the model it refers to")
    return fetched


def _store_record(target: Target, manifest: Manifest, raw_record: bytes) -> str | None:
    """Store the record and make it findable from its model; returns the fallback tag updated, if any."""
    target.push_blob_bytes(EMPTY_V1, EMPTY_JSON)
    target.push_blob_bytes(RECORD_MEDIA_TYPE, raw_record)
    return referrers.attach(target, manifest)


def _conflict(target: Target, stage: str, digest: str, head: str | None, what: str) -> StageConflictError:
    """The error telling a loser who won: the head record's promotion, and what the stage holds."""
    winner = try_load(target, head)
    holds = tag_digest(target, stage)
    if winner is not None:
        who = f"{winner.record.actor} promoted {winner.record.digest} at {winner.record.time} (record {short(head)})"
    else:
        who = f"the history head is now {head or 'gone'}"
    return StageConflictError(
        f"promotion of {digest} to {stage} {what}: {who}; {stage} holds {holds or 'nothing'}; "
        "run it again if it should still win",
        winner_digest=winner.record.digest if winner else None,
        winner_record=head,
    )


def _check_unchanged(target: Target, stage: str, digest: str, state: _StageState) -> None:
    """Right before moving anything: refuse if another promotion moved the head or the stage."""
    head = tag_digest(target, history_tag(stage))
    stage_now = tag_digest(target, stage)
    if head != state.head or stage_now != state.stage_digest:
        raise _conflict(target, stage, digest, head, "lost a race (nothing moved)")


def _settle_as_head(target: Target, stage: str, digest: str, record: str, settle: float) -> None:
    """Read the history head back now and after ``settle`` s (:func:`~ocimodel.settle.holds`);
    a racer who overwrote it wins."""
    if not holds(lambda: tag_digest(target, history_tag(stage)) == record, settle):
        head = tag_digest(target, history_tag(stage))
        raise _conflict(target, stage, digest, head, "lost a race (the stage tag was not moved)")


def _chain_contains(target: Target, head: str | None, record: str) -> bool:
    """Whether ``record`` is among the few records behind ``head`` (a legitimate successor)."""
    for _ in range(SUCCESSOR_SEARCH):
        if head is None:
            return False
        if head == record:
            return True
        loaded = try_load(target, head)
        head = loaded.record.previous_record if loaded else None
    return False


def _confirm(target: Target, stage: str, digest: str, record: str) -> None:
    """After the stage tag moved: our record must still be the head or behind a later one."""
    head = tag_digest(target, history_tag(stage))
    if head == record:
        if tag_digest(target, stage) != digest:
            raise _conflict(target, stage, digest, head, "was undone: the stage tag moved outside ocimodel")
    elif not _chain_contains(target, head, record):
        raise _conflict(target, stage, digest, head, "was overwritten by a concurrent promotion")


def _unchanged(target: Target, stage: str, digest: str, head: str | None, reason: str) -> PromotionResult:
    """The result when the stage already holds ``digest`` and its history agrees: nothing written."""
    return PromotionResult(
        repository=target.name,
        stage=stage,
        digest=digest,
        previous_digest=digest,
        record=None,
        previous_record=head,
        actor=None,
        time=None,
        reason=reason,
        signed=False,
        fallback_tag=None,
        changed=False,
    )


def promote(
    ref: TargetRef,
    stage: str,
    *,
    reason: str,
    actor: str | None = None,
    verify_model: Verifier | None = None,
    sign_record: Verifier | None = None,
    settle: float = SETTLE_SECONDS,
) -> PromotionResult:
    """Point ``stage`` of ``ref``'s target at the manifest ``ref`` names and record who did it,
    when and why.

    ``verify_model(ref@digest)`` runs before anything is written and refuses by raising
    (VerificationError). ``sign_record(record_ref)`` signs the record before any tag moves.
    Raises :class:`StageConflictError` naming the winner when a concurrent promotion won.
    """
    validate_stage(stage)
    target = ref.target
    fetched = _resolve_model(ref)
    if verify_model is not None:
        verify_model(TargetRef(target, digest=fetched.digest))
    state = _settled_state(target, stage, settle)
    if state.stage_digest == fetched.digest and state.head_record and state.head_record.digest == fetched.digest:
        return _unchanged(target, stage, fetched.digest, state.head, reason)
    record = PromotionRecord(
        stage=stage,
        repository=target.name,
        digest=fetched.digest,
        previous_digest=state.stage_digest,
        previous_record=state.head,
        actor=detect_actor(actor),
        time=timestamp(None),
        reason=reason,
        tool={"name": "ocimodel", "version": __version__},
    )
    subject = Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw))
    manifest = build_record_manifest(record, subject)
    fallback = _store_record(target, manifest, record.to_bytes())
    if sign_record is not None:
        sign_record(TargetRef(target, digest=manifest.digest))
    _check_unchanged(target, stage, fetched.digest, state)
    target.push_manifest(manifest.raw, manifest.media_type, tag=history_tag(stage))
    _settle_as_head(target, stage, fetched.digest, manifest.digest, settle)
    target.push_manifest(fetched.raw, fetched.media_type, tag=stage)
    _confirm(target, stage, fetched.digest, manifest.digest)
    return PromotionResult(
        repository=target.name,
        stage=stage,
        digest=fetched.digest,
        previous_digest=state.stage_digest,
        record=manifest.digest,
        previous_record=state.head,
        actor=record.actor,
        time=record.time,
        reason=reason,
        signed=sign_record is not None,
        fallback_tag=fallback,
        changed=True,
    )
