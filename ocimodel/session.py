"""A session with registries: :class:`Client`, which every verb of :mod:`ocimodel.api` opens.

A thin composition: each method turns a reference into a storage target (:meth:`Client.locate`,
the one place where a reference becomes a store) and calls the use-case that owns the work:
:mod:`ocimodel.transfer.push` and :mod:`~ocimodel.transfer.pull`, :mod:`ocimodel.provenance`
(sign, verify), :mod:`ocimodel.lifecycle` (promote, rollback, stages, history, delete),
:mod:`ocimodel.ancestry` (lineage), the scanner. Signing, stages and the lineage walk are
imported on first use: push and pull without them start faster (checked by tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .ancestry import DEFAULT_DEPTH, LineageNode, ancestry
from .config import CodeInfo, Dataset, FileInfo, ModelConfig, Scalar
from .errors import UsageError
from .model import resolve
from .reference import Reference
from .registry.client import RegistryClient
from .registry.connection import Connection
from .layout.names import is_layout_reference, parse_layout_reference
from .locations import Locations
from .scanner.local import scan_path
from .scanner.remote import MAX_BLOB_SCAN_BYTES, scan_model
from .scanner.report import ScanReport
from .scanner.scanner import ScanOptions
from .signing.policy import VerificationPolicy
from .storage import TargetRef
from .transfer import pull as pulling
from .transfer import push as pushing
from .transfer.cache import BlobCache, open_cache
from .transfer.observer import TransferObserver
from .transfer.parallel import DEFAULT_CONCURRENCY
from .transfer.pull import PullEvents, PullResult
from .transfer.push import ModelInfo, PushResult

if TYPE_CHECKING:
    from .inventory import ModelRepository
    from .lifecycle.chain import HistoryReport
    from .transfer.copy import Carry, CopyResult
    from .lifecycle.delete import DeletePlan
    from .lifecycle.promote import PromotionResult
    from .lifecycle.stages import StageInfo
    from .provenance import SignResult, VerifyResult


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


@dataclass(frozen=True)
class RecordSigning:
    """How to sign promotion records: with a private ``key``, else keyless."""

    key: str | Path | None = None
    identity_token: str | None = None
    trust_config: str | Path | None = None


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
        self.locations = Locations(self.registry)

    @property
    def cache(self) -> BlobCache | None:
        """The blob cache, opened on first use (only transfers need it)."""
        if self._cache is None and self._use_cache:
            self._cache = open_cache(self._cache_dir, enabled=True)
        return self._cache

    def close(self, *, commit: bool = True) -> None:
        """Close layouts (writing out archives written to, if ``commit``), connections and the
        cache index."""
        try:
            self.locations.close(commit=commit)
        finally:
            self._close_connections()

    def _close_connections(self) -> None:
        self.registry.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(commit=exc_type is None)

    def locate(self, ref: str | Reference, *, repository: bool = False) -> TargetRef:
        """The storage target ``ref`` names (a registry repository, or an OCI image layout:
        ``oci:PATH[:TAG]``, ``oci-archive:FILE[:TAG]``) and the tag or digest in it; with
        ``repository``, the store only (no tag or digest allowed in a string). See
        :mod:`ocimodel.locations`."""
        return self.locations.locate(ref, repository=repository)

    def _locate_destination(self, ref: str | Reference) -> TargetRef:
        """Like :meth:`locate`, but a reference naming no tag or digest names the store only
        (a copy then takes the source's tag), not its default tag."""
        if isinstance(ref, str):
            if is_layout_reference(ref):
                parsed = parse_layout_reference(ref)
                return self.locate(ref, repository=not (parsed.tag or parsed.digest))
            ref = Reference.parse(ref, default_tag=None)
        return self.locate(ref, repository=not (ref.tag or ref.digest))

    # -------------------------------------------------------------------- push, pull, inspect
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
        (:mod:`ocimodel.scanner`; formats like safetensors are judged from their header), the
        report is handed to ``on_scan`` (the CLI prints warnings) and its summary recorded in
        the config's ``scan`` field. ``deny_unsafe`` refuses a model with a dangerous file, or
        one not fully inspected, before anything is uploaded
        (:class:`~ocimodel.scanner.refusals.UnsafeModelError`, exit 5). ``allow_globals`` extends the
        scanner's allow-list (``module.name``), ``scan_limits`` its limits (``name=value``).
        """
        info = ModelInfo(
            name=name, version=version, description=description, framework=framework, format=format,
            license=license, authors=tuple(authors), labels=dict(labels or {}), metrics=dict(metrics or {}),
            params=dict(params or {}), parents=tuple(parents), datasets=tuple(datasets), run_id=run_id,
            run_uri=run_uri, code=code,
        )
        return pushing.push(
            self.locate(ref), path, info=info, locate=self.locations.locator(), observer=observer, scan=scan,
            deny_unsafe=deny_unsafe, on_scan=on_scan, allow_globals=allow_globals, scan_limits=scan_limits,
            concurrency=self.concurrency, cache=self.cache,
        )

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
        whatever ``dest`` holds (symlinks, a hostile state file; see
        :mod:`ocimodel.transfer.dirfd`); a ``dest`` holding the other layout is refused
        (:class:`UsageError`).

        ``layout="versioned"`` writes to ``dest/versions/<hex>`` and switches the
        ``dest/current`` symlink atomically (see :mod:`ocimodel.transfer.installed`). When
        ``dest/.ocimodel-state.json`` says this digest is already installed and its files
        are intact (sizes; sha256 too with ``reverify``), nothing is downloaded.
        ``events(step, fields)`` is told each step (resolved, verified, up-to-date,
        downloaded, installed). ``allow_licenses`` refuses a model whose SPDX license is not
        allowed, and ``deny_unsafe`` one with a file that can run code when loaded or that
        could not be fully inspected, before anything is written (``allow_globals`` and
        ``scan_limits`` as for :meth:`push`; a verification policy file's ``allowGlobals``
        belongs in ``allow_globals`` too).
        """
        return pulling.pull(
            self.locate(ref), dest, include=include, allow_any_type=allow_any_type, observer=observer,
            policy=policy, layout=layout, reverify=reverify, events=events, deny_unsafe=deny_unsafe,
            allow_licenses=allow_licenses, allow_globals=allow_globals, scan_limits=scan_limits,
            concurrency=self.concurrency, cache=self.cache,
        )

    def inspect(self, ref: str | Reference, *, allow_any_type: bool = True) -> InspectResult:
        """Describe the artifact at ``ref``: digest, type, metadata, lineage, files, and the
        signatures attached to it (the signers they claim: not verified)."""
        located = self.locate(ref)
        model = resolve(located, allow_any_type=allow_any_type)
        manifest = model.manifest
        from .provenance import list_signatures

        return InspectResult(
            reference=str(located),
            digest=model.digest,
            media_type=manifest.media_type,
            artifact_type=manifest.effective_artifact_type,
            size=len(manifest.raw),
            annotations=dict(manifest.annotations),
            files=model.files,
            config=model.config,
            signatures=list_signatures(model.reference),
        )

    def tags(self, repository: str | Reference, *, include_internal: bool = False) -> list[str]:
        """The repository's tags, sorted.

        ocimodel's own tags (``ocimodel.history.*``) and referrers fallback tags
        (``sha256-<hex>``) are left out unless ``include_internal``.
        """
        found = self.locate(repository, repository=True).target.tags()
        from .lifecycle.records import is_internal_tag

        return found if include_internal else [t for t in found if not is_internal_tag(t)]

    # -------------------------------------------------------------------------------- copy
    def copy(
        self,
        src: str | Reference,
        dst: str | Reference,
        *,
        destination: "Client | None" = None,
        referrers: bool = True,
        tags: bool = False,
        observer: TransferObserver | None = None,
    ) -> CopyResult:
        """Copy the model ``src`` names to ``dst`` with everything attached to it, every digest
        kept; ``destination`` is the session for ``dst`` when it needs other options or
        credentials (default: this one). See :func:`ocimodel.api.copy`."""
        from .transfer import copy as copying

        source = self.locate(src)
        target = (destination or self)._locate_destination(dst)
        carry = None
        if tags:
            carry = lambda digest: _carry(source, digest)  # noqa: E731 - a closure over the source
        return copying.copy(source, target, referrers=referrers, carry=carry, observer=observer,
                            concurrency=self.concurrency)

    # -------------------------------------------------------------------------------- scan
    def scan(
        self, target: str | Path, *, max_blob_bytes: int = MAX_BLOB_SCAN_BYTES,
        allow_globals: Sequence[str] = (), scan_limits: Sequence[str] = (),
    ) -> ScanReport:
        """Scan a local file or directory, or the model at a reference, for what loading it
        could execute (nothing is unpickled; see :mod:`ocimodel.scanner`).

        An existing local path wins over a reference. A remote model is resolved to a verified
        manifest and its blobs scanned as they stream (big ones through an anonymous temp file,
        never into a destination; see :func:`ocimodel.scanner.remote.scan_model` for
        ``max_blob_bytes`` and what is digest-verified). ``allow_globals`` and ``scan_limits``
        as for :meth:`push`.
        """
        options = ScanOptions.make(allow_globals, scan_limits)
        if isinstance(target, Path) or os.path.lexists(target):
            report = scan_path(Path(target), options)
            report.subject = str(target)
            return report
        try:
            located = self.locate(target)
        except UsageError as exc:
            raise UsageError(f"scanning {target!r}: no such file or directory, and not a model reference ({exc})") from None
        model = resolve(located, allow_any_type=True)
        return scan_model(model, max_blob_bytes=max_blob_bytes, options=options)

    # ------------------------------------------------------------------------ provenance
    def sign(
        self,
        ref: str | Reference,
        *,
        key: str | Path | None = None,
        identity_token: str | None = None,
        staging: bool = False,
        trust_config: str | Path | None = None,
        annotations: Mapping[str, str] | None = None,
        interactive: bool | None = None,
    ) -> SignResult:
        """Sign the manifest ``ref`` names (its digest, resolved once) and attach the bundle.

        Keyless by default: the identity token comes from ``identity_token``,
        ``OCIMODEL_IDENTITY_TOKEN``, the CI environment or (``interactive``) a browser login;
        ``trust_config`` names a private Sigstore deployment, ``staging`` the public staging
        one. With ``key`` (an encrypted private key) the password comes from
        ``OCIMODEL_KEY_PASSWORD`` or the terminal. ``annotations`` go into the signed
        statement's predicate.
        """
        from .provenance import sign

        return sign(self.locate(ref), key=key, identity_token=identity_token, staging=staging,
                    trust_config=trust_config, annotations=annotations, interactive=interactive)

    def verify(self, ref: str | Reference, policy: VerificationPolicy) -> VerifyResult:
        """Verify that the manifest ``ref`` names (resolved once) is signed as ``policy`` demands."""
        from .provenance import verify

        return verify(self.locate(ref), policy)

    # ------------------------------------------------------------------------- lifecycle
    def _gate(self, policy: VerificationPolicy | None) -> Callable[[TargetRef], object] | None:
        """The promotion gate: the model must satisfy ``policy`` (None: no gate)."""
        if policy is None:
            return None
        policy.validate()
        from .provenance import require_signature

        return lambda model: require_signature(model, policy)

    def _record_signer(self, options: RecordSigning | None) -> Callable[[TargetRef], object] | None:
        if options is None:
            return None
        from .provenance import sign

        return lambda record: sign(
            record, key=options.key, identity_token=options.identity_token, trust_config=options.trust_config
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
    ) -> PromotionResult:
        """Point the tag ``stage`` at ``ref``'s manifest (same bytes) and record the promotion.

        With ``policy`` the model's signature is verified first and nothing moves if it fails;
        with ``sign_record`` the promotion record is signed (keyless, or with a key).
        """
        from .lifecycle.promote import promote

        return promote(self.locate(ref), stage, reason=reason, actor=actor,
                       verify_model=self._gate(policy), sign_record=self._record_signer(sign_record))

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
        origins: Sequence[str] = (),
    ) -> PromotionResult:
        """Move ``stage`` back ``steps`` promotions (or to the digest ``to``), recorded as a rollback.

        With ``policy`` the target must have been reached by a promotion record signed under it
        and the model must be signed under it; without one the unsigned history is trusted.
        ``origins``: as for :meth:`history`.
        """
        from .lifecycle.rollback import rollback

        return rollback(self.locate(repository, repository=True).target, stage, to=to, steps=steps, reason=reason,
                        actor=actor, policy=policy, verify_model=self._gate(policy),
                        sign_record=self._record_signer(sign_record), origins=origins)

    def stages(self, repository: str | Reference, *, policy: VerificationPolicy | None = None) -> list[StageInfo]:
        """Every stage of ``repository``: digest, version tags, last promotion (verified with ``policy``)."""
        from .lifecycle.stages import stages

        return stages(self.locate(repository, repository=True).target, policy=policy)

    def history(
        self,
        repository: str | Reference,
        stage: str,
        *,
        policy: VerificationPolicy | None = None,
        origins: Sequence[str] = (),
    ) -> HistoryReport:
        """The promotion chain of ``stage``, newest first, with every problem found.

        With ``policy``, every record must be signed under it (else a finding). ``origins``
        name the repositories this one is a copy of: records written there are accepted
        (any other repository's record is a ``wrong-repository`` finding).
        """
        from .lifecycle.history import history

        return history(self.locate(repository, repository=True).target, stage, policy=policy, origins=origins)

    def plan_delete(self, ref: str | Reference) -> DeletePlan:
        """What :meth:`delete` would remove (changes nothing)."""
        from .lifecycle.delete import plan_delete

        return plan_delete(self.locate(ref))

    def delete(self, ref: str | Reference, *, force: bool = False) -> DeletePlan:
        """Delete a tag or a manifest; refuses a digest a stage points at unless ``force``."""
        from .lifecycle.delete import delete

        return delete(self.locate(ref), force=force)

    def list_models(self, registry: str, *, policy: VerificationPolicy | None = None) -> list[ModelRepository]:
        """The repositories of ``registry`` (``REGISTRY[/PREFIX]``, from its catalog) holding
        models: stages, latest version, signatures (verified with ``policy``). See
        :mod:`ocimodel.inventory`."""
        from .inventory import inventory
        from .reference import parse_registry_prefix

        host, prefix = parse_registry_prefix(registry)
        names = self.registry.catalog(host, prefix)
        targets = [self.locate(Reference(registry=host, repository=n), repository=True).target for n in names]
        return inventory(targets, policy=policy, concurrency=self.concurrency)

    def lineage(self, ref: str | Reference, *, depth: int = DEFAULT_DEPTH) -> LineageNode:
        """The ancestor tree of ``ref``, following parents by digest across registries."""
        return ancestry(self.locations.locator(), self.locate(ref), depth=depth)


def _carry(source: TargetRef, digest: str) -> Carry:
    """The tags (and the promotion records their histories need) that go with ``digest``."""
    from .lifecycle.carry import carried_tags
    from .transfer.copy import Carry

    found = carried_tags(source.target, digest)
    tags = dict.fromkeys(found.tags, digest)
    tags.update({h.tag: h.records[0] for h in found.histories})
    return Carry(tags=tags, manifests=tuple(r for h in found.histories for r in h.records))
