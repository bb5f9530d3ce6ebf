"""The model config blob: metadata, the file list and lineage (docs/format.md).

Pure: no I/O. Serialised deterministically so that the same metadata gives the same
config digest (and, with ``SOURCE_DATE_EPOCH``, the same manifest digest).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .descriptor import canonical_json
from .errors import SchemaError, UsageError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class FileEntry:
    """One file of the model: relative POSIX path, digest, size and permission bits."""

    path: str
    digest: str
    size: int
    mode: int = 0o644


@dataclass(frozen=True)
class Parent:
    """A model this one was derived from: the reference given and the digest it resolved to."""

    reference: str
    digest: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset the model was trained or evaluated on."""

    uri: str
    digest: str | None = None


@dataclass(frozen=True)
class CodeInfo:
    """The source code that produced the model."""

    remote: str | None = None
    commit: str | None = None
    dirty: bool | None = None


@dataclass(frozen=True)
class RunInfo:
    """The training run (e.g. an MLflow run)."""

    id: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: parents, datasets, code and run."""

    parents: tuple[Parent, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    code: CodeInfo | None = None
    run: RunInfo | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Everything ocimodel records about a model version besides the bytes themselves."""

    name: str
    version: str | None = None
    description: str | None = None
    framework: str | None = None
    format: str | None = None
    license: str | None = None
    authors: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Scalar] = field(default_factory=dict)
    params: dict[str, Scalar] = field(default_factory=dict)
    created: str | None = None
    files: tuple[FileEntry, ...] = ()
    lineage: Lineage = field(default_factory=Lineage)
    tool: dict[str, str] = field(default_factory=dict)
    scan: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form, with ``schemaVersion`` first-class and empty values kept."""
        obj = asdict(self)
        del obj["schema_version"]
        obj["schemaVersion"] = self.schema_version
        obj["authors"] = list(self.authors)
        obj["files"] = [asdict(f) for f in self.files]
        if self.scan is None:
            del obj["scan"]
        return obj

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes (the config blob)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ModelConfig":
        """Parse a config blob; refuses unknown schema versions and malformed fields."""
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SchemaError(f"model config is not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise SchemaError("model config is not a JSON object")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "ModelConfig":
        """Parse the JSON object form."""
        version = obj.get("schemaVersion")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise SchemaError(
                f"model config schemaVersion {version!r} is not supported by this ocimodel "
                f"(supports {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}); upgrade ocimodel"
            )
        try:
            lineage_obj = obj.get("lineage") or {}
            code = lineage_obj.get("code")
            run = lineage_obj.get("run")
            return cls(
                name=_str(obj, "name", required=True) or "",
                version=_str(obj, "version"),
                description=_str(obj, "description"),
                framework=_str(obj, "framework"),
                format=_str(obj, "format"),
                license=_str(obj, "license"),
                authors=tuple(_str_list(obj.get("authors"), "authors")),
                labels={str(k): str(v) for k, v in _dict(obj.get("labels"), "labels").items()},
                metrics=dict(_dict(obj.get("metrics"), "metrics")),
                params=dict(_dict(obj.get("params"), "params")),
                created=_str(obj, "created"),
                files=tuple(_file_entry(f) for f in _list(obj.get("files"), "files")),
                lineage=Lineage(
                    parents=tuple(
                        Parent(reference=str(p["reference"]), digest=p.get("digest"))
                        for p in _list(lineage_obj.get("parents"), "lineage.parents")
                    ),
                    datasets=tuple(
                        Dataset(uri=str(d["uri"]), digest=d.get("digest"))
                        for d in _list(lineage_obj.get("datasets"), "lineage.datasets")
                    ),
                    code=CodeInfo(**_dict(code, "lineage.code")) if code else None,
                    run=RunInfo(**_dict(run, "lineage.run")) if run else None,
                ),
                tool={str(k): str(v) for k, v in _dict(obj.get("tool"), "tool").items()},
                scan=obj.get("scan") if isinstance(obj.get("scan"), dict) else None,
                schema_version=version,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(f"model config is malformed ({type(exc).__name__}: {exc})") from None


def _str(obj: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"model config field {key!r} must be a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SchemaError(f"model config field {what!r} must be a list")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    items = _list(value, what)
    if not all(isinstance(i, str) for i in items):
        raise SchemaError(f"model config field {what!r} must be a list of strings")
    return items


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError(f"model config field {what!r} must be an object")
    return value


def _file_entry(obj: Any) -> FileEntry:
    entry = _dict(obj, "files[]")
    path, digest, size, mode = entry.get("path"), entry.get("digest"), entry.get("size"), entry.get("mode", 0o644)
    if not isinstance(path, str) or not isinstance(digest, str):
        raise SchemaError("model config files[] entries need string 'path' and 'digest'")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SchemaError(f"model config files[] entry {path!r} has an invalid size")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise SchemaError(f"model config files[] entry {path!r} has an invalid mode")
    return FileEntry(path=path, digest=digest, size=size, mode=mode)


def parse_key_values(pairs: list[str] | tuple[str, ...], what: str, *, typed: bool) -> dict[str, Scalar]:
    """Parse ``k=v`` pairs from the command line.

    With ``typed``, values that read as JSON numbers or booleans become numbers or booleans
    (``--metric accuracy=0.93`` stores 0.93, not "0.93"); everything else stays a string.
    """
    out: dict[str, Scalar] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"invalid {what} {pair!r}: expected KEY=VALUE")
        out[key] = _scalar(value) if typed else value
    return out


def _scalar(text: str) -> Scalar:
    if text in ("true", "false"):
        return text == "true"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def timestamp(epoch: int | None) -> str:
    """RFC 3339 UTC timestamp for ``epoch`` (e.g. from ``SOURCE_DATE_EPOCH``) or now."""
    moment = datetime.fromtimestamp(epoch, timezone.utc) if epoch is not None else datetime.now(timezone.utc)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
