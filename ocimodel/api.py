"""The Python verbs, one per CLI command: push, pull, inspect, tags, login, logout, and
the provenance verbs re-exported from :mod:`ocimodel.provenance` (sign, verify, verify_blob,
keygen, verify_bundle).

Each verb composes the layers below (reference parsing, the registry client, transfers)
and returns a typed result; the CLI only parses options and prints these results.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import installed, safety
from ._version import __version__
from . import lineage as lineage_mod
from .cache import BlobCache, open_cache
from .config import CodeInfo, Dataset, FileInfo, Lineage, ModelConfig, Parent, RunInfo, Scalar, timestamp
from .descriptor import (
    ANNOTATION_CREATED,
    ANNOTATION_DESCRIPTION,
    ANNOTATION_LICENSES,
    ANNOTATION_REVISION,
    ANNOTATION_SOURCE,
    ANNOTATION_VERSION,
    Manifest,
)
from .destination import DestinationLock, Swap, check_destination
from .dirfd import DirHandle
from .errors import OcimodelError, UsageError
from .files import collect_files
from .licenses import check_license, model_license
from .reference import Reference, validate_digest
from .registry.client import RegistryClient
from .registry.connection import Connection
from .registry.credentials import CredentialStore
from .registry.timeouts import Timeouts
from .transfer import (
    DEFAULT_CONCURRENCY,
    NullObserver,
    PlannedFile,
    ResolvedModel,
    TransferObserver,
    download_into,
    plan_files,
    push_files,
    push_manifest,
    resolve,
)

if TYPE_CHECKING:
    from . import stages as stages_mod
    from .provenance import SignResult, VerifyResult
    from .scan import ScanReport
    from .signing.policy import VerificationPolicy

# Imported on first use, not with this module: signing (cryptography), stages and the
# scanner's reporting cost start-up time that push and pull without them need not pay.
_LAZY_EXPORTS = {
    "keygen": "provenance",  # re-exported verbs
    "sign": "provenance",
    "verify": "provenance",
    "verify_blob": "provenance",
    "verify_bundle": "provenance",
    "SignResult": "provenance",
    "VerifyResult": "provenance",
    "ScanReport": "scan",
    "VerificationPolicy": "signing.policy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __package__), name)


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None


def parse_dataset(text: str) -> Dataset:
    """``URI`` or ``URI@sha256:<hex>``."""
    uri, sep, digest = text.rpartition("@sha256:")
    if sep:
        return Dataset(uri=uri, digest=validate_digest("sha256:" + digest))
    if not text:
        raise UsageError("empty --dataset value")
    return Dataset(uri=text)


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


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` wrote."""

    reference: str
    digest: str
    destination: str
    files: list[FileInfo]
    path: str = ""  # where the files are: destination, or destination/versions/<hex>
    skipped: bool = False  # already installed and intact: nothing downloaded

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "destination": self.destination,
            "path": self.path,
            "skipped": self.skipped,
            "files": [f.__dict__ for f in self.files],
        }


@dataclass(frozen=True)
class InspectResult:
    """A model's manifest and config, as :func:`inspect` reports them."""

    reference: str
    digest: str
    media_type: str
    artifact_type: str
    size: int
    annotations: dict[str, str]
    files: list[FileInfo]
    config: ModelConfig | None
    signatures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "mediaType": self.media_type,
            "artifactType": self.artifact_type,
            "size": self.size,
            "annotations": self.annotations,
            "files": [f.__dict__ for f in self.files],
            "config": self.config.to_dict() if self.config else None,
            "signatures": self.signatures,
        }


#: ``events(step, fields)``: told each step of a pull (the CLI logs one line per step).
PullEvents = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class RecordSigning:
    """How to sign promotion records: with a private ``key``, else keyless."""

    key: str | Path | None = None
    identity_token: str | None = None
    trust_config: str | Path | None = None


def _manifest_files(manifest: Manifest, config: ModelConfig | None) -> list[FileInfo]:
    modes = {f.path: f.mode for f in config.files} if config else {}
    return [
        FileInfo(path=layer.title or "", digest=layer.digest, size=layer.size, mode=modes.get(layer.title or ""))
        for layer in manifest.layers
    ]


