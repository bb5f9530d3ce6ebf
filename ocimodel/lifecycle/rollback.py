"""Rolling a stage back to a digest it held before, recorded as a promotion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import UsageError, VerificationError
from ..reference import validate_digest
from ..settle import SETTLE_SECONDS
from ..storage import Target, TargetRef
from .chain import HistoryReport
from .history import history
from .promote import PromotionResult, Verifier, promote

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy

#: Findings that make "N promotions back" ambiguous: the chain is not the stage's real past.
_AMBIGUOUS_PAST = frozenset({"moved-outside", "no-history", "head-behind", "chain-replaced"})


def _rollback_target(report: HistoryReport, to: str | None, steps: int) -> str:
    """The digest to roll back to: ``to`` (must appear in the history) or ``steps`` back."""
    if to is not None:
        validate_digest(to)
        known = {e.to_digest for e in report.entries} | {e.from_digest for e in report.entries if e.from_digest}
        if to not in known:
            raise UsageError(f"{to} never was at stage {report.stage} according to its history; refusing to roll back")
        if to == report.current:
            raise UsageError(f"stage {report.stage} already holds {to}")
        return to
    ambiguous = sorted({f.kind for f in report.findings} & _AMBIGUOUS_PAST)
    if ambiguous:
        raise UsageError(
            f"stage {report.stage} was moved outside ocimodel or its history is not its real past "
            f"({', '.join(ambiguous)}), so 'previous' is ambiguous: name the digest with --to"
        )
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if steps > len(report.entries):
        broken = "" if report.complete else " (the history chain is broken; run 'history')"
        raise UsageError(f"stage {report.stage} has only {len(report.entries)} readable promotion(s){broken}")
    back_to = report.entries[steps - 1].from_digest
    if back_to is None:
        raise UsageError(f"before that promotion stage {report.stage} did not exist; nothing to roll back to")
    return back_to


def _require_signed_target(report: HistoryReport, back_to: str, undone: int | None) -> None:
    """VerificationError unless a record verified under the policy moved the stage to ``back_to``
    and, going back ``undone`` promotions, each of those is verified too (else "previous" is
    whatever an unsigned record claims, e.g. an old version an attacker prefers)."""
    for entry in report.entries[: undone or 0]:
        if not entry.signature_verified:
            raise VerificationError(
                f"refusing to roll back {report.stage}: promotion record {entry.record} ({entry.actor} at {entry.time}), "
                f"one of those to undo, is {entry.signature_problem} under the policy, so the digest before it is "
                "not trustworthy; name a digest a signed record reached with --to"
            )
    reached = [e for e in report.entries if e.to_digest == back_to]
    if any(e.signature_verified for e in reached):
        return
    if reached:
        why = ", ".join(f"{e.record[:19]} is {e.signature_problem}" for e in reached)
        detail = f"the records that moved it there are not signed under the policy ({why})"
    else:
        detail = "no promotion record moved the stage to it"
    raise VerificationError(f"refusing to roll back {report.stage} to {back_to}: {detail}")


def rollback(
    target: Target,
    stage: str,
    *,
    to: str | None = None,
    steps: int = 1,
    reason: str | None = None,
    actor: str | None = None,
    policy: VerificationPolicy | None = None,
    verify_model: Verifier | None = None,
    sign_record: Verifier | None = None,
    settle: float = SETTLE_SECONDS,
    origins: Sequence[str] = (),
) -> PromotionResult:
    """Move ``stage`` of ``target`` back to the digest it held ``steps`` promotions ago (or to ``to``).

    Recorded as a promotion with reason ``rollback`` (``rollback: <reason>`` with a reason).
    With ``policy`` the target must have been reached by a record signed under it
    (VerificationError otherwise); without one, the unsigned history is trusted as is.
    ``origins``: as for :func:`~.history.history`.
    """
    report = history(target, stage, policy=policy, origins=origins)
    back_to = _rollback_target(report, to, steps)
    if policy is not None:
        _require_signed_target(report, back_to, steps if to is None else None)
    return promote(
        TargetRef(target, digest=back_to),
        stage,
        reason=f"rollback: {reason}" if reason else "rollback",
        actor=actor,
        verify_model=verify_model,
        sign_record=sign_record,
        settle=settle,
    )
