"""Stages: move a model version to a named stage (a tag) with an auditable, hash-chained history.

A *stage* (``staging``, ``prod``...) is an ordinary tag. Promoting re-PUTs the exact manifest
bytes under the stage tag (same digest, no blob moves) and writes a *promotion record*: a small
referrer manifest (``artifactType`` :data:`PROMOTION_ARTIFACT_TYPE`, ``subject`` = the promoted
manifest, one JSON layer) naming the previous record of the stage, so the records form a hash
chain. The internal tag ``ocimodel.history.<stage>`` points at the newest record.

Registries offer no compare-and-swap on tags, so a promotion checks the history head right
before moving it, moves it, and reads it back right away and after a settle time: a racer who
overwrote it is detected and the loser is told who won (:class:`StageConflictError`). The stage
tag only moves once the record is the head. See docs/stages.md.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import timestamp
from .descriptor import (
    ANNOTATION_CREATED,
    DOCKER_MANIFEST_LIST_V2,
    EMPTY_JSON,
    EMPTY_V1,
    INDEX_V1,
    Descriptor,
    Manifest,
    canonical_json,
)
from .errors import (
    AuthError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    OcimodelError,
    RegistryError,
    SchemaError,
    UsageError,
    VerificationError,
)
from . import recordtrust
from .jsondoc import load_object
from .reference import Reference, validate_digest, validate_tag
from .registry.client import RegistryClient
from .storage import FetchedManifest, ManifestPutResult
from .signing import storage

if TYPE_CHECKING:
    from .signing.policy import VerificationPolicy

PROMOTION_ARTIFACT_TYPE = "application/vnd.ocimodel.promotion.v1+json"
#: Media type of the record's one layer (the record JSON).
RECORD_MEDIA_TYPE = PROMOTION_ARTIFACT_TYPE
RECORD_SCHEMA_VERSION = 1
#: Annotation on record manifests (and their referrers-index entries) naming the stage.
ANNOTATION_STAGE = "dev.ocimodel.stage"
#: Tags starting with these belong to ocimodel or to the referrers fallback scheme.
INTERNAL_TAG_PREFIX = "ocimodel."
FALLBACK_TAG_PREFIX = "sha256-"
HISTORY_TAG_PREFIX = "ocimodel.history."
#: Seconds between writing the history head and reading it back (longer than a racer's check-to-PUT).
DEFAULT_SETTLE_SECONDS = 0.3
#: A record is a few hundred bytes; refuse anything huge.
MAX_RECORD_SIZE = 64 * 1024
#: How far history walks by default, and how far a winner looks for itself behind a newer head.
MAX_HISTORY = 10_000
_SUCCESSOR_SEARCH = 50
_MAX_TAG = 128

Verifier = Callable[[Reference], object]


class StageConflictError(OcimodelError):
    """Another promotion of the same stage won a race; ``winner_*`` name it when known."""

    def __init__(self, message: str, *, winner_digest: str | None = None, winner_record: str | None = None) -> None:
        super().__init__(message)
        self.winner_digest = winner_digest
        self.winner_record = winner_record


# ------------------------------------------------------------------------------ names


def validate_stage(stage: str) -> str:
    """Return ``stage`` if usable as a stage tag; refuse ocimodel's internal tag names."""
    validate_tag(stage)
    if stage.startswith((INTERNAL_TAG_PREFIX, FALLBACK_TAG_PREFIX)):
        raise UsageError(
            f"invalid stage {stage!r}: tags starting with {INTERNAL_TAG_PREFIX!r} or "
            f"{FALLBACK_TAG_PREFIX!r} are reserved for ocimodel and referrers"
        )
    if len(history_tag(stage)) > _MAX_TAG:
        raise UsageError(f"invalid stage {stage!r}: at most {_MAX_TAG - len(HISTORY_TAG_PREFIX)} characters")
    return stage


def history_tag(stage: str) -> str:
    """The internal tag pointing at the newest promotion record of ``stage``."""
    return HISTORY_TAG_PREFIX + stage


def is_internal_tag(tag: str) -> bool:
    """Whether ``tag`` is ocimodel's (history heads) or a referrers fallback index."""
    return tag.startswith((INTERNAL_TAG_PREFIX, FALLBACK_TAG_PREFIX))


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "nothing"


def _repository(ref: str | Reference) -> Reference:
    """The repository of ``ref`` (tag and digest dropped); strings must name no tag or digest."""
    return Reference.coerce(ref, repository=True)


# ------------------------------------------------------------------------------ actor


