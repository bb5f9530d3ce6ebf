"""The push use-case: a file or directory becomes a model in a Target.

In order: collect the files (:mod:`.files`); scan them for code that runs on load and refuse
with ``deny_unsafe`` before anything is uploaded; resolve lineage parents to digests (a parent
that does not resolve fails fast, before any upload); upload the blobs (:mod:`.upload`); then
the config, recording metadata, lineage and the scan summary, and the manifest under the tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .._version import __version__
from ..config import CodeInfo, Dataset, FileInfo, Lineage, ModelConfig, Parent, RunInfo, Scalar, timestamp
from ..descriptor import (
    ANNOTATION_CREATED,
    ANNOTATION_DESCRIPTION,
    ANNOTATION_LICENSES,
    ANNOTATION_REVISION,
    ANNOTATION_SOURCE,
    ANNOTATION_VERSION,
)
from ..errors import OcimodelError, UsageError
from ..model import manifest_files
from ..reference import validate_digest
from ..scanner.local import scan_files
from ..scanner.refusals import refuse_unsafe
from ..scanner.scanner import ScanOptions
from ..scanner.summary import scan_summary
from ..storage import Locate, TargetRef
from .cache import BlobCache
from .files import collect_files
from .gitinfo import detect_code, strip_credentials
from .observer import NullObserver, TransferObserver
from .parallel import DEFAULT_CONCURRENCY
from .upload import push_files, push_manifest

if TYPE_CHECKING:
    from ..scanner.report import ScanReport


@dataclass(frozen=True)
class ModelInfo:
    """What the pusher says about a model: its metadata, and where it came from.

    ``name`` defaults to the last component of the repository, ``version`` to the tag (but
    ``latest``). ``parents`` are references, resolved to digests at push; ``datasets`` are
    ``URI`` or ``URI@sha256:<hex>``. ``code=None`` detects the git checkout around the model;
    ``False`` records none; a :class:`CodeInfo` is used as given (without credentials).
    """

    name: str | None = None
    version: str | None = None
    description: str | None = None
    framework: str | None = None
    format: str | None = None
    license: str | None = None
    authors: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Scalar] = field(default_factory=dict)
    params: Mapping[str, Scalar] = field(default_factory=dict)
    parents: Sequence[str] = ()
    datasets: Sequence[str | Dataset] = ()
    run_id: str | None = None
    run_uri: str | None = None
    code: CodeInfo | bool | None = None


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did."""

    reference: str
    digest: str
    size: int
    files: list[FileInfo]
    uploaded_blobs: int
    skipped_blobs: int
    config: ModelConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "size": self.size,
            "files": [f.__dict__ for f in self.files],
            "uploadedBlobs": self.uploaded_blobs,
            "skippedBlobs": self.skipped_blobs,
        }


def parse_dataset(text: str) -> Dataset:
    """``URI`` or ``URI@sha256:<hex>``."""
    uri, sep, digest = text.rpartition("@sha256:")
    if sep:
        return Dataset(uri=uri, digest=validate_digest("sha256:" + digest))
    if not text:
        raise UsageError("empty --dataset value")
    return Dataset(uri=text)


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None


def _code_info(code: CodeInfo | bool | None, root: Path) -> CodeInfo | None:
    """None or True: detect from git; False: record none; a CodeInfo: use it as given, but
    never with credentials in its remote (``--git-remote`` may be pasted with a token in it)."""
    if code is False:
        return None
    if isinstance(code, CodeInfo):
        return replace(code, remote=strip_credentials(code.remote)) if code.remote else code
    return detect_code(root.resolve())


def code_with(path: str | Path, remote: str | None = None, commit: str | None = None) -> CodeInfo:
    """The git lineage detected around ``path``, with ``remote`` and/or ``commit`` given instead
    (a given commit drops the detected dirty flag: it describes another tree)."""
    detected = detect_code(Path(path).resolve()) or CodeInfo()
    return CodeInfo(remote=remote or detected.remote, commit=commit or detected.commit,
                    dirty=detected.dirty if not commit else None)


