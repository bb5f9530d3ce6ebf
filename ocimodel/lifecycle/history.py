"""A stage's history: its promotions, newest first, with findings instead of guesses."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from ..errors import NotFoundError
from ..storage import Target
from .chain import HistoryReport, head_findings, walk
from .outside import outside_findings
from .records import history_tag, tag_digest, validate_stage

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy

#: How far history walks by default.
MAX_HISTORY = 10_000


def history(
    target: Target,
    stage: str,
    *,
    limit: int = MAX_HISTORY,
    policy: VerificationPolicy | None = None,
    origins: Sequence[str] = (),
) -> HistoryReport:
    """The promotions of ``stage`` in ``target``, newest first, with findings instead of guesses.

    Every record is fetched by the digest its successor names and checked against it, so a
    complete walk verifies the hash chain. With ``policy`` every record must also be signed
    under it (else a finding: unsigned, signature-mismatch, signed-by-other,
    invalid-signature), and records signed under it that the chain leaves out are looked for
    (head-behind, chain-replaced). Without a policy nothing is verified: see docs/stages.md.

    ``origins`` name the repositories a copy of this one came from (``ocimodel copy --tags``
    keeps every record as it was written): their records count as this stage's history too.
    """
    validate_stage(stage)
    if policy is not None:
        policy.validate()
    head = tag_digest(target, history_tag(stage))
    current = tag_digest(target, stage)
    if head is None and current is None:
        raise NotFoundError(f"{target.name} has no stage {stage!r} (no tag {stage}, no promotion history)")
    entries, findings, complete = ([], [], True) if head is None else walk(target, stage, head, limit, policy, origins)
    findings = head_findings(stage, current, head, entries) + findings
    report = HistoryReport(
        target.name, stage, current, head, entries, findings, complete and head is not None, policy is not None
    )
    if policy is None:
        return report
    return replace(report, findings=report.findings + outside_findings(target, stage, report, policy, origins))