def _code_info(code: CodeInfo | bool | None, root: Path) -> CodeInfo | None:
    """None or True: detect from git; False: record none; a CodeInfo: use it as given, but
    never with credentials in its remote (``--git-remote`` may be pasted with a token in it)."""
    if code is False:
        return None
    from .gitinfo import detect_code, strip_credentials

    if isinstance(code, CodeInfo):
        return replace(code, remote=strip_credentials(code.remote)) if code.remote else code
    return detect_code(root.resolve())


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


class Client:
    """A reusable session with registries (connections, tokens and options are shared).

    >>> with Client(Connection(plain_http=True)) as c:            # doctest: +SKIP
    ...     c.push("model.onnx", "localhost:5000/models/churn:1.0", version="1.0")
    """

    def __init__(
        self,
        connection: Connection | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        registry: RegistryClient | None = None,
    ) -> None:
        """``connection`` says how to reach registries (see :class:`Connection`: TLS, timeouts,
        mirrors, and which registry given credentials are for); ``registry`` reuses an open
        :class:`RegistryClient` instead. ``cache_dir`` holds the blob and digest caches
        (default: ``OCIMODEL_CACHE_DIR``, else the user cache dir); ``use_cache=False`` neither
        reads nor fills them."""
        self.connection = connection or Connection()
        self.registry = registry or RegistryClient(self.connection)
        self.concurrency = max(1, concurrency)
        self._cache_dir = cache_dir
        self._use_cache = use_cache
        self._cache: BlobCache | None = None

    @property
    def cache(self) -> BlobCache | None:
        """The blob cache, opened on first use (only transfers need it)."""
        if self._cache is None and self._use_cache:
            self._cache = open_cache(self._cache_dir, enabled=True)
        return self._cache

    def close(self) -> None:
        """Close connections and the cache index."""
        self.registry.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- push
    def push(
        self,
        path: str | Path,
        ref: str | Reference,
        *,
        name: str | None = None,
        version: str | None = None,
        description: str | None = None,
        framework: str | None = None,
        format: str | None = None,
        license: str | None = None,
        authors: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, Scalar] | None = None,
        params: Mapping[str, Scalar] | None = None,
        parents: Sequence[str] = (),
        datasets: Sequence[str | Dataset] = (),
        run_id: str | None = None,
        run_uri: str | None = None,
        code: CodeInfo | bool | None = None,
        observer: TransferObserver | None = None,
        scan: bool = True,
        deny_unsafe: bool = False,
        on_scan: Callable[[ScanReport], None] | None = None,
        allow_globals: Sequence[str] = (),
        scan_limits: Sequence[str] = (),
    ) -> PushResult:
        """Push the file or directory at ``path`` as a model tagged ``ref``.

        ``code=None`` detects the git checkout around ``path``; ``False`` records none;
        a :class:`CodeInfo` overrides detection. Returns the manifest digest and counts.

        With ``scan`` (the default) the files are scanned first for pickles that can run code
        (:mod:`ocimodel.safety`; formats like safetensors are judged from their header), the
        report is handed to ``on_scan`` (the CLI prints warnings) and its summary recorded in
        the config's ``scan`` field. ``deny_unsafe`` refuses a model with a dangerous file, or
        one not fully inspected, before anything is uploaded
        (:class:`~ocimodel.safety.UnsafeModelError`, exit 5). ``allow_globals`` extends the
        scanner's allow-list (``module.name``), ``scan_limits`` its limits (``name=value``).
        """
        reference = Reference.coerce(ref)
        if reference.digest:
            raise UsageError(f"push needs a tag, not a digest: {reference}")
        if deny_unsafe and not scan:
            raise UsageError("deny_unsafe needs the scan: do not combine --deny-unsafe with --no-scan")
        options = safety.ScanOptions.make(allow_globals, scan_limits)
        observer = observer or NullObserver()
        root = Path(path)
        sources = collect_files(root)
        report = safety.scan_files(((s.title, s.path) for s in sources), options=options) if scan else None
        if report is not None:
            if on_scan is not None:
                on_scan(report)
            if deny_unsafe:
                safety.refuse_unsafe(report)
        lineage = Lineage(  # before any upload: a parent that does not resolve fails fast
            parents=tuple(self._resolve_parent(p) for p in parents),
            datasets=tuple(d if isinstance(d, Dataset) else parse_dataset(d) for d in datasets),
            code=_code_info(code, root),
            run=RunInfo(id=run_id, uri=run_uri) if (run_id or run_uri) else None,
        )
        pushed = push_files(self.registry, reference, sources, observer, self.concurrency, cache=self.cache)
        config = ModelConfig(
            name=name or reference.repository.rsplit("/", 1)[-1],
            version=version if version is not None else (reference.tag if reference.tag != "latest" else None),
            description=description,
            framework=framework,
            format=format,
            license=license,
            authors=tuple(authors),
            labels=dict(labels or {}),
            metrics=dict(metrics or {}),
            params=dict(params or {}),
            created=timestamp(_source_date_epoch()),
            files=tuple(pushed.files),
            lineage=lineage,
            tool={"name": "ocimodel", "version": __version__},
            scan=safety.scan_summary(report) if report is not None else None,
        )
        manifest = push_manifest(self.registry, reference, config, pushed.layers, manifest_annotations(config))
        return PushResult(
            reference=str(reference),
            digest=manifest.digest,
            size=len(manifest.raw),
            files=_manifest_files(manifest, config),
            uploaded_blobs=pushed.uploaded,
            skipped_blobs=pushed.skipped,
            config=config,
        )

    def _resolve_parent(self, text: str) -> Parent:
        parent = Reference.parse(text)
        if parent.digest:
            return Parent(reference=str(parent), digest=parent.digest)
        try:
            found = self.registry.head_manifest(parent)
        except OcimodelError as exc:
            raise UsageError(f"cannot resolve parent {text!r}: {exc}; pin it by digest (REF@sha256:...)") from None
        if found is None:
            raise UsageError(f"parent {text!r} does not exist in the registry; pin it by digest or push it first")
        return Parent(reference=str(parent), digest=found.digest)

    # -------------------------------------------------------------------------------- pull
    def pull(
        self,
        ref: str | Reference,
        dest: str | Path,
        *,
        include: Sequence[str] = (),
        allow_any_type: bool = False,
        observer: TransferObserver | None = None,
        policy: VerificationPolicy | None = None,
        layout: str = "flat",
        reverify: bool = False,
        events: PullEvents | None = None,
        deny_unsafe: bool = False,
        allow_licenses: Sequence[str] = (),
        allow_globals: Sequence[str] = (),
        scan_limits: Sequence[str] = (),
    ) -> PullResult:
        """Pull the model at ``ref`` into the directory ``dest``, every byte verified.

        The reference is resolved to a digest once; with a ``policy``, that digest's
        signatures are verified before anything is written, and that same digest is pulled.
        On any failure nothing is left in ``dest`` that was not there before (but for
        ``dest/.ocimodel*``: resumable partial downloads and the lock), and files the pull had
        already replaced are put back. Nothing outside ``dest`` is written, read or removed,
        whatever ``dest`` holds (symlinks, a hostile state file; see :mod:`ocimodel.dirfd`);
        a ``dest`` holding the other layout is refused (:class:`UsageError`).

        ``layout="versioned"`` writes to ``dest/versions/<hex>`` and switches the
        ``dest/current`` symlink atomically (see :mod:`ocimodel.installed`). When
        ``dest/.ocimodel-state.json`` says this digest is already installed and its files
        are intact (sizes; sha256 too with ``reverify``), nothing is downloaded.
        ``events(step, fields)`` is told each step (resolved, verified, up-to-date,
        downloaded, installed). ``allow_licenses`` refuses a model whose SPDX license is not
        allowed, and ``deny_unsafe`` one with a file that can run code when loaded or that
        could not be fully inspected, before anything is written (``allow_globals`` and
        ``scan_limits`` as for :meth:`push`; a verification policy file's ``allowGlobals``
        belongs in ``allow_globals`` too).
        """
        if layout not in installed.LAYOUTS:
            raise UsageError(f"unknown layout {layout!r}: use one of {', '.join(installed.LAYOUTS)}")
        if policy is not None:
            policy.validate()  # an unusable policy is a usage error before any request
        # A policy file may extend the scanner's allow-list (allowGlobals) for --deny-unsafe.
        extra = policy.allow_globals if policy is not None else ()
        options = safety.ScanOptions.make([*allow_globals, *extra], scan_limits)
        emit = events or (lambda step, fields: None)
        reference = Reference.coerce(ref)
        dest = Path(dest)
        model = resolve(self.registry, reference, allow_any_type=allow_any_type)
        emit("resolved", {"reference": str(reference), "digest": model.digest})
        planned = plan_files(model, include)
        check_license(model_license(model.config, model.manifest.annotations), allow_licenses)
        if deny_unsafe:
            safety.check_config_scan(model.config, options)
        verification: dict[str, Any] | None = None
        if policy is not None:
            from .provenance import require_signature, signature_dict

            signers = require_signature(self.registry, model.reference, policy)
            verification = {"verified": True, "signers": [signature_dict(s) for s in signers]}
            emit("verified", {"digest": model.digest, "signers": [s.signer for s in signers]})
        files = tuple(installed.InstalledFile(p.title, p.layer.digest, p.layer.size) for p in planned)
        root = installed.files_root(dest, layout, model.digest)
        result = PullResult(
            reference=str(reference),
            digest=model.digest,
            destination=str(dest),
            files=[FileInfo(path=p.title, digest=p.layer.digest, size=p.layer.size, mode=p.mode) for p in planned],
            path=str(root),
        )
        existed = dest.exists()
        if dest.is_dir():  # a layout clash is the clearer refusal; checked again under the lock
            with DirHandle.open(dest) as top:
                installed.check_layout(top, layout, installed.read_state(top)[0])
        check_destination(dest, [p.title for p in planned] if layout == "flat" else [])
        state = installed.InstallState(
            reference=str(reference), digest=model.digest, layout=layout, files=files, include=tuple(include),
            verification=verification, tool=f"ocimodel {__version__}",
        )
        # One pull per DEST at a time, from the state check to the state write: a second pod
        # container (or a concurrent CLI) waits, then finds the work done.
        try:
            with DestinationLock(dest) as lock:
                top = lock.dir
                previous, ignored = installed.read_state(top)
                if ignored:
                    emit("state-ignored", {"path": str(dest / installed.STATE_NAME), "reason": ignored})
                installed.check_layout(top, layout, previous)
                if previous and (previous.digest, previous.layout, previous.include) == (model.digest, layout, tuple(include)):
                    problem = self._installed_problem(top, layout, model.digest, files, reverify)
                    if problem is None:
                        if deny_unsafe:
                            safety.check_blobs_safe([(f.path, root.joinpath(*f.path.split("/"))) for f in files], options)
                        emit("up-to-date", {"digest": model.digest, "path": str(root), "reverified": reverify})
                        return replace(result, skipped=True)
                    emit("repairing", {"digest": model.digest, "reason": problem})
                self._install(model, top, dest, planned, state, existed, previous, observer,
                              functools.partial(safety.check_blobs_safe, options=options) if deny_unsafe else None)
                emit("downloaded", {"digest": model.digest, "files": len(planned), "bytes": sum(f.size for f in files)})
        except BaseException:
            if layout == "versioned":
                installed.tidy_failed_install(dest, created=not existed)
            raise
        emit("installed", {"digest": model.digest, "path": str(root)})
        return result

    @staticmethod
    def _installed_problem(
        top: DirHandle, layout: str, digest: str, files: Sequence[installed.InstalledFile], reverify: bool
    ) -> str | None:
        """Why the install of ``digest`` recorded in the state is not intact (None if it is)."""
        if layout == "flat":
            return installed.problem_with(top, files, reverify=reverify)
        hexdigest = digest.partition(":")[2]
        if installed.current_digest_hex(top) != hexdigest:
            return "current link points elsewhere"
        try:
            version = top.subdir(f"{installed.VERSIONS_DIR}/{hexdigest}")
        except (OSError, OcimodelError):
            return "its version directory is missing"
        with version:
            return installed.problem_with(version, files, reverify=reverify)

    def _install(
        self,
        model: ResolvedModel,
        top: DirHandle,
        dest: Path,
        planned: Sequence[PlannedFile],
        state: installed.InstallState,
        existed: bool,
        previous: installed.InstallState | None,
        observer: TransferObserver | None,
        before_commit: Callable[[list[tuple[str, Path]]], object] | None,
    ) -> None:
        """Download into DEST (flat) or its version directory, make it current, record the state.

        A flat pull replaces the previous version's files all or nothing: its files that the new
        version lacks are removed (if unchanged since installed) and the state written as part
        of the same commit, so a failure at any step puts the previous files back.
        """
        if state.layout == "flat":
            stale = [f for f in previous.files if f.path not in {p.title for p in planned}] if previous else []

            def finish(swap: Swap) -> None:
                for item in stale:
                    swap.remove_installed(item.path, item.size, item.digest)
                installed.write_state(top, replace(state, time=timestamp(None)))

            download_into(
                self.registry, model, dest, planned, observer or NullObserver(), self.concurrency, cache=self.cache,
                into=top, remove_on_failure=None if existed else functools.partial(shutil.rmtree, dest, ignore_errors=True),
                before_commit=before_commit, after_commit=finish,
            )
            return
        hexdigest = model.digest.partition(":")[2]
        with top.subdir(installed.VERSIONS_DIR, create=True) as versions:
            made = versions.lstat(hexdigest) is None
            with versions.subdir(hexdigest, create=True) as version:
                download_into(
                    self.registry, model, version.path, planned, observer or NullObserver(), self.concurrency,
                    cache=self.cache, into=version,
                    remove_on_failure=functools.partial(versions.rmtree, hexdigest) if made else None,
                    before_commit=before_commit,
                )
            # Keep the version being replaced: a reader may still have its files open.
            keep = {hexdigest, installed.current_digest_hex(top) or hexdigest}
            installed.switch_current(top, model.digest)
            installed.write_state(top, replace(state, time=timestamp(None)))
            installed.prune_versions(versions, keep)

    # ----------------------------------------------------------------------- inspect, tags
    def inspect(self, ref: str | Reference, *, allow_any_type: bool = True) -> InspectResult:
        """Describe the artifact at ``ref``: digest, type, metadata, lineage and files."""
        reference = Reference.coerce(ref)
        model = resolve(self.registry, reference, allow_any_type=allow_any_type)
        manifest = model.manifest
        from .provenance import list_signatures

        return InspectResult(
            reference=str(reference),
            digest=model.digest,
            media_type=manifest.media_type,
            artifact_type=manifest.effective_artifact_type,
            size=len(manifest.raw),
            annotations=dict(manifest.annotations),
            files=_manifest_files(manifest, model.config),
            config=model.config,
            signatures=list_signatures(self.registry, model.reference),
        )

    # -------------------------------------------------------------------------------- scan
    def scan(
        self, target: str | Path, *, max_blob_bytes: int = safety.MAX_BLOB_SCAN_BYTES,
        allow_globals: Sequence[str] = (), scan_limits: Sequence[str] = (),
    ) -> ScanReport:
        """Scan a local file or directory, or the model at a reference, for what loading it
        could execute (nothing is unpickled; see :mod:`ocimodel.scan`).

        An existing local path wins over a reference. A remote model is resolved to a verified
        manifest and its blobs scanned as they stream (big ones through an anonymous temp file,
        never into a destination; see
        :func:`ocimodel.safety.scan_model` for ``max_blob_bytes`` and what is digest-verified).
        ``allow_globals`` and ``scan_limits`` as for :meth:`push`.
        """
        options = safety.ScanOptions.make(allow_globals, scan_limits)
        if isinstance(target, Path) or os.path.lexists(target):
            from .scan import scan_path

            report = scan_path(Path(target), options)
            report.subject = str(target)
            return report
        try:
            reference = Reference.parse(target)
        except UsageError as exc:
            raise UsageError(f"scanning {target!r}: no such file or directory, and not a model reference ({exc})") from None
        model = resolve(self.registry, reference, allow_any_type=True)
        return safety.scan_model(self.registry, model, max_blob_bytes=max_blob_bytes, options=options)

    # ------------------------------------------------------------------------ provenance
    def sign(self, ref: str | Reference, **kwargs: Any) -> SignResult:
        """Sign the manifest at ``ref``; see :func:`ocimodel.provenance.sign`."""
        from .provenance import sign

        return sign(ref, registry=self.registry, **kwargs)

    def verify(self, ref: str | Reference, policy: VerificationPolicy) -> VerifyResult:
        """Verify the signatures of ``ref``; see :func:`ocimodel.provenance.verify`."""
        from .provenance import verify

        return verify(ref, policy, registry=self.registry)

    def tags(self, repository: str | Reference, *, include_internal: bool = False) -> list[str]:
        """The repository's tags, sorted.

        ocimodel's own tags (``ocimodel.history.*``) and referrers fallback tags
        (``sha256-<hex>``) are left out unless ``include_internal``.
        """
        reference = Reference.coerce(repository, repository=True)
        found = self.registry.list_tags(reference)
        from .stages import is_internal_tag

        return found if include_internal else [t for t in found if not is_internal_tag(t)]

    # ------------------------------------------------------------------------- lifecycle
    def _gate(self, policy: VerificationPolicy | None) -> Callable[[Reference], object] | None:
        """The promotion gate: the model must satisfy ``policy`` (None: no gate)."""
        if policy is None:
            return None
        policy.validate()
        from .provenance import require_signature

        return lambda model: require_signature(self.registry, model, policy)

    def _record_signer(self, options: RecordSigning | None) -> Callable[[Reference], object] | None:
        if options is None:
            return None
        from .provenance import sign

        return lambda record: sign(
            record,
            key=options.key,
            identity_token=options.identity_token,
            trust_config=options.trust_config,
            registry=self.registry,
        )

    def promote(
        self,
        ref: str | Reference,
        stage: str,
        *,
        reason: str = "",
        actor: str | None = None,
        policy: VerificationPolicy | None = None,
        sign_record: RecordSigning | None = None,
    ) -> stages_mod.PromotionResult:
        """Point the tag ``stage`` at ``ref``'s manifest (same bytes) and record the promotion.

        With ``policy`` the model's signature is verified first and nothing moves if it fails;
        with ``sign_record`` the promotion record is signed (keyless, or with a key).
        """
        from . import stages as stages_mod

        return stages_mod.promote(
            self.registry, ref, stage, reason=reason, actor=actor,
            verify_model=self._gate(policy), sign_record=self._record_signer(sign_record),
        )

    def rollback(
        self,
        repository: str | Reference,
        stage: str,
        *,
        to: str | None = None,
        steps: int = 1,
        reason: str | None = None,
        actor: str | None = None,
        policy: VerificationPolicy | None = None,
        sign_record: RecordSigning | None = None,
    ) -> stages_mod.PromotionResult:
        """Move ``stage`` back ``steps`` promotions (or to the digest ``to``), recorded as a rollback.

        With ``policy`` the target must have been reached by a promotion record signed under it
        and the model must be signed under it; without one the unsigned history is trusted.
        """
        from . import stages as stages_mod

        return stages_mod.rollback(
            self.registry, repository, stage, to=to, steps=steps, reason=reason, actor=actor, policy=policy,
            verify_model=self._gate(policy), sign_record=self._record_signer(sign_record),
        )

    def stages(
        self, repository: str | Reference, *, policy: VerificationPolicy | None = None
    ) -> list[stages_mod.StageInfo]:
        """Every stage of ``repository``: digest, version tags, last promotion (verified with ``policy``)."""
        from . import stages as stages_mod

        return stages_mod.stages(self.registry, repository, policy=policy)

    def history(
        self, repository: str | Reference, stage: str, *, policy: VerificationPolicy | None = None
    ) -> stages_mod.HistoryReport:
        """The promotion chain of ``stage``, newest first, with every problem found.

        With ``policy``, every record must be signed under it (else a finding).
        """
        from . import stages as stages_mod

        return stages_mod.history(self.registry, repository, stage, policy=policy)

    def plan_delete(self, ref: str | Reference) -> stages_mod.DeletePlan:
        """What :meth:`delete` would remove (changes nothing)."""
        from . import stages as stages_mod

        return stages_mod.plan_delete(self.registry, ref)

    def delete(self, ref: str | Reference, *, force: bool = False) -> stages_mod.DeletePlan:
        """Delete a tag or a manifest; refuses a digest a stage points at unless ``force``."""
        from . import stages as stages_mod

        return stages_mod.delete(self.registry, ref, force=force)

    def lineage(self, ref: str | Reference, *, depth: int = lineage_mod.DEFAULT_DEPTH) -> lineage_mod.LineageNode:
        """The ancestor tree of ``ref``, following parents by digest across registries."""
        return lineage_mod.lineage(self.registry, ref, depth=depth)