def manifest_annotations(config: ModelConfig) -> dict[str, str]:
    """Standard OCI annotations filled from the model metadata."""
    code = config.lineage.code
    pairs = {
        ANNOTATION_CREATED: config.created,
        ANNOTATION_VERSION: config.version,
        ANNOTATION_DESCRIPTION: config.description,
        ANNOTATION_LICENSES: config.license,
        ANNOTATION_SOURCE: code.remote if code else None,
        ANNOTATION_REVISION: code.commit if code else None,
    }
    return {k: v for k, v in pairs.items() if v}


def _resolve_parent(locate: Locate, text: str) -> Parent:
    parent = locate(text)
    if parent.digest:
        return Parent(reference=str(parent), digest=parent.digest)
    try:
        found = parent.target.resolve(parent.identifier)
    except OcimodelError as exc:
        raise UsageError(f"cannot resolve parent {text!r}: {exc}; pin it by digest (REF@sha256:...)") from None
    if found is None:
        raise UsageError(f"parent {text!r} does not exist in the registry; pin it by digest or push it first")
    return Parent(reference=str(parent), digest=found.digest)


def push(
    ref: TargetRef,
    path: str | Path,
    *,
    info: ModelInfo | None = None,
    locate: Locate,
    observer: TransferObserver | None = None,
    scan: bool = True,
    deny_unsafe: bool = False,
    on_scan: Callable[[ScanReport], None] | None = None,
    allow_globals: Sequence[str] = (),
    scan_limits: Sequence[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    cache: BlobCache | None = None,
) -> PushResult:
    """Push the file or directory at ``path`` as a model tagged ``ref.tag``; see
    :meth:`ocimodel.api.Client.push`. ``locate`` finds lineage parents."""
    if ref.digest or not ref.tag:
        raise UsageError(f"push needs a tag, not a digest: {ref}")
    if deny_unsafe and not scan:
        raise UsageError("deny_unsafe needs the scan: do not combine --deny-unsafe with --no-scan")
    info = info or ModelInfo()
    options = ScanOptions.make(allow_globals, scan_limits)
    root = Path(path)
    sources = collect_files(root)
    report = scan_files(((s.title, s.path) for s in sources), options=options) if scan else None
    if report is not None:
        if on_scan is not None:
            on_scan(report)
        if deny_unsafe:
            refuse_unsafe(report)
    lineage = Lineage(  # before any upload: a parent that does not resolve fails fast
        parents=tuple(_resolve_parent(locate, p) for p in info.parents),
        datasets=tuple(d if isinstance(d, Dataset) else parse_dataset(d) for d in info.datasets),
        code=_code_info(info.code, root),
        run=RunInfo(id=info.run_id, uri=info.run_uri) if (info.run_id or info.run_uri) else None,
    )
    target = ref.target
    pushed = push_files(target, sources, observer or NullObserver(), concurrency, cache=cache)
    config = ModelConfig(
        name=info.name or _default_name(target.name),
        version=info.version if info.version is not None else (ref.tag if ref.tag != "latest" else None),
        description=info.description,
        framework=info.framework,
        format=info.format,
        license=info.license,
        authors=tuple(info.authors),
        labels=dict(info.labels),
        metrics=dict(info.metrics),
        params=dict(info.params),
        created=timestamp(epoch := _source_date_epoch()),
        files=tuple(pushed.files),
        lineage=lineage,
        tool={"name": "ocimodel", "version": __version__},
        scan=scan_summary(report) if report is not None else None,
    )
    # Stamped with the current time, the config is new: no HEAD for it (a reproducible one may exist).
    manifest = push_manifest(target, ref.tag, config, pushed.layers, manifest_annotations(config), new_config=epoch is None)
    return PushResult(
        reference=str(ref),
        digest=manifest.digest,
        size=len(manifest.raw),
        files=manifest_files(manifest, config),
        uploaded_blobs=pushed.uploaded,
        skipped_blobs=pushed.skipped,
        config=config,
    )


def _default_name(store: str) -> str:
    """A model's name when none is given: the last component of the repository, or of a
    layout's path (``oci:models/churn`` and ``oci-archive:churn.tar`` give ``churn``)."""
    last = store.rsplit("/", 1)[-1]
    if store.startswith(("oci:", "oci-archive:")):
        last = last.split(":", 1)[-1] if "/" not in store else last
        last = last[: -len(".tar")] if last.endswith(".tar") and len(last) > 4 else last
    return last
