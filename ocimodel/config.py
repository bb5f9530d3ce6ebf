"""The model config blob: metadata, the file list and lineage (docs/format.md).

Pure: no I/O. Serialised deterministically so that the same metadata gives the same
config digest (and, with ``SOURCE_DATE_EPOCH``, the same manifest digest).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from . import jsondoc
from .descriptor import MAX_MANIFEST_SIZE, canonical_json
from .errors import SchemaError, UsageError
from .reference import validate_digest

SCHEMA_VERSION = 1
MAX_CONFIG_SIZE = MAX_MANIFEST_SIZE  # the client fetches no bigger config blob either
SUPPORTED_SCHEMA_VERSIONS = (1,)

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class FileInfo:
    """One file of a model: its title (relative POSIX path), digest, size and permission bits.

    The config's file list, and what push, pull and inspect report. ``mode`` is None only where
    an artifact records no modes (one not pushed by ocimodel, seen by inspect).
    """

    path: str
    digest: str
    size: int
    mode: int | None = 0o644


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
    files: tuple[FileInfo, ...] = ()
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
        return cls.from_dict(jsondoc.load_object(raw, "model config", max_bytes=MAX_CONFIG_SIZE))

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
            lineage_obj = _dict(obj.get("lineage"), "lineage")
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
                labels=_str_dict(obj.get("labels"), "labels"),
                metrics=_scalar_dict(obj.get("metrics"), "metrics"),
                params=_scalar_dict(obj.get("params"), "params"),
                created=_str(obj, "created"),
                files=tuple(_file_entry(f) for f in _list(obj.get("files"), "files")),
                lineage=Lineage(
                    parents=tuple(
                        Parent(reference=_str(p, "reference", required=True) or "", digest=_digest(p, "digest"))
                        for p in map(_object("lineage.parents[]"), _list(lineage_obj.get("parents"), "lineage.parents"))
                    ),
                    datasets=tuple(
                        Dataset(uri=_str(d, "uri", required=True) or "", digest=_digest(d, "digest"))
                        for d in map(_object("lineage.datasets[]"), _list(lineage_obj.get("datasets"), "lineage.datasets"))
                    ),
                    code=_code(code) if code else None,
                    run=RunInfo(**_fields(run, "lineage.run", {"id": str, "uri": str})) if run else None,
                ),
                tool=_str_dict(obj.get("tool"), "tool"),
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


def _object(what: str) -> Callable[[Any], dict[str, Any]]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(f"model config field {what!r} entries must be objects")
        return value

    return check


def _str_dict(value: Any, what: str) -> dict[str, str]:
    items = _dict(value, what)
    if not all(isinstance(v, str) for v in items.values()):
        raise SchemaError(f"model config field {what!r} must map names to strings")
    return dict(items)


def _scalar_dict(value: Any, what: str) -> dict[str, Scalar]:
    items = _dict(value, what)
    if not all(v is None or isinstance(v, (str, int, float, bool)) for v in items.values()):
        raise SchemaError(f"model config field {what!r} values must be strings, numbers, booleans or null")
    return dict(items)


def _digest(obj: Mapping[str, Any], key: str) -> str | None:
    value = _str(obj, key)
    if value is not None:
        try:
            validate_digest(value)
        except UsageError as exc:
            raise SchemaError(f"model config field {key!r}: {exc}") from None
    return value


def _fields(value: Any, what: str, types: Mapping[str, type]) -> dict[str, Any]:
    """The object ``value`` with only the keys of ``types``, each None or of its type."""
    obj = _dict(value, what)
    unknown = sorted(set(obj) - set(types))
    if unknown:
        raise SchemaError(f"model config field {what!r} has unknown keys {', '.join(map(repr, unknown))[:200]}")
    for key, typ in types.items():
        if obj.get(key) is not None and not isinstance(obj[key], typ):
            raise SchemaError(f"model config field '{what}.{key}' must be a {typ.__name__}")
    return obj


def _code(value: Any) -> CodeInfo:
    return CodeInfo(**_fields(value, "lineage.code", {"remote": str, "commit": str, "dirty": bool}))


def _file_entry(obj: Any) -> FileInfo:
    entry = _dict(obj, "files[]")
    path, digest, size, mode = entry.get("path"), entry.get("digest"), entry.get("size"), entry.get("mode", 0o644)
    if not isinstance(path, str) or not isinstance(digest, str):
        raise SchemaError("model config files[] entries need string 'path' and 'digest'")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SchemaError(f"model config files[] entry {path!r} has an invalid size")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise SchemaError(f"model config files[] entry {path!r} has an invalid mode")
    return FileInfo(path=path, digest=digest, size=size, mode=mode)


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


# A JSON number and nothing else: anything else stays a string without being parsed (a
# value of 5,000 '[' would otherwise make json recurse until it raises RecursionError).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _scalar(text: str) -> Scalar:
    if text in ("true", "false"):
        return text == "true"
    if not _JSON_NUMBER.fullmatch(text):
        return text
    value = json.loads(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def timestamp(epoch: int | None) -> str:
    """RFC 3339 UTC timestamp for ``epoch`` (e.g. from ``SOURCE_DATE_EPOCH``) or now."""
    moment = datetime.fromtimestamp(epoch, timezone.utc) if epoch is not None else datetime.now(timezone.utc)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