def _with_client(options: dict[str, Any], target: str) -> Client:
    """A Client from the connection and cache options among ``options`` (which are removed);
    given credentials (``username``/``password``, else the environment's) go to ``target``'s registry."""
    connection = options.pop("connection", None) or Connection(
        plain_http=options.pop("plain_http", False),
        insecure=options.pop("insecure", False),
        ca_file=options.pop("ca_file", None),
        timeout=options.pop("timeout", None),
        mirrors=options.pop("mirrors", None),
        username=options.pop("username", None),
        password=options.pop("password", None),
    ).bound_to(str(target))
    return Client(
        connection,
        concurrency=options.pop("concurrency", DEFAULT_CONCURRENCY),
        cache_dir=options.pop("cache_dir", None),
        use_cache=options.pop("use_cache", True),
    )


def push(path: str | Path, ref: str, **kwargs: Any) -> PushResult:
    """Push a model; see :meth:`Client.push` (connection options: plain_http, insecure, ca_file,
    timeout, username, password: the credentials are used for ``ref``'s registry only)."""
    with _with_client(kwargs, ref) as client:
        return client.push(path, ref, **kwargs)


def pull(ref: str, dest: str | Path, **kwargs: Any) -> PullResult:
    """Pull a model; see :meth:`Client.pull`."""
    with _with_client(kwargs, ref) as client:
        return client.pull(ref, dest, **kwargs)


