"""What a registry holds: for each repository with ocimodel models, its stages, its latest
version and whether they are signed (the ``list`` use-case).

Written against :class:`~ocimodel.storage.Target` like every use-case: the api layer turns a
registry's catalog into targets. Every tag that is not ocimodel's own (history heads,
referrers fallback tags) is fetched as a manifest (verified against its digest); a repository
holds models when one of them has ocimodel's ``artifactType``.

**Latest version** is the model, among the tags that are not stages, whose manifest says it
was created last (``org.opencontainers.image.created``, which ``push`` copies from the
config's ``created``); a tag without a readable time counts as oldest, and ties go to the
higher tag in version order (``1.10`` after ``1.9``). Only stage tags: the same among them.
The time is what the pusher wrote, not a registry fact: ``SOURCE_DATE_EPOCH`` pushes share one.

**Signature status** of the latest version and of each stage's digest: without a policy,
``signed`` (a signature referrer is attached: *unverified*, anyone can attach one) or
``unsigned``; with a policy, ``verified`` (one signature satisfies it) or ``not-verified``
(with why; no signature at all is not verified either).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

from .descriptor import ANNOTATION_CREATED, ANNOTATION_VERSION, ARTIFACT_TYPE, Manifest
from .errors import NotFoundError, OcimodelError, VerificationError
from .lifecycle.records import HISTORY_TAG_PREFIX, is_internal_tag
from .signing.bundles import find_bundles
from .signing.policy import VerificationPolicy
from .storage import Target, TargetRef

#: Manifests fetched per repository at most (one request each); past it, the note says so.
MAX_TAGS = 500
#: Repositories summarised at once: each is a few small requests, and the registry is shared.
MAX_CONCURRENCY = 4

#: A tag a registry lists that no reference could name is skipped (never fetched, never shown).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

UNSIGNED, SIGNED, VERIFIED, NOT_VERIFIED = "unsigned", "signed", "verified", "not-verified"


@dataclass(frozen=True)
class Signature:
    """Whether a digest is signed: ``status`` is unsigned, signed (unverified: no policy),
    verified or not-verified (under the policy given); ``detail`` is the signer or the reason."""

    status: str
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class ModelVersion:
    """A model a tag points at: the tag, its digest, and what its manifest says."""

    tag: str
    digest: str
    version: str | None
    created: str | None
    signature: Signature | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "digest": self.digest, "version": self.version, "created": self.created,
                "signature": self.signature.to_dict() if self.signature else None}


@dataclass(frozen=True)
class ModelRepository:
    """One repository holding ocimodel models (or one that could not be read: ``error``)."""

    repository: str
    latest: ModelVersion | None = None
    stages: list[ModelVersion] = field(default_factory=list)
    models: int = 0  # distinct model digests among the tags examined
    note: str | None = None  # e.g. only the first MAX_TAGS tags were examined
    error: str | None = None

    @property
    def verified(self) -> bool:
        """Every digest shown is signed under the policy (only meaningful with one)."""
        shown = [v for v in (self.latest, *self.stages) if v is not None]
        return self.error is None and all(v.signature is not None and v.signature.status == VERIFIED for v in shown)

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "latest": self.latest.to_dict() if self.latest else None,
                "stages": {v.tag: v.to_dict() for v in self.stages}, "models": self.models, "note": self.note,
                "error": self.error}


def _version_key(tag: str) -> tuple[Any, ...]:
    """``1.10`` after ``1.9``: digit runs compare as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", tag))


def _created_at(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _newest(versions: Sequence[ModelVersion]) -> ModelVersion | None:
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return max(versions, key=lambda v: (_created_at(v.created) or oldest, _version_key(v.tag)), default=None)


def signature_of(target: Target, digest: str, policy: VerificationPolicy | None) -> Signature:
    """The signature status of ``digest`` in ``target`` (see the module doc)."""
    if policy is None:
        return Signature(SIGNED if find_bundles(target, digest) else UNSIGNED)
    from .provenance import require_signature  # signing's verification imports are heavy

    try:
        passed = require_signature(TargetRef(target, digest=digest), policy)
    except VerificationError as exc:
        return Signature(NOT_VERIFIED, str(exc))
    return Signature(VERIFIED, passed[0].signer)


def _model_at(target: Target, tag: str) -> ModelVersion | None:
    """The model ``tag`` points at, or None when it is not an ocimodel model."""
    fetched = target.fetch_manifest(tag)
    try:
        manifest = Manifest.parse(fetched.raw, f"manifest {target.name}:{tag}")
    except OcimodelError:
        return None  # an index, a schema-1 manifest...: not a model
    if manifest.effective_artifact_type != ARTIFACT_TYPE:
        return None
    notes = manifest.annotations
    return ModelVersion(tag, fetched.digest, notes.get(ANNOTATION_VERSION), notes.get(ANNOTATION_CREATED))


def summarize(target: Target, *, policy: VerificationPolicy | None = None) -> ModelRepository | None:
    """The summary of one repository; None when it holds no ocimodel model.

    A failure to read it (denied, gone, hostile) becomes ``error``: one unreadable repository
    does not hide the others.
    """
    try:
        tags = target.tags()
        stage_names = {t[len(HISTORY_TAG_PREFIX):] for t in tags if t.startswith(HISTORY_TAG_PREFIX)}
        candidates = sorted((t for t in tags if not is_internal_tag(t) and _TAG.fullmatch(t)), key=_version_key)
        note = None
        if len(candidates) > MAX_TAGS:
            note = f"only the {MAX_TAGS} highest of {len(candidates)} tags were examined"
            candidates = candidates[-MAX_TAGS:]
        models = [m for m in (_model_at(target, t) for t in candidates) if m is not None]
        if not models:
            return None
        signatures: dict[str, Signature] = {}

        def signed(version: ModelVersion) -> ModelVersion:
            if version.digest not in signatures:
                signatures[version.digest] = signature_of(target, version.digest, policy)
            return ModelVersion(version.tag, version.digest, version.version, version.created, signatures[version.digest])

        releases = [m for m in models if m.tag not in stage_names]
        latest = _newest(releases or models)
        stages = [signed(m) for m in models if m.tag in stage_names]
        return ModelRepository(target.name, latest=signed(latest) if latest else None, stages=stages,
                               models=len({m.digest for m in models}), note=note)
    except NotFoundError:
        return None  # listed by the catalog, but gone (or never pushed to): no model there
    except OcimodelError as exc:
        return ModelRepository(target.name, error=str(exc))


def inventory(
    targets: Sequence[Target],
    *,
    policy: VerificationPolicy | None = None,
    concurrency: int = MAX_CONCURRENCY,
) -> list[ModelRepository]:
    """:func:`summarize` each of ``targets`` (one per repository),
    ``concurrency`` at a time (at most :data:`MAX_CONCURRENCY`); those holding no model are
    left out. In the order given."""
    if policy is not None:
        policy.validate()
    workers = max(1, min(concurrency, MAX_CONCURRENCY))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocimodel-list") as pool:
        found = list(pool.map(lambda target: summarize(target, policy=policy), targets))
    return [r for r in found if r is not None]
