"""Deleting a tag or a manifest, without breaking what stages and histories point at."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..descriptor import DOCKER_MANIFEST_LIST_V2, INDEX_V1, Manifest
from ..errors import RegistryError, UsageError
from ..storage import FetchedManifest, Target, TargetRef
from .records import HISTORY_TAG_PREFIX, PROMOTION_ARTIFACT_TYPE, is_internal_tag
from .stages import tag_digests


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


def plan_delete(ref: TargetRef) -> DeletePlan:
    """What :func:`delete` would do for ``ref`` (nothing is changed)."""
    target = ref.target
    fetched = target.fetch_manifest(ref.identifier)
    tags = target.tags()
    names = {t[len(HISTORY_TAG_PREFIX) :] for t in tags if t.startswith(HISTORY_TAG_PREFIX)}
    digests = tag_digests(target, [t for t in tags if not is_internal_tag(t)])
    on_digest = sorted(t for t, d in digests.items() if d == fetched.digest)
    tag_only = ref.tag if not ref.digest else None
    staged = [tag_only] if tag_only in names else ([] if tag_only else [t for t in on_digest if t in names])
    return DeletePlan(str(ref), fetched.digest, tag_only, on_digest, staged, _artifact_type(fetched))


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


def _delete_tag(target: Target, tag: str, plan: DeletePlan) -> None:
    """Delete just a tag, where the store can; otherwise say what deleting the digest would do."""
    try:
        target.delete_tag(tag)
    except RegistryError as exc:
        if exc.status in (400, 405) or exc.code in ("UNSUPPORTED", "DIGEST_INVALID"):
            raise UsageError(
                f"{exc.origin or target.name} cannot delete the tag {plan.tag} alone (it deletes manifests by "
                f"digest, which removes every tag on {plan.digest}: {', '.join(plan.tags)}); to do that: "
                f"ocimodel delete {target.name}@{plan.digest}"
            ) from None
        raise


def delete(ref: TargetRef, *, force: bool = False) -> DeletePlan:
    """Delete a tag (``repo:tag``) or a manifest (``repo@digest``, all its tags go with it).

    Refuses, unless ``force``, a digest a stage points at (naming the stage), a stage tag,
    and ocimodel's own tags and records. Returns the plan with ``deleted=True``.
    """
    plan = plan_delete(ref)
    if not force:
        _refuse_unforced(plan)
    if plan.tag:
        _delete_tag(ref.target, plan.tag, plan)
    else:
        ref.target.delete_manifest(plan.digest)
    return replace(plan, deleted=True)
