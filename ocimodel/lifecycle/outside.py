"""Signed records a stage's chain leaves out: evidence that the history was cut or replaced.

With a policy, a history that verifies record by record can still be a lie by omission: a
writer can move the history tag back (dropping the newest promotions) or point it at another
chain. Records signed under the policy are looked for as referrers of the models the
repository knows; one that follows the head is ``head-behind``, one that descends from no
record of the chain ``chain-replaced``. Best effort and bounded: a hostile store can list any
number of referrers, and a writer can also remove them. See docs/stages.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Sequence

from ..errors import AuthError, NetworkError, OcimodelError, UsageError
from ..reference import validate_digest
from ..referrers import FALLBACK_TAG_PREFIX, list_referrers
from ..storage import Target
from . import recordtrust
from .chain import Finding, HistoryEntry, HistoryReport, describe, misplaced
from .records import (
    ANNOTATION_STAGE,
    PROMOTION_ARTIFACT_TYPE,
    SUCCESSOR_SEARCH,
    PromotionRecord,
    is_internal_tag,
    load_record,
    tag_digest,
    try_load,
)

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy

#: How many model digests, and candidate records, the search looks at.
_OUTSIDE_SUBJECTS = 256
_OUTSIDE_RECORDS = 256


def _search_subjects(target: Target, entries: list[HistoryEntry], current: str | None) -> list[str]:
    """Model digests whose referrers may hold records of the stage, at most ``_OUTSIDE_SUBJECTS``.

    The chain's own models first, then every digest with a referrers fallback tag (one tag
    list, no request each), then what the other tags point at (one HEAD each).
    """
    wanted: dict[str, None] = dict.fromkeys([current] if current else [])
    wanted.update(dict.fromkeys(d for e in entries for d in (e.to_digest, e.from_digest) if d))
    tags = target.tags()
    for tag in tags:
        if tag.startswith(FALLBACK_TAG_PREFIX):
            try:
                wanted.setdefault(validate_digest("sha256:" + tag[len(FALLBACK_TAG_PREFIX):]), None)
            except UsageError:
                continue
    for tag in tags:
        if len(wanted) >= _OUTSIDE_SUBJECTS:
            break
        if not is_internal_tag(tag):
            digest = tag_digest(target, tag)
            wanted.update(dict.fromkeys([digest] if digest else []))
    return list(wanted)[:_OUTSIDE_SUBJECTS]


def _signed_record(
    target: Target, stage: str, digest: str, policy: VerificationPolicy, origins: Sequence[str]
) -> tuple[PromotionRecord, str | None] | None:
    """(record, signer) if ``digest`` is a record of ``stage`` in ``target`` signed under ``policy``."""
    try:
        loaded = load_record(target, digest)
    except (AuthError, NetworkError):
        raise
    except OcimodelError:
        return None  # not a promotion record (a signature, an SBOM...) or unreadable: no evidence
    if misplaced(loaded, target, stage, origins) is not None:
        return None
    verdict = recordtrust.judge_record(target, digest, policy)
    return (loaded.record, verdict.signed_by) if verdict.verified else None


def _signed_outside(
    target: Target, stage: str, subjects: list[str], chain: set[str], policy: VerificationPolicy,
    origins: Sequence[str],
) -> dict[str, tuple[PromotionRecord, str | None]]:
    """Records of ``stage`` signed under ``policy`` that are referrers of ``subjects`` but not in ``chain``."""
    found: dict[str, tuple[PromotionRecord, str | None]] = {}
    looked: set[str] = set(chain)
    for subject in subjects:
        try:
            listed = list_referrers(target, subject)
        except (AuthError, NetworkError):
            raise  # the store cannot be read: say so rather than report a clean search
        except OcimodelError:
            continue  # a garbled referrers index hides evidence, as deleting it would: best effort
        for descriptor in listed:
            # Index metadata only narrows what is fetched; the record itself is judged below.
            if descriptor.digest in looked or descriptor.artifact_type not in (None, PROMOTION_ARTIFACT_TYPE):
                continue
            if descriptor.annotations.get(ANNOTATION_STAGE, stage) != stage:
                continue
            looked.add(descriptor.digest)
            if len(looked) - len(chain) > _OUTSIDE_RECORDS:
                return found
            signed = _signed_record(target, stage, descriptor.digest, policy, origins)
            if signed is not None:
                found[descriptor.digest] = signed
    return found


def _branch_kind(
    target: Target, record: PromotionRecord, head: str, chain: set[str],
    outside: Mapping[str, tuple[PromotionRecord, str | None]],
) -> str | None:
    """How a signed record outside the chain relates to it, following its ``previousRecord`` links.

    ``head-behind``: it descends from the head (newer promotions dropped, or one stopped before
    moving the head); ``chain-replaced``: it descends from no record of the chain; None: it
    branches off an older record, or is a lone first record (a promotion that lost a race).
    """
    for steps in range(SUCCESSOR_SEARCH):
        previous = record.previous_record
        if previous == head:
            return "head-behind"
        if previous in chain:
            return None
        if previous is None:
            return "chain-replaced" if steps else None
        known = outside.get(previous)
        loaded = None if known else try_load(target, previous)
        if known is None and loaded is None:
            return "chain-replaced"  # it builds on a record that is gone
        record = known[0] if known else loaded.record  # type: ignore[union-attr]
    return "chain-replaced"


def outside_findings(
    target: Target, stage: str, report: HistoryReport, policy: VerificationPolicy, origins: Sequence[str] = ()
) -> list[Finding]:
    """Signed records of the stage that the chain does not contain, as head-behind / chain-replaced.

    Best effort: they are found as referrers of the models the repository knows, which a registry
    writer can also remove. See docs/stages.md, "What the history proves".
    """
    if report.head is None or not report.complete:
        return []
    chain = {e.record for e in report.entries}
    subjects = _search_subjects(target, report.entries, report.current)
    outside = _signed_outside(target, stage, subjects, chain, policy, origins)
    findings = []
    for digest, (record, signer) in outside.items():
        kind = _branch_kind(target, record, report.head, chain, outside)
        if kind == "head-behind":
            what = (f"follows the history head {report.head}, but the head does not point at it: the newest "
                    "promotions were dropped (the history tag was moved back) or that promotion stopped before "
                    "moving the head; check, then promote again")
        elif kind == "chain-replaced":
            what = (f"is a promotion of {stage} that this history does not contain: the history tag points at "
                    "another chain than the one signed under the policy")
        else:
            continue
        findings.append(Finding(kind, f"{describe(digest, record)}, signed by {signer}, {what}", digest))
    return findings