def inspect(ref: str, **kwargs: Any) -> InspectResult:
    """Inspect a model; see :meth:`Client.inspect`."""
    with _with_client(kwargs, ref) as client:
        return client.inspect(ref, **kwargs)


def tags(repository: str, **kwargs: Any) -> list[str]:
    """List a repository's tags, sorted; see :meth:`Client.tags`."""
    with _with_client(kwargs, repository) as client:
        return client.tags(repository)


def login(
    host: str,
    username: str,
    password: str,
    *,
    plain_http: bool = False,
    insecure: bool = False,
    ca_file: str | Path | None = None,
    config_path: str | Path | None = None,
    timeout: float | Timeouts | None = None,
) -> Path:
    """Check ``username``/``password`` against ``host``, then store them like ``docker login``.

    Returns the docker config file written (or the one whose credential helper was used).
    """
    from .registry.credentials import Credential

    # Only the credentials being tested (ping asks nothing of another host, so stored logins
    # are never consulted), and only for ``host``.
    probe = CredentialStore().given_to(host, Credential(username=username, password=password))
    connection = Connection(plain_http=plain_http, insecure=insecure, ca_file=ca_file, timeout=timeout)
    with RegistryClient(connection, credentials=probe) as client:
        client.ping(host)
    store = CredentialStore(config_path)
    store.login(host, username, password)
    return store.path


def logout(host: str, *, config_path: str | Path | None = None) -> bool:
    """Forget stored credentials for ``host``; True if there were any."""
    return CredentialStore(config_path).logout(host)
