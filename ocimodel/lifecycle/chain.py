"""Walking a stage's promotion records: the entries, the report, and what can be wrong.

The walk follows ``previousRecord`` links from the history head; every record is fetched by
the digest its successor names and checked against it, so a complete walk verifies the hash
chain. Whatever is wrong becomes a :class:`Finding` (machine-readable ``kind``), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import IntegrityError, NotFoundError, OcimodelError, SchemaError, UsageError
from ..reference import Reference
from ..signing.bundles import find_bundles
from ..storage import Target
from . import recordtrust
from .actor import Actor
from .records import LoadedRecord, PromotionRecord, history_tag, load_record, short

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy

#: Findings that mean "not signed under the policy" (the CLI exits 5 on these, 6 on the others).
SIGNATURE_FINDINGS = frozenset({*recordtrust.PROBLEMS, "head-behind", "chain-replaced"})


@dataclass(frozen=True)
class Finding:
    """Something wrong with a stage's history, said exactly (``kind`` is machine-readable).

    Kinds: ``moved-outside``, ``no-history``, ``missing-record``, ``tampered-record``,
    ``invalid-record``, ``unreadable-record``, ``wrong-stage``, ``wrong-repository``, ``cycle``;
    with a policy also ``unsigned``, ``signature-mismatch``, ``signed-by-other``,
    ``invalid-signature`` (a record not signed under it), ``head-behind`` and
    ``chain-replaced`` (a record signed under it that the chain leaves out).
    """

    kind: str
    message: str
    record: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "record": self.record}


@dataclass(frozen=True)
class HistoryEntry:
    """One promotion of the stage, from a record whose bytes matched their digests."""

    record: str
    time: str
    actor: Actor
    repository: str  # where the promotion was made (another one only for a copy: see origins)
    reason: str
    from_digest: str | None
    to_digest: str
    previous_record: str | None
    signed: bool
    signature_verified: bool | None = None  # None: no policy given
    signed_by: str | None = None  # who signed under the policy (when verified)
    signature_problem: str | None = None  # why not verified (a recordtrust problem kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "time": self.time,
            "actor": self.actor.to_dict(),
            "repository": self.repository,
            "reason": self.reason,
            "from": self.from_digest,
            "to": self.to_digest,
            "previousRecord": self.previous_record,
            "signed": self.signed,
            "signatureVerified": self.signature_verified,
            "signedBy": self.signed_by,
            "signatureProblem": self.signature_problem,
        }


@dataclass(frozen=True)
class HistoryReport:
    """A stage's promotions, newest first, and every problem found while walking the chain."""

    repository: str
    stage: str
    current: str | None  # the digest the stage tag holds now
    head: str | None  # the newest record (the history tag)
    entries: list[HistoryEntry]
    findings: list[Finding]
    complete: bool  # the walk reached the first promotion
    checked: bool = False  # the records were checked against a policy

    @property
    def ok(self) -> bool:
        return self.complete and not self.findings

    @property
    def verified(self) -> bool | None:
        """None without a policy; else whether the whole chain is signed under it, nothing left out."""
        if not self.checked:
            return None
        signed = all(e.signature_verified for e in self.entries)
        return self.complete and signed and not self.signature_findings

    @property
    def signature_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in SIGNATURE_FINDINGS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "stage": self.stage,
            "current": self.current,
            "head": self.head,
            "complete": self.complete,
            "ok": self.ok,
            "verified": self.verified,
            "entries": [e.to_dict() for e in self.entries],
            "findings": [f.to_dict() for f in self.findings],
        }


def _read_failure(digest: str, newer: str | None, exc: OcimodelError) -> Finding:
    """The finding for a record that could not be read, by cause."""
    where = f"named by record {newer}" if newer else "the history head"
    if isinstance(exc, NotFoundError):
        return Finding("missing-record", f"chain broken: record {digest} ({where}) is missing from the registry", digest)
    if isinstance(exc, SchemaError):
        return Finding("invalid-record", f"record {digest} ({where}) is not a valid promotion record: {exc}", digest)
    if isinstance(exc, IntegrityError):
        return Finding("tampered-record", f"record {digest} ({where}) fails its digest: {exc}", digest)
    return Finding("unreadable-record", f"record {digest} ({where}) could not be read: {exc}", digest)


def describe(digest: str, record: PromotionRecord) -> str:
    """A record for messages: its digest, who promoted when, and the move it recorded."""
    return f"record {digest} ({record.actor} at {record.time}: {short(record.previous_digest)} -> {short(record.digest)})"


#: Why a record is not signed under the policy, by problem kind, for messages.
PROBLEM_TEXT = {
    recordtrust.UNSIGNED: "is not signed; anyone who can push to the registry could have written it",
    recordtrust.SIGNATURE_MISMATCH: "carries a signature of other bytes, not of this record",
    recordtrust.SIGNED_BY_OTHER: "is signed, but not by anyone the policy trusts",
    recordtrust.INVALID_SIGNATURE: "has signatures that cannot be read",
}


