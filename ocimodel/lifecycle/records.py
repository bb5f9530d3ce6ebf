"""Promotion records: the names stages use, the record itself, how it is stored and read back.

A record is a referrer manifest (``artifactType`` :data:`PROMOTION_ARTIFACT_TYPE`, the empty
config, one JSON layer, ``subject`` = the promoted manifest) naming the previous record of the
stage, so the records form a hash chain; the tag ``ocimodel.history.<stage>`` points at the
newest. Records are read like anything from outside: every byte checked against its digest,
the JSON bounded and validated (:class:`~ocimodel.errors.SchemaError` otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..descriptor import ANNOTATION_CREATED, Descriptor, Manifest, canonical_json
from ..errors import IntegrityError, NotFoundError, SchemaError, UsageError
from ..jsondoc import load_object
from ..reference import validate_digest, validate_tag
from ..referrers import FALLBACK_TAG_PREFIX, referrer_manifest
from ..storage import Target
from .actor import Actor

PROMOTION_ARTIFACT_TYPE = "application/vnd.ocimodel.promotion.v1+json"
#: Media type of the record's one layer (the record JSON).
RECORD_MEDIA_TYPE = PROMOTION_ARTIFACT_TYPE
RECORD_SCHEMA_VERSION = 1
#: Annotation on record manifests (and their referrers-index entries) naming the stage.
ANNOTATION_STAGE = "dev.ocimodel.stage"
#: Tags starting with these belong to ocimodel or to the referrers fallback scheme.
INTERNAL_TAG_PREFIX = "ocimodel."
HISTORY_TAG_PREFIX = "ocimodel.history."
#: A record is a few hundred bytes; refuse anything huge.
MAX_RECORD_SIZE = 64 * 1024
#: How many records back a chain is followed to place one record (a promotion that won, or
#: a signed record outside the chain).
SUCCESSOR_SEARCH = 50
_MAX_TAG = 128


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


def short(digest: str | None) -> str:
    """A digest cut to ``sha256:`` and 12 hex digits, for messages."""
    return digest[:19] if digest else "nothing"


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
    annotations = {ANNOTATION_CREATED: record.time, ANNOTATION_STAGE: record.stage}
    return referrer_manifest(subject, layer, PROMOTION_ARTIFACT_TYPE, annotations)


@dataclass(frozen=True)
class LoadedRecord:
    """A promotion record read from its store: its manifest digest and content (both verified)."""

    digest: str
    record: PromotionRecord


def load_record(target: Target, digest: str) -> LoadedRecord:
    """Fetch record ``digest`` and its layer, each checked against its digest.

    Raises NotFoundError (missing), an IntegrityError (altered bytes) or SchemaError (not a
    promotion record, or its subject disagrees with its content).
    """
    fetched = target.fetch_manifest(digest)
    manifest = Manifest.parse(fetched.raw, f"promotion record {digest}")
    layers = manifest.layers
    if manifest.artifact_type != PROMOTION_ARTIFACT_TYPE or len(layers) != 1 or layers[0].media_type != RECORD_MEDIA_TYPE:
        raise SchemaError(f"{digest} in {target.name} is not an ocimodel promotion record")
    record = PromotionRecord.from_bytes(target.fetch_blob_bytes(layers[0], max_size=MAX_RECORD_SIZE))
    if manifest.subject is None or manifest.subject.digest != record.digest:
        raise SchemaError(f"promotion record {digest}: its subject is not the digest it records")
    return LoadedRecord(digest=digest, record=record)


def try_load(target: Target, digest: str | None) -> LoadedRecord | None:
    """:func:`load_record`, or None if the record is missing or altered."""
    if digest is None:
        return None
    try:
        return load_record(target, digest)
    except (NotFoundError, IntegrityError):
        return None


def tag_digest(target: Target, tag: str) -> str | None:
    """The digest ``tag`` points at, or None if there is no such tag."""
    found = target.resolve(tag)
    return found.digest if found else None
