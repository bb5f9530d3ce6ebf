"""The pull use-case: a model from a Target into a directory, every byte verified, all or nothing.

One pull, in order: resolve the reference to one digest; refuse what a policy refuses
(license, push-time scan record, signatures) before anything is written; validate every
title; check DEST once; take DEST's lock once and hold it from the state check to the state
write (a second pod container, or a concurrent CLI, waits, then finds the work done); skip
the download when the state file says this digest is installed and intact; else download
(:mod:`.download`), scan what was downloaded with ``deny_unsafe``, move it into place, and
record the state (:mod:`.installed`). On failure nothing is left in DEST that was not there
before (but for ``DEST/.ocimodel*``: resumable partial downloads and the lock).
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .._version import __version__
from ..config import FileInfo, timestamp
from ..errors import UsageError
from ..licenses import check_license, model_license
from ..model import PlannedFile, ResolvedModel, plan_files, resolve
from ..scanner.refusals import check_blobs_safe
from ..scanner.scanner import ScanOptions
from ..scanner.summary import check_config_scan
from ..storage import TargetRef
from . import installed
from .cache import BlobCache
from .destination import DestinationLock, Swap, check_destination
from .dirfd import DirHandle
from .download import download_into
from .observer import NullObserver, TransferObserver
from .parallel import DEFAULT_CONCURRENCY
from .restart import checks_fingerprint, installed_offline

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy

#: ``events(step, fields)``: told each step of a pull (the CLI logs one line per step).
PullEvents = Callable[[str, Mapping[str, Any]], None]


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


def pull(
    ref: TargetRef,
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
    concurrency: int = DEFAULT_CONCURRENCY,
    cache: BlobCache | None = None,
) -> PullResult:
    """Pull the model at ``ref`` into the directory ``dest``; see :meth:`ocimodel.api.Client.pull`."""
    if layout not in installed.LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}: use one of {', '.join(installed.LAYOUTS)}")
    if policy is not None:
        policy.validate()  # an unusable policy is a usage error before any request
    # A policy file may extend the scanner's allow-list (allowGlobals) for --deny-unsafe.
    extra = policy.allow_globals if policy is not None else ()
    options = ScanOptions.make([*allow_globals, *extra], scan_limits)
    emit = events or (lambda step, fields: None)
    dest = Path(dest)
    checks = checks_fingerprint(
        policy, allow_any_type=allow_any_type, allow_licenses=allow_licenses, deny_unsafe=deny_unsafe,
        allow_globals=allow_globals, scan_limits=scan_limits,
    )
    if not reverify:  # the init container's restart: a digest installed under the same checks
        found = installed_offline(
            ref, dest, layout=layout, include=include, checks=checks, options=options if deny_unsafe else None,
            events=emit,
        )
        if found is not None:
            digest, files_found, where = found
            return PullResult(reference=str(ref), digest=digest, destination=str(dest), files=files_found,
                              path=str(where), skipped=True)
    model = resolve(ref, allow_any_type=allow_any_type)
    emit("resolved", {"reference": str(ref), "digest": model.digest})
    planned = plan_files(model, include)
    check_license(model_license(model.config, model.manifest.annotations), allow_licenses)
    if deny_unsafe:
        check_config_scan(model.config, options)
    verification: dict[str, Any] | None = None
    if policy is not None:
        from ..provenance import require_signature  # signing: only a pull with a policy pays for it

        signers = require_signature(model.reference, policy)
        verification = {"verified": True, "signers": [s.to_dict() for s in signers]}
        emit("verified", {"digest": model.digest, "signers": [s.signer for s in signers]})
    files = tuple(installed.InstalledFile(p.title, p.layer.digest, p.layer.size) for p in planned)
    root = installed.files_root(dest, layout, model.digest)
    result = PullResult(
        reference=str(ref),
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
        reference=str(ref), digest=model.digest, layout=layout, files=files, include=tuple(include),
        verification=verification, tool=f"ocimodel {__version__}", checks=checks,
    )
    before_commit = functools.partial(check_blobs_safe, options=options) if deny_unsafe else None
    install = _Install(model, dest, planned, observer or NullObserver(), concurrency, cache, before_commit)
    # One pull per DEST at a time, from the state check to the state write.
    try:
        with DestinationLock(dest) as lock:
            top = lock.dir
            previous, ignored = installed.read_state(top)
            if ignored:
                emit("state-ignored", {"path": str(dest / installed.STATE_NAME), "reason": ignored})
            installed.check_layout(top, layout, previous)
            if previous and (previous.digest, previous.layout, previous.include) == (model.digest, layout, tuple(include)):
                problem = installed.install_problem(top, layout, model.digest, files, reverify=reverify)
                if problem is None:
                    if deny_unsafe:
                        check_blobs_safe([(f.path, root.joinpath(*f.path.split("/"))) for f in files], options)
                    if previous.checks != checks:  # so that the next restart can skip the registry
                        installed.write_state(top, replace(state, time=previous.time))
                    emit("up-to-date", {"digest": model.digest, "path": str(root), "reverified": reverify, "offline": False})
                    return replace(result, skipped=True)
                emit("repairing", {"digest": model.digest, "reason": problem})
            install.run(top, state, existed, previous)
            emit("downloaded", {"digest": model.digest, "files": len(planned), "bytes": sum(f.size for f in files)})
    except BaseException:
        if layout == "versioned":
            installed.tidy_failed_install(dest, created=not existed)
        raise
    emit("installed", {"digest": model.digest, "path": str(root)})
    return result


@dataclass(frozen=True)
class _Install:
    """Downloading one model into a locked DEST (flat) or its version directory (versioned)."""

    model: ResolvedModel
    dest: Path
    planned: Sequence[PlannedFile]
    observer: TransferObserver
    concurrency: int
    cache: BlobCache | None
    before_commit: Callable[[list[tuple[str, Path]]], object] | None

    def run(self, top: DirHandle, state: installed.InstallState, existed: bool, previous: installed.InstallState | None) -> None:
        """Download, make it current, record the state.

        A flat pull replaces the previous version's files all or nothing: its files that the
        new version lacks are removed (if unchanged since installed) and the state written as
        part of the same commit, so a failure at any step puts the previous files back.
        """
        if state.layout == "flat":
            titles = {p.title for p in self.planned}
            stale = [f for f in previous.files if f.path not in titles] if previous else []

            def finish(swap: Swap) -> None:
                for item in stale:
                    swap.remove_installed(item.path, item.size, item.digest)
                installed.write_state(top, replace(state, time=timestamp(None)))

            remove = None if existed else functools.partial(shutil.rmtree, self.dest, ignore_errors=True)
            self._download(top, remove, finish)
            return
        hexdigest = self.model.digest.partition(":")[2]
        with top.subdir(installed.VERSIONS_DIR, create=True) as versions:
            made = versions.lstat(hexdigest) is None
            with versions.subdir(hexdigest, create=True) as version:
                self._download(version, functools.partial(versions.rmtree, hexdigest) if made else None, None)
            # Keep the version being replaced: a reader may still have its files open.
            keep = {hexdigest, installed.current_digest_hex(top) or hexdigest}
            installed.switch_current(top, self.model.digest)
            installed.write_state(top, replace(state, time=timestamp(None)))
            installed.prune_versions(versions, keep)

    def _download(
        self, into: DirHandle, remove_on_failure: Callable[[], None] | None, after_commit: Callable[[Swap], object] | None
    ) -> None:
        download_into(
            self.model, into, self.planned, self.observer, self.concurrency, cache=self.cache,
            remove_on_failure=remove_on_failure, before_commit=self.before_commit, after_commit=after_commit,
        )
