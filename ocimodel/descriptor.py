"""OCI descriptors, image manifests and indexes, and the media types ocimodel uses.

Pure: no I/O. Manifests parsed from the registry keep their exact bytes (``raw``) so that
their digest can be checked and they can be re-PUT unchanged (a stage move must not alter
a single byte). Manifests we build are serialised deterministically (sorted keys, no
whitespace) so the same inputs always give the same digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import jsondoc
from .errors import DigestMismatchError, SchemaError
from .reference import validate_digest

# OCI media types.
MANIFEST_V1 = "application/vnd.oci.image.manifest.v1+json"
INDEX_V1 = "application/vnd.oci.image.index.v1+json"
EMPTY_V1 = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST_V2 = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (MANIFEST_V1, INDEX_V1, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST_V2)

# ocimodel's own, versioned media types (docs/format.md).
ARTIFACT_TYPE = "application/vnd.ocimodel.model.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.ocimodel.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.ocimodel.file.v1"

# Standard annotation keys.
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ANNOTATION_LICENSES = "org.opencontainers.image.licenses"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_AUTHORS = "org.opencontainers.image.authors"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

# The OCI "empty" blob: the two bytes ``{}``.
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# Registries refuse manifests above 4 MiB; so do we, before parsing them.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact separators, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check_digest(data: bytes, expected: str, what: str) -> None:
    """Raise :class:`DigestMismatchError` unless ``sha256(data) == expected``."""
    actual = sha256_digest(data)
    if actual != expected:
        raise DigestMismatchError(f"{what}: digest mismatch (expected {expected}, got {actual}); refusing it")


def _require(obj: Mapping[str, Any], key: str, typ: type, what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, typ) or isinstance(value, bool) and typ is int:
        raise SchemaError(f"{what}: field {key!r} missing or not a {typ.__name__}")
    return value


def _annotations(obj: Mapping[str, Any], what: str) -> dict[str, str]:
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise SchemaError(f"{what}: annotations must map strings to strings")
    return dict(ann)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob or manifest is, how big, and its digest."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None

    @classmethod
    def from_bytes(cls, media_type: str, data: bytes, **kwargs: Any) -> "Descriptor":
        """The descriptor of ``data``."""
        return cls(media_type=media_type, digest=sha256_digest(data), size=len(data), **kwargs)

    @classmethod
    def from_dict(cls, obj: Any, what: str = "descriptor") -> "Descriptor":
        """Parse a descriptor object, raising :class:`SchemaError` when malformed."""
        if not isinstance(obj, dict):
            raise SchemaError(f"{what}: not a JSON object")
        media_type = _require(obj, "mediaType", str, what)
        digest = _require(obj, "digest", str, what)
        try:
            validate_digest(digest)
        except Exception as exc:
            raise SchemaError(f"{what}: {exc}") from None
        size = _require(obj, "size", int, what)
        if size < 0:
            raise SchemaError(f"{what}: negative size {size}")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise SchemaError(f"{what}: artifactType must be a string")
        urls = obj.get("urls") or []
        platform = obj.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_annotations(obj, what),
            artifact_type=artifact_type,
            urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
            platform=platform if isinstance(platform, dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (optional fields omitted when empty)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @property
    def title(self) -> str | None:
        """The ``org.opencontainers.image.title`` annotation (a file's relative path)."""
        return self.annotations.get(ANNOTATION_TITLE)


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    return jsondoc.load_object(raw, what, max_bytes=MAX_MANIFEST_SIZE)


@dataclass(frozen=True)
class Manifest:
    """An OCI image manifest. ``raw`` holds the exact bytes it was parsed from or built as."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    media_type: str = MANIFEST_V1
    raw: bytes = b""

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: list[Descriptor] | tuple[Descriptor, ...],
        *,
        artifact_type: str | None = None,
        subject: Descriptor | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> "Manifest":
        """Build a manifest and serialise it deterministically into ``raw``."""
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V1,
            "config": config.to_dict(),
            "layers": [d.to_dict() for d in layers],
        }
        if artifact_type:
            obj["artifactType"] = artifact_type
        if subject is not None:
            obj["subject"] = subject.to_dict()
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(
            config=config,
            layers=tuple(layers),
            artifact_type=artifact_type,
            subject=subject,
            annotations=dict(annotations or {}),
            raw=canonical_json(obj),
        )

    @classmethod
    def parse(cls, raw: bytes, what: str = "manifest") -> "Manifest":
        """Parse manifest bytes, raising :class:`SchemaError` for anything malformed."""
        obj = _load_json(raw, what)
        if obj.get("schemaVersion") != 2:
            raise SchemaError(f"{what}: schemaVersion must be 2")
        media_type = obj.get("mediaType", MANIFEST_V1)
        if media_type not in (MANIFEST_V1, DOCKER_MANIFEST_V2):
            raise SchemaError(f"{what}: media type {media_type!r} is not an image manifest")
        layers_obj = obj.get("layers")
        if not isinstance(layers_obj, list):
            raise SchemaError(f"{what}: 'layers' missing or not a list")
        subject_obj = obj.get("subject")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise SchemaError(f"{what}: artifactType must be a string")
        return cls(
            config=Descriptor.from_dict(obj.get("config"), f"{what} config"),
            layers=tuple(Descriptor.from_dict(d, f"{what} layer {i}") for i, d in enumerate(layers_obj)),
            artifact_type=artifact_type,
            subject=Descriptor.from_dict(subject_obj, f"{what} subject") if subject_obj is not None else None,
            annotations=_annotations(obj, what),
            media_type=media_type,
            raw=raw,
        )

    @property
    def digest(self) -> str:
        """sha256 of the exact bytes."""
        return sha256_digest(self.raw)

    @property
    def effective_artifact_type(self) -> str:
        """``artifactType`` if set, else the config media type (OCI 1.1 rule)."""
        return self.artifact_type or self.config.media_type

    def descriptor(self, **kwargs: Any) -> Descriptor:
        """The descriptor pointing at this manifest."""
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.raw), **kwargs)


@dataclass(frozen=True)
class Index:
    """An OCI image index (used for the referrers fallback tag)."""

    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    media_type: str = INDEX_V1
    raw: bytes = b""

    @classmethod
    def build(
        cls,
        manifests: list[Descriptor] | tuple[Descriptor, ...],
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> "Index":
        """Build an index and serialise it deterministically."""
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": INDEX_V1,
            "manifests": [d.to_dict() for d in manifests],
        }
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(manifests=tuple(manifests), annotations=dict(annotations or {}), raw=canonical_json(obj))

    @classmethod
    def parse(cls, raw: bytes, what: str = "index") -> "Index":
        """Parse index bytes, raising :class:`SchemaError` for anything malformed."""
        obj = _load_json(raw, what)
        if obj.get("schemaVersion") != 2:
            raise SchemaError(f"{what}: schemaVersion must be 2")
        media_type = obj.get("mediaType", INDEX_V1)
        if media_type not in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
            raise SchemaError(f"{what}: media type {media_type!r} is not an index")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise SchemaError(f"{what}: 'manifests' missing or not a list")
        return cls(
            manifests=tuple(Descriptor.from_dict(d, f"{what} entry {i}") for i, d in enumerate(manifests)),
            annotations=_annotations(obj, what),
            artifact_type=obj.get("artifactType") if isinstance(obj.get("artifactType"), str) else None,
            media_type=media_type,
            raw=raw,
        )

    @property
    def digest(self) -> str:
        """sha256 of the exact bytes."""
        return sha256_digest(self.raw)


def media_type_of(raw: bytes) -> str | None:
    """The ``mediaType`` field of manifest bytes, or None if absent/unparseable."""
    try:
        obj = jsondoc.load_object(raw, "manifest", max_bytes=MAX_MANIFEST_SIZE)
    except SchemaError:
        return None
    mt = obj.get("mediaType")
    return mt if isinstance(mt, str) else None


#: The OCI empty descriptor: the config of artifacts that need none (signatures, promotion records).
EMPTY_DESCRIPTOR = Descriptor(media_type=EMPTY_V1, digest=EMPTY_DIGEST, size=len(EMPTY_JSON))