def _entry(loaded: LoadedRecord, signed: bool, verdict: recordtrust.RecordVerdict | None) -> HistoryEntry:
    r = loaded.record
    return HistoryEntry(
        record=loaded.digest,
        time=r.time,
        actor=r.actor,
        repository=r.repository,
        reason=r.reason,
        from_digest=r.previous_digest,
        to_digest=r.digest,
        previous_record=r.previous_record,
        signed=signed,
        signature_verified=verdict.verified if verdict else None,
        signed_by=verdict.signed_by if verdict else None,
        signature_problem=verdict.problem if verdict else None,
    )


def _checked_entry(
    target: Target, loaded: LoadedRecord, policy: VerificationPolicy | None
) -> tuple[HistoryEntry, Finding | None]:
    """The entry for a record, and the finding when it is not signed under ``policy``."""
    if policy is None:
        return _entry(loaded, bool(find_bundles(target, loaded.digest)), None), None
    verdict = recordtrust.judge_record(target, loaded.digest, policy)
    finding = None
    if verdict.problem is not None:
        detail = f" ({verdict.detail})" if verdict.problem != recordtrust.UNSIGNED else ""
        message = f"{describe(loaded.digest, loaded.record)} {PROBLEM_TEXT[verdict.problem]}{detail}"
        finding = Finding(verdict.problem, message, loaded.digest)
    return _entry(loaded, verdict.signed, verdict), finding


def _same_repository(written_for: str, name: str) -> bool:
    """Whether a record written for ``written_for`` belongs to the repository ``name``: the same
    name, or the same repository of a registry under another host name (mirrors, aliases)."""
    if written_for == name:
        return True
    try:
        ours = Reference.parse_repository(name).repository
        return Reference.parse_repository(written_for).repository == ours
    except UsageError:
        return False


def misplaced(loaded: LoadedRecord, target: Target, stage: str, origins: Sequence[str] = ()) -> Finding | None:
    """The finding for a record of another stage or repository spliced into this chain.

    ``origins`` are the repositories a copy came from, named by the person asking: their
    records are accepted as the history of the copy. A record of any other repository is
    refused: a signed promotion elsewhere is no promotion here unless someone says so.
    """
    r = loaded.record
    if r.stage != stage:
        return Finding("wrong-stage", f"record {loaded.digest} is a promotion to {r.stage!r}, not {stage!r}", loaded.digest)
    if not any(_same_repository(r.repository, name) for name in (target.name, *origins)):
        message = (f"record {loaded.digest} is a promotion in {r.repository}, not {target.name}: copied from "
                   f"elsewhere (if this is a copy of {r.repository}, name it with --origin)")
        return Finding("wrong-repository", message, loaded.digest)
    return None


def walk(
    target: Target, stage: str, head: str, limit: int, policy: VerificationPolicy | None, origins: Sequence[str] = ()
) -> tuple[list[HistoryEntry], list[Finding], bool]:
    """Follow ``previousRecord`` links from ``head``: (entries, findings, reached the start)."""
    entries: list[HistoryEntry] = []
    findings: list[Finding] = []
    digest: str | None = head
    newer: str | None = None
    seen: set[str] = set()
    while digest is not None and len(entries) < limit:
        if digest in seen:
            findings.append(Finding("cycle", f"record {newer} links back to {digest}: the chain loops", digest))
            return entries, findings, False
        seen.add(digest)
        try:
            loaded = load_record(target, digest)
        except OcimodelError as exc:
            findings.append(_read_failure(digest, newer, exc))
            return entries, findings, False
        elsewhere = misplaced(loaded, target, stage, origins)
        if elsewhere is not None:
            findings.append(elsewhere)
            return entries, findings, False
        entry, problem = _checked_entry(target, loaded, policy)
        findings.extend([problem] if problem else [])
        entries.append(entry)
        newer, digest = digest, loaded.record.previous_record
    return entries, findings, digest is None


def head_findings(stage: str, current: str | None, head: str | None, entries: list[HistoryEntry]) -> list[Finding]:
    """Compare the stage tag with the newest record."""
    if head is None:
        return [
            Finding(
                "no-history",
                f"stage tag {stage} points at {current} but has no ocimodel history "
                f"(tag {history_tag(stage)} is missing): it was set outside ocimodel",
            )
        ]
    if entries and entries[0].record == head and entries[0].to_digest != current:
        newest = entries[0]
        return [
            Finding(
                "moved-outside",
                f"stage tag {stage} points at {current or 'nothing (tag deleted)'}, but the newest promotion "
                f"record ({head}, by {newest.actor} at {newest.time}) moved it to {newest.to_digest}: the tag "
                "was moved outside ocimodel (or a promotion is in progress)",
                head,
            )
        ]
    return []