@dataclass(frozen=True)
class Actor:
    """Who promoted: a name, where it came from (explicit, github, gitlab, local) and CI details."""

    name: str
    source: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, obj: Any) -> "Actor":
        """Parse the record's ``actor`` object."""
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("source"), str):
            raise SchemaError("promotion record field 'actor' needs string 'name' and 'source'")
        details = obj.get("details") or {}
        if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
            raise SchemaError("promotion record field 'actor.details' must map strings to strings")
        return cls(name=obj["name"], source=obj["source"], details=dict(details))

    def __str__(self) -> str:
        return self.name if self.source in ("explicit", "local") else f"{self.name} ({self.source})"


def _pick(environ: Mapping[str, str], **names: str) -> dict[str, str]:
    return {key: environ[var] for key, var in names.items() if environ.get(var)}


def _ci_details(environ: Mapping[str, str]) -> tuple[str, str, dict[str, str]] | None:
    """(source, user, details) from GitHub Actions or GitLab CI variables, else None."""
    if environ.get("GITHUB_ACTOR"):
        details = _pick(
            environ, workflowRef="GITHUB_WORKFLOW_REF", runId="GITHUB_RUN_ID", repository="GITHUB_REPOSITORY"
        )
        if all(environ.get(v) for v in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
            details["runUrl"] = (
                f"{environ['GITHUB_SERVER_URL']}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
            )
        return "github", environ["GITHUB_ACTOR"], details
    if environ.get("GITLAB_USER_LOGIN"):
        details = _pick(environ, pipelineUrl="CI_PIPELINE_URL", jobUrl="CI_JOB_URL", project="CI_PROJECT_PATH")
        return "gitlab", environ["GITLAB_USER_LOGIN"], details
    return None


def _local_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER/LOGNAME
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def detect_actor(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Actor:
    """``explicit`` if given, else the CI identity (GitHub, GitLab), else ``user@host``.

    CI details (workflow ref, run, pipeline URL) are kept even with an explicit name.
    """
    env = os.environ if environ is None else environ
    ci = _ci_details(env)
    if explicit:
        return Actor(name=explicit, source="explicit", details=ci[2] if ci else {})
    if ci:
        return Actor(name=ci[1], source=ci[0], details=ci[2])
    return Actor(name=_local_user(), source="local")


# ------------------------------------------------------------------------------ records


def _optional_digest(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"promotion record field {key!r} must be a digest or null")
    try:
        return validate_digest(value)
    except UsageError as exc:
        raise SchemaError(f"promotion record field {key!r}: {exc}") from None


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise SchemaError(f"promotion record field {key!r} missing or not a string")
    return value


@dataclass(frozen=True)
class PromotionRecord:
    """What one promotion did: ``stage`` of ``repository`` moved from ``previous_digest`` to ``digest``."""

    stage: str
    repository: str
    digest: str
    previous_digest: str | None
    previous_record: str | None
    actor: Actor
    time: str
    reason: str
    tool: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": RECORD_SCHEMA_VERSION,
            "stage": self.stage,
            "repository": self.repository,
            "digest": self.digest,
            "previousDigest": self.previous_digest,
            "previousRecord": self.previous_record,
            "actor": self.actor.to_dict(),
            "time": self.time,
            "reason": self.reason,
            "tool": dict(self.tool),
        }

    def to_bytes(self) -> bytes:
        """Deterministic JSON (sorted keys, compact)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PromotionRecord":
        """Parse and validate record JSON; :class:`SchemaError` when malformed or too new."""
        obj = load_object(raw, "promotion record", max_bytes=MAX_RECORD_SIZE)
        if obj.get("schemaVersion") != RECORD_SCHEMA_VERSION:
            raise SchemaError(
                f"promotion record schemaVersion {obj.get('schemaVersion')!r} is not supported; upgrade ocimodel"
            )
        digest = _optional_digest(obj, "digest")
        if digest is None:
            raise SchemaError("promotion record field 'digest' missing")
        tool = obj.get("tool") or {}
        return cls(
            stage=_required_str(obj, "stage"),
            repository=_required_str(obj, "repository"),
            digest=digest,
            previous_digest=_optional_digest(obj, "previousDigest"),
            previous_record=_optional_digest(obj, "previousRecord"),
            actor=Actor.from_dict(obj.get("actor")),
            time=_required_str(obj, "time"),
            reason=_required_str(obj, "reason"),
            tool={str(k): str(v) for k, v in tool.items()} if isinstance(tool, dict) else {},
        )


def build_record_manifest(record: PromotionRecord, subject: Descriptor) -> Manifest:
    """The referrer manifest holding ``record``: empty config, one JSON layer, ``subject`` set."""
    layer = Descriptor.from_bytes(RECORD_MEDIA_TYPE, record.to_bytes())
    plain_subject = Descriptor(media_type=subject.media_type, digest=subject.digest, size=subject.size)
    return Manifest.build(
        storage.EMPTY_DESCRIPTOR,
        [layer],
        artifact_type=PROMOTION_ARTIFACT_TYPE,
        subject=plain_subject,
        annotations={ANNOTATION_CREATED: record.time, ANNOTATION_STAGE: record.stage},
    )


@dataclass(frozen=True)
class LoadedRecord:
    """A promotion record read from the registry: its manifest digest and content (both verified)."""

    digest: str
    record: PromotionRecord


def load_record(client: RegistryClient, repo: Reference, digest: str) -> LoadedRecord:
    """Fetch record ``digest`` and its layer, each checked against its digest.

    Raises NotFoundError (missing), an IntegrityError (altered bytes) or SchemaError (not a
    promotion record, or its subject disagrees with its content).
    """
    fetched = client.get_manifest(repo.with_digest(digest))
    manifest = Manifest.parse(fetched.raw, f"promotion record {digest}")
    layers = manifest.layers
    if manifest.artifact_type != PROMOTION_ARTIFACT_TYPE or len(layers) != 1 or layers[0].media_type != RECORD_MEDIA_TYPE:
        raise SchemaError(f"{digest} in {repo.name} is not an ocimodel promotion record")
    record = PromotionRecord.from_bytes(client.fetch_blob_bytes(repo, layers[0], max_size=MAX_RECORD_SIZE))
    if manifest.subject is None or manifest.subject.digest != record.digest:
        raise SchemaError(f"promotion record {digest}: its subject is not the digest it records")
    return LoadedRecord(digest=digest, record=record)


def _try_load(client: RegistryClient, repo: Reference, digest: str | None) -> LoadedRecord | None:
    if digest is None:
        return None
    try:
        return load_record(client, repo, digest)
    except (NotFoundError, IntegrityError):
        return None


def _tag_digest(client: RegistryClient, ref: Reference) -> str | None:
    found = client.head_manifest(ref)
    return found.digest if found else None


# ------------------------------------------------------------------------------ promote


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


def _read_state(client: RegistryClient, repo: Reference, stage: str) -> _StageState:
    head = _tag_digest(client, repo.with_tag(history_tag(stage)))
    loaded = _try_load(client, repo, head)
    stage_digest = _tag_digest(client, repo.with_tag(stage))
    return _StageState(stage_digest, head, loaded.record if loaded else None)


def _settled_state(client: RegistryClient, repo: Reference, stage: str, settle: float) -> _StageState:
    """The state, waiting once for an in-flight promotion to finish moving the stage tag."""
    state = _read_state(client, repo, stage)
    if state.in_flight:
        time.sleep(2 * settle)
        state = _read_state(client, repo, stage)
    return state


def _resolve_model(client: RegistryClient, ref: Reference) -> FetchedManifest:
    """The manifest bytes to promote (fetched once); promotion records themselves are refused."""
    fetched = client.get_manifest(ref)
    if fetched.media_type not in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        manifest = Manifest.parse(fetched.raw, f"manifest of {ref}")
        if manifest.artifact_type == PROMOTION_ARTIFACT_TYPE:
            raise UsageError(f"{ref} is a promotion record, not a model; promote the model it refers to")
    return fetched


def _push_record(client: RegistryClient, repo: Reference, manifest: Manifest, raw_record: bytes) -> ManifestPutResult:
    client.push_blob_bytes(repo, EMPTY_V1, EMPTY_JSON)
    client.push_blob_bytes(repo, RECORD_MEDIA_TYPE, raw_record)
    return client.put_manifest_result(repo.with_digest(manifest.digest), manifest.raw, manifest.media_type)


def _index_record(
    client: RegistryClient, repo: Reference, subject: str, manifest: Manifest, put: ManifestPutResult
) -> str | None:
    """Make the record discoverable as a referrer; returns the fallback tag used, if any."""
    if put.subject is not None or client.referrers(repo, subject) is not None:
        return None
    tag = storage.fallback_tag(subject)
    storage.merge_into_fallback(client, repo.with_tag(tag), storage.index_entry(manifest))
    return tag


def _conflict(
    client: RegistryClient, repo: Reference, stage: str, digest: str, head: str | None, what: str
) -> StageConflictError:
    """The error telling a loser who won: the head record's promotion, and what the stage holds."""
    winner = _try_load(client, repo, head)
    holds = _tag_digest(client, repo.with_tag(stage))
    if winner is not None:
        who = f"{winner.record.actor} promoted {winner.record.digest} at {winner.record.time} (record {_short(head)})"
    else:
        who = f"the history head is now {head or 'gone'}"
    return StageConflictError(
        f"promotion of {digest} to {stage} {what}: {who}; {stage} holds {holds or 'nothing'}; "
        "run it again if it should still win",
        winner_digest=winner.record.digest if winner else None,
        winner_record=head,
    )


def _check_unchanged(client: RegistryClient, repo: Reference, stage: str, digest: str, state: _StageState) -> None:
    """Right before moving anything: refuse if another promotion moved the head or the stage."""
    head = _tag_digest(client, repo.with_tag(history_tag(stage)))
    stage_now = _tag_digest(client, repo.with_tag(stage))
    if head != state.head or stage_now != state.stage_digest:
        raise _conflict(client, repo, stage, digest, head, "lost a race (nothing moved)")


def _settle_as_head(client: RegistryClient, repo: Reference, stage: str, digest: str, record: str, settle: float) -> None:
    """Read the history head back now and after ``settle`` s; a racer who overwrote it wins."""
    for wait in (0.0, settle):
        time.sleep(wait)
        head = _tag_digest(client, repo.with_tag(history_tag(stage)))
        if head != record:
            raise _conflict(client, repo, stage, digest, head, "lost a race (the stage tag was not moved)")


def _chain_contains(client: RegistryClient, repo: Reference, head: str | None, record: str) -> bool:
    """Whether ``record`` is among the few records behind ``head`` (a legitimate successor)."""
    for _ in range(_SUCCESSOR_SEARCH):
        if head is None:
            return False
        if head == record:
            return True
        loaded = _try_load(client, repo, head)
        head = loaded.record.previous_record if loaded else None
    return False


def _confirm(client: RegistryClient, repo: Reference, stage: str, digest: str, record: str) -> None:
    """After the stage tag moved: our record must still be the head or behind a later one."""
    head = _tag_digest(client, repo.with_tag(history_tag(stage)))
    if head == record:
        if _tag_digest(client, repo.with_tag(stage)) != digest:
            raise _conflict(client, repo, stage, digest, head, "was undone: the stage tag moved outside ocimodel")
    elif not _chain_contains(client, repo, head, record):
        raise _conflict(client, repo, stage, digest, head, "was overwritten by a concurrent promotion")


def _unchanged(repo: Reference, stage: str, digest: str, head: str | None, reason: str) -> PromotionResult:
    """The result when the stage already holds ``digest`` and its history agrees: nothing written."""
    return PromotionResult(
        repository=repo.name,
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
    client: RegistryClient,
    ref: str | Reference,
    stage: str,
    *,
    reason: str,
    actor: str | None = None,
    verify_model: Verifier | None = None,
    sign_record: Verifier | None = None,
    settle: float = DEFAULT_SETTLE_SECONDS,
) -> PromotionResult:
    """Point ``stage`` at the manifest ``ref`` names and record who did it, when and why.

    ``verify_model(ref@digest)`` runs before anything is written and refuses by raising
    (VerificationError). ``sign_record(record_ref)`` signs the record before any tag moves.
    Raises :class:`StageConflictError` naming the winner when a concurrent promotion won.
    """
    validate_stage(stage)
    reference = Reference.coerce(ref)
    repo = _repository(reference)
    fetched = _resolve_model(client, reference)
    if verify_model is not None:
        verify_model(repo.with_digest(fetched.digest))
    state = _settled_state(client, repo, stage, settle)
    if state.stage_digest == fetched.digest and state.head_record and state.head_record.digest == fetched.digest:
        return _unchanged(repo, stage, fetched.digest, state.head, reason)
    record = PromotionRecord(
        stage=stage,
        repository=repo.name,
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
    put = _push_record(client, repo, manifest, record.to_bytes())
    fallback = _index_record(client, repo, fetched.digest, manifest, put)
    if sign_record is not None:
        sign_record(repo.with_digest(manifest.digest))
    _check_unchanged(client, repo, stage, fetched.digest, state)
    client.put_manifest(repo.with_tag(history_tag(stage)), manifest.raw, manifest.media_type)
    _settle_as_head(client, repo, stage, fetched.digest, manifest.digest, settle)
    client.put_manifest(repo.with_tag(stage), fetched.raw, fetched.media_type)
    _confirm(client, repo, stage, fetched.digest, manifest.digest)
    return PromotionResult(
        repository=repo.name,
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


# ------------------------------------------------------------------------------ history

#: Findings that mean "not signed under the policy" (the CLI exits 5 on these, 6 on the others).
SIGNATURE_FINDINGS = frozenset({*recordtrust.PROBLEMS, "head-behind", "chain-replaced"})
#: How many model digests, and candidate records, the search for signed records outside the
#: chain looks at (a hostile registry could list any number of referrers).
_OUTSIDE_SUBJECTS = 256
_OUTSIDE_RECORDS = 256


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


def _describe(digest: str, record: PromotionRecord) -> str:
    return f"record {digest} ({record.actor} at {record.time}: {_short(record.previous_digest)} -> {_short(record.digest)})"


_PROBLEM_TEXT = {
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
    client: RegistryClient, repo: Reference, loaded: LoadedRecord, policy: VerificationPolicy | None
) -> tuple[HistoryEntry, Finding | None]:
    """The entry for a record, and the finding when it is not signed under ``policy``."""
    if policy is None:
        return _entry(loaded, bool(storage.find_bundles(client, repo, loaded.digest)), None), None
    verdict = recordtrust.judge_record(client, repo, loaded.digest, policy)
    finding = None
    if verdict.problem is not None:
        detail = f" ({verdict.detail})" if verdict.problem != recordtrust.UNSIGNED else ""
        message = f"{_describe(loaded.digest, loaded.record)} {_PROBLEM_TEXT[verdict.problem]}{detail}"
        finding = Finding(verdict.problem, message, loaded.digest)
    return _entry(loaded, verdict.signed, verdict), finding


def _same_repository(record: PromotionRecord, repo: Reference) -> bool:
    """Whether a record was written for ``repo`` (the registry host may differ: mirrors, aliases)."""
    try:
        return Reference.parse_repository(record.repository).repository == repo.repository
    except UsageError:
        return False


def _misplaced(loaded: LoadedRecord, repo: Reference, stage: str) -> Finding | None:
    """The finding for a record of another stage or repository spliced into this chain."""
    r = loaded.record
    if r.stage != stage:
        return Finding("wrong-stage", f"record {loaded.digest} is a promotion to {r.stage!r}, not {stage!r}", loaded.digest)
    if not _same_repository(r, repo):
        message = f"record {loaded.digest} is a promotion in {r.repository}, not {repo.name}: copied from elsewhere"
        return Finding("wrong-repository", message, loaded.digest)
    return None


def _walk(
    client: RegistryClient, repo: Reference, stage: str, head: str, limit: int, policy: VerificationPolicy | None
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
            loaded = load_record(client, repo, digest)
        except OcimodelError as exc:
            findings.append(_read_failure(digest, newer, exc))
            return entries, findings, False
        misplaced = _misplaced(loaded, repo, stage)
        if misplaced is not None:
            findings.append(misplaced)
            return entries, findings, False
        entry, problem = _checked_entry(client, repo, loaded, policy)
        findings.extend([problem] if problem else [])
        entries.append(entry)
        newer, digest = digest, loaded.record.previous_record
    return entries, findings, digest is None


def _head_findings(stage: str, current: str | None, head: str | None, entries: list[HistoryEntry]) -> list[Finding]:
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


# --------------------------------------------------------------- signed records outside the chain


def _search_subjects(client: RegistryClient, repo: Reference, entries: list[HistoryEntry], current: str | None) -> list[str]:
    """Model digests whose referrers may hold records of the stage, at most ``_OUTSIDE_SUBJECTS``.

    The chain's own models first, then every digest with a referrers fallback tag (one tag
    list, no request each), then what the other tags point at (one HEAD each).
    """
    wanted: dict[str, None] = dict.fromkeys([current] if current else [])
    wanted.update(dict.fromkeys(d for e in entries for d in (e.to_digest, e.from_digest) if d))
    tags = client.list_tags(repo)
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
            digest = _tag_digest(client, repo.with_tag(tag))
            wanted.update(dict.fromkeys([digest] if digest else []))
    return list(wanted)[:_OUTSIDE_SUBJECTS]


def _signed_record(
    client: RegistryClient, repo: Reference, stage: str, digest: str, policy: VerificationPolicy
) -> tuple[PromotionRecord, str | None] | None:
    """(record, signer) if ``digest`` is a record of ``stage`` in ``repo`` signed under ``policy``."""
    try:
        loaded = load_record(client, repo, digest)
    except (AuthError, NetworkError):
        raise
    except OcimodelError:
        return None  # not a promotion record (a signature, an SBOM...) or unreadable: no evidence
    if _misplaced(loaded, repo, stage) is not None:
        return None
    verdict = recordtrust.judge_record(client, repo, digest, policy)
    return (loaded.record, verdict.signed_by) if verdict.verified else None


def _signed_outside(
    client: RegistryClient, repo: Reference, stage: str, subjects: list[str], chain: set[str], policy: VerificationPolicy
) -> dict[str, tuple[PromotionRecord, str | None]]:
    """Records of ``stage`` signed under ``policy`` that are referrers of ``subjects`` but not in ``chain``."""
    found: dict[str, tuple[PromotionRecord, str | None]] = {}
    looked: set[str] = set(chain)
    for subject in subjects:
        try:
            referrers = storage.list_referrers(client, repo, subject)
        except (AuthError, NetworkError):
            raise  # the registry cannot be read: say so rather than report a clean search
        except OcimodelError:
            continue  # a garbled referrers index hides evidence, as deleting it would: best effort
        for descriptor in referrers:
            # Index metadata only narrows what is fetched; the record itself is judged below.
            if descriptor.digest in looked or descriptor.artifact_type not in (None, PROMOTION_ARTIFACT_TYPE):
                continue
            if descriptor.annotations.get(ANNOTATION_STAGE, stage) != stage:
                continue
            looked.add(descriptor.digest)
            if len(looked) - len(chain) > _OUTSIDE_RECORDS:
                return found
            signed = _signed_record(client, repo, stage, descriptor.digest, policy)
            if signed is not None:
                found[descriptor.digest] = signed
    return found


def _branch_kind(
    client: RegistryClient, repo: Reference, record: PromotionRecord, head: str, chain: set[str],
    outside: Mapping[str, tuple[PromotionRecord, str | None]],
) -> str | None:
    """How a signed record outside the chain relates to it, following its ``previousRecord`` links.

    ``head-behind``: it descends from the head (newer promotions dropped, or one stopped before
    moving the head); ``chain-replaced``: it descends from no record of the chain; None: it
    branches off an older record, or is a lone first record (a promotion that lost a race).
    """
    for steps in range(_SUCCESSOR_SEARCH):
        previous = record.previous_record
        if previous == head:
            return "head-behind"
        if previous in chain:
            return None
        if previous is None:
            return "chain-replaced" if steps else None
        known = outside.get(previous)
        loaded = None if known else _try_load(client, repo, previous)
        if known is None and loaded is None:
            return "chain-replaced"  # it builds on a record that is gone
        record = known[0] if known else loaded.record  # type: ignore[union-attr]
    return "chain-replaced"


def _outside_findings(
    client: RegistryClient, repo: Reference, stage: str, report: HistoryReport, policy: VerificationPolicy
) -> list[Finding]:
    """Signed records of the stage that the chain does not contain, as head-behind / chain-replaced.

    Best effort: they are found as referrers of the models the repository knows, which a registry
    writer can also remove. See docs/stages.md, "What the history proves".
    """
    if report.head is None or not report.complete:
        return []
    chain = {e.record for e in report.entries}
    subjects = _search_subjects(client, repo, report.entries, report.current)
    outside = _signed_outside(client, repo, stage, subjects, chain, policy)
    findings = []
    for digest, (record, signer) in outside.items():
        kind = _branch_kind(client, repo, record, report.head, chain, outside)
        if kind == "head-behind":
            what = (f"follows the history head {report.head}, but the head does not point at it: the newest "
                    "promotions were dropped (the history tag was moved back) or that promotion stopped before "
                    "moving the head; check, then promote again")
        elif kind == "chain-replaced":
            what = (f"is a promotion of {stage} that this history does not contain: the history tag points at "
                    "another chain than the one signed under the policy")
        else:
            continue
        findings.append(Finding(kind, f"{_describe(digest, record)}, signed by {signer}, {what}", digest))
    return findings


def history(
    client: RegistryClient,
    repo: str | Reference,
    stage: str,
    *,
    limit: int = MAX_HISTORY,
    policy: VerificationPolicy | None = None,
) -> HistoryReport:
    """The promotions of ``stage``, newest first, with findings instead of guesses.

    Every record is fetched by the digest its successor names and checked against it, so a
    complete walk verifies the hash chain. With ``policy`` every record must also be signed
    under it (else a finding: unsigned, signature-mismatch, signed-by-other,
    invalid-signature), and records signed under it that the chain leaves out are looked for
    (head-behind, chain-replaced). Without a policy nothing is verified: see docs/stages.md.
    """
    validate_stage(stage)
    if policy is not None:
        policy.validate()
    repository = _repository(repo)
    head = _tag_digest(client, repository.with_tag(history_tag(stage)))
    current = _tag_digest(client, repository.with_tag(stage))
    if head is None and current is None:
        raise NotFoundError(f"{repository.name} has no stage {stage!r} (no tag {stage}, no promotion history)")
    entries, findings, complete = ([], [], True) if head is None else _walk(
        client, repository, stage, head, limit, policy
    )
    findings = _head_findings(stage, current, head, entries) + findings
    report = HistoryReport(
        repository.name, stage, current, head, entries, findings, complete and head is not None, policy is not None
    )
    if policy is None:
        return report
    return replace(report, findings=report.findings + _outside_findings(client, repository, stage, report, policy))


# ------------------------------------------------------------------------------ stages


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


def _tag_digests(client: RegistryClient, repo: Reference, tags: list[str]) -> dict[str, str | None]:
    return {tag: _tag_digest(client, repo.with_tag(tag)) for tag in tags}


def _head_signature(
    client: RegistryClient, repo: Reference, head: str | None, loaded: LoadedRecord | None, policy: VerificationPolicy
) -> tuple[bool, str | None, str | None]:
    """(verified, signed by, finding) for a stage's newest record under ``policy``."""
    if head is None or loaded is None:
        return False, None, "its newest record cannot be read, so it cannot be verified"
    verdict = recordtrust.judge_record(client, repo, head, policy)
    if verdict.problem is None:
        return True, verdict.signed_by, None
    return False, None, f"{verdict.problem}: newest record {head} {_PROBLEM_TEXT[verdict.problem]}"


def _stage_info(
    client: RegistryClient, repo: Reference, stage: str, head: str | None, digests: Mapping[str, str | None],
    stage_names: set[str], policy: VerificationPolicy | None,
) -> StageInfo:
    digest = digests.get(stage)
    tags = sorted(t for t, d in digests.items() if d == digest and digest and t not in stage_names)
    loaded = _try_load(client, repo, head)
    finding = None
    if loaded is None:
        finding = f"newest record {head} of {stage} is missing or unreadable: run 'history' for details"
    elif loaded.record.digest != digest:
        finding = f"stage tag points at {digest or 'nothing'}, its newest record says {loaded.record.digest}: moved outside ocimodel"
    record = loaded.record if loaded else None
    verified, signer, problem = (None, None, None) if policy is None else _head_signature(client, repo, head, loaded, policy)
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


def stages(client: RegistryClient, repo: str | Reference, *, policy: VerificationPolicy | None = None) -> list[StageInfo]:
    """Every stage of ``repo`` (a tag with an ocimodel history), sorted by name.

    With ``policy`` each stage's newest record is verified under it (``signature_verified``);
    the whole chain is ``history``'s job.
    """
    if policy is not None:
        policy.validate()
    repository = _repository(repo)
    tags = client.list_tags(repository)
    names = {t[len(HISTORY_TAG_PREFIX) :] for t in tags if t.startswith(HISTORY_TAG_PREFIX)}
    digests = _tag_digests(client, repository, [t for t in tags if not is_internal_tag(t)])
    heads = _tag_digests(client, repository, [history_tag(s) for s in names])
    return [_stage_info(client, repository, s, heads[history_tag(s)], digests, names, policy) for s in sorted(names)]


# ------------------------------------------------------------------------------ rollback

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
    target = report.entries[steps - 1].from_digest
    if target is None:
        raise UsageError(f"before that promotion stage {report.stage} did not exist; nothing to roll back to")
    return target


def _require_signed_target(report: HistoryReport, target: str, undone: int | None) -> None:
    """VerificationError unless a record verified under the policy moved the stage to ``target``
    and, going back ``undone`` promotions, each of those is verified too (else "previous" is
    whatever an unsigned record claims, e.g. an old version an attacker prefers)."""
    for entry in report.entries[: undone or 0]:
        if not entry.signature_verified:
            raise VerificationError(
                f"refusing to roll back {report.stage}: promotion record {entry.record} ({entry.actor} at {entry.time}), "
                f"one of those to undo, is {entry.signature_problem} under the policy, so the digest before it is "
                "not trustworthy; name a digest a signed record reached with --to"
            )
    reached = [e for e in report.entries if e.to_digest == target]
    if any(e.signature_verified for e in reached):
        return
    if reached:
        why = ", ".join(f"{e.record[:19]} is {e.signature_problem}" for e in reached)
        detail = f"the records that moved it there are not signed under the policy ({why})"
    else:
        detail = "no promotion record moved the stage to it"
    raise VerificationError(f"refusing to roll back {report.stage} to {target}: {detail}")


def rollback(
    client: RegistryClient,
    repo: str | Reference,
    stage: str,
    *,
    to: str | None = None,
    steps: int = 1,
    reason: str | None = None,
    actor: str | None = None,
    policy: VerificationPolicy | None = None,
    verify_model: Verifier | None = None,
    sign_record: Verifier | None = None,
    settle: float = DEFAULT_SETTLE_SECONDS,
) -> PromotionResult:
    """Move ``stage`` back to the digest it held ``steps`` promotions ago (or to ``to``).

    Recorded as a promotion with reason ``rollback`` (``rollback: <reason>`` with a reason).
    With ``policy`` the target must have been reached by a record signed under it
    (VerificationError otherwise); without one, the unsigned history is trusted as is.
    """
    repository = _repository(repo)
    report = history(client, repository, stage, policy=policy)
    target = _rollback_target(report, to, steps)
    if policy is not None:
        _require_signed_target(report, target, steps if to is None else None)
    return promote(
        client,
        repository.with_digest(target),
        stage,
        reason=f"rollback: {reason}" if reason else "rollback",
        actor=actor,
        verify_model=verify_model,
        sign_record=sign_record,
        settle=settle,
    )


# ------------------------------------------------------------------------------ delete


@dataclass(frozen=True)
class DeletePlan:
    """What deleting ``reference`` would remove, and what it would break."""

    reference: str
    digest: str
    tag: str | None  # set when only a tag is to go
    tags: list[str]  # every (non-internal) tag on the digest
    stages: list[str]  # stages whose tag points at the digest (or is the tag)
    artifact_type: str | None
    deleted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "tag": self.tag,
            "tags": list(self.tags),
            "stages": list(self.stages),
            "artifactType": self.artifact_type,
            "deleted": self.deleted,
        }


def _artifact_type(fetched: FetchedManifest) -> str | None:
    if fetched.media_type in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        return None
    return Manifest.parse(fetched.raw, "manifest").effective_artifact_type


def plan_delete(client: RegistryClient, ref: str | Reference) -> DeletePlan:
    """What :func:`delete` would do for ``ref`` (nothing is changed)."""
    reference = Reference.coerce(ref)
    repo = _repository(reference)
    fetched = client.get_manifest(reference)
    tags = client.list_tags(repo)
    names = {t[len(HISTORY_TAG_PREFIX) :] for t in tags if t.startswith(HISTORY_TAG_PREFIX)}
    digests = _tag_digests(client, repo, [t for t in tags if not is_internal_tag(t)])
    on_digest = sorted(t for t, d in digests.items() if d == fetched.digest)
    tag_only = reference.tag if not reference.digest else None
    staged = [tag_only] if tag_only in names else ([] if tag_only else [t for t in on_digest if t in names])
    return DeletePlan(str(reference), fetched.digest, tag_only, on_digest, staged, _artifact_type(fetched))


def _refuse_unforced(plan: DeletePlan) -> None:
    if plan.stages:
        what = f"tag {plan.tag} is stage" if plan.tag else f"{plan.digest} is what stage(s) point at:"
        raise UsageError(
            f"refusing to delete {plan.reference}: {what} {', '.join(plan.stages)}; "
            "pass --force to delete it anyway (the promotion history stays)"
        )
    if (plan.tag and is_internal_tag(plan.tag)) or plan.artifact_type == PROMOTION_ARTIFACT_TYPE:
        raise UsageError(
            f"refusing to delete {plan.reference}: it is ocimodel's own (history head, promotion record or "
            "referrers index), deleting it breaks a history; pass --force to delete it anyway"
        )


def _delete_tag(client: RegistryClient, ref: Reference, plan: DeletePlan) -> None:
    """Delete just a tag, where the registry can; otherwise say what deleting the digest would do."""
    cannot = (
        f"registry {ref.registry} cannot delete the tag {plan.tag} alone (it deletes manifests by digest, "
        f"which removes every tag on {plan.digest}: {', '.join(plan.tags)}); to do that: "
        f"ocimodel delete {ref.name}@{plan.digest}"
    )
    try:
        client.delete_tag(ref)
    except RegistryError as exc:
        if exc.status in (400, 405) or exc.code in ("UNSUPPORTED", "DIGEST_INVALID"):
            raise UsageError(cannot) from None
        raise


def delete(client: RegistryClient, ref: str | Reference, *, force: bool = False) -> DeletePlan:
    """Delete a tag (``repo:tag``) or a manifest (``repo@digest``, all its tags go with it).

    Refuses, unless ``force``, a digest a stage points at (naming the stage), a stage tag,
    and ocimodel's own tags and records. Returns the plan with ``deleted=True``.
    """
    reference = Reference.coerce(ref)
    plan = plan_delete(client, reference)
    if not force:
        _refuse_unforced(plan)
    if plan.tag:
        _delete_tag(client, reference, plan)
    else:
        client.delete_manifest(reference.with_digest(plan.digest))
    return replace(plan, deleted=True)
