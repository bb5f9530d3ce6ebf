"""The blob phase of a pull: every planned file downloaded, verified, then moved into place.

For each blob either copy it from the local blob cache (re-verified) or stream it into a
resumable partial file inside DEST while checking size and sha256, resuming where a broken
connection stopped. Only when everything verified are the files renamed into place, all or
nothing. See :mod:`.destination` for what lives in DEST, :mod:`.pull` for the use-case.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Callable, Sequence

from ..descriptor import Descriptor
from ..errors import DigestMismatchError, IntegrityError
from ..model import PlannedFile, ResolvedModel
from ..storage import BlobStream, Mounter, Target
from .allocator import tune_for_streaming
from .cache import BlobCache
from .destination import Swap, Workspace, check_free_space, resumable_size
from .dirfd import DirHandle
from .observer import TransferObserver
from .parallel import DEFAULT_CONCURRENCY, Cancelled, run_all
from .verify import VerifyingWriter

logger = logging.getLogger(__name__)


def _download_blob(
    target: Target,
    layer: Descriptor,
    into: DirHandle,
    name_in_dir: str,
    observer: TransferObserver,
    name: str,
    *,
    resume: bool = False,
    cancelled: threading.Event | None = None,
) -> None:
    """Stream one blob of ``target`` into the file ``name_in_dir`` of the open directory
    ``into``, verifying size and digest, resuming broken connections.

    A connection lost mid-body is resumed from the bytes already received (the hash continues;
    a store that cannot resume restarts it), as :meth:`~ocimodel.storage.Target.read_blob`
    does it (a registry: ``Range``, under its retry policy). With ``resume``,
    ``name_in_dir`` is a partial download kept after a non-integrity failure and continued from
    its current size; without it the file is removed on any failure. Integrity failures always
    remove it: bytes that failed a check are never resumed from.
    """
    offset = resumable_size(into, name_in_dir, layer.size) if resume else 0
    observer.begin(name, layer.size)
    try:
        try:
            _fetch(target, layer, into, name_in_dir, offset, observer, name, cancelled)
        except DigestMismatchError:
            if not offset:
                raise
            # The kept prefix may be what was bad (a crash can leave garbage behind): once,
            # start over from byte 0 before blaming the registry.
            logger.warning("resumed download of %s did not verify; downloading it again from the start", name)
            into.unlink(name_in_dir)
            observer.advance(name, -layer.size)
            _fetch(target, layer, into, name_in_dir, 0, observer, name, cancelled)
    except IntegrityError:
        into.unlink(name_in_dir)
        raise
    except BaseException:
        if not resume:
            into.unlink(name_in_dir)
        raise
    finally:
        observer.end(name)


def _fetch(
    target: Target,
    layer: Descriptor,
    into: DirHandle,
    name_in_dir: str,
    offset: int,
    observer: TransferObserver,
    name: str,
    cancelled: threading.Event | None,
) -> None:
    what = f"blob {layer.digest[:19]} ({name})"
    writer = VerifyingWriter(name_in_dir, layer.digest, layer.size, what=what, offset=offset, into=into)
    observer.advance(name, offset)

    def consume(blob: BlobStream) -> None:
        nonlocal writer
        if blob.offset != writer.written:  # the store did not resume: start over
            observer.advance(name, -writer.written)
            writer.abort()
            writer = VerifyingWriter(name_in_dir, layer.digest, layer.size, what=what, into=into)
        for chunk in blob.chunks():
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            writer.write(chunk)
            observer.advance(name, len(chunk))

    try:
        target.read_blob(layer, consume, position=lambda: writer.written)
        writer.finish()
    finally:
        writer.abort()


def download_into(
    model: ResolvedModel,
    into: DirHandle,
    planned: Sequence[PlannedFile],
    observer: TransferObserver,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    cache: BlobCache | None = None,
    remove_on_failure: Callable[[], None] | None = None,
    before_commit: Callable[[list[tuple[str, Path]]], object] | None = None,
    after_commit: Callable[[Swap], object] | None = None,
) -> None:
    """Download, verify, then move every planned file into the open directory ``into``; all or
    nothing. The caller holds the destination lock (:class:`~.destination.DestinationLock`) and
    checked the destination; ``remove_on_failure`` removes ``into`` if the caller made it (not
    called while resumable partials remain in it).

    ``before_commit(files)`` sees every verified file (title, staged path) before any is moved
    into place, and may refuse them all by raising (e.g. ``--deny-unsafe``). ``after_commit(swap)``
    runs once all are in place and may remove more files or write state through ``swap``; if
    it raises, every file replaced or removed is put back and every new one taken away.

    Blobs already in ``cache`` are copied from it (re-verified); the others are downloaded into
    resumable partials, then added to the cache. Free space is checked first. See
    :mod:`.destination` for what may be left after a failure (only ``.ocimodel*``, and only
    resumable partials).
    """
    tune_for_streaming()
    _download_locked(model, into, planned, observer, concurrency, cache, remove_on_failure, before_commit, after_commit)
    target = model.reference.target
    if cache is not None and isinstance(target, Mounter):
        for digest in {item.layer.digest for item in planned}:
            cache.index.remember_blob(target.registry, target.repository, digest)


def _download_locked(
    model: ResolvedModel,
    into: DirHandle,
    planned: Sequence[PlannedFile],
    observer: TransferObserver,
    concurrency: int,
    cache: BlobCache | None,
    remove_on_failure: Callable[[], None] | None,
    before_commit: Callable[[list[tuple[str, Path]]], object] | None,
    after_commit: Callable[[Swap], object] | None,
) -> None:
    workspace = Workspace(into)
    try:
        _pull_blobs(model, workspace, planned, observer, concurrency, cache)
        if before_commit is not None:
            before_commit([(item.title, workspace.staged(item.layer.digest)) for item in planned])
        swap = Swap(into, workspace.staging)
        try:
            _move_into_place(swap, workspace, planned)
            if after_commit is not None:
                after_commit(swap)
        except BaseException:
            swap.undo()
            raise
        finally:
            swap.close()
        swap.tidy()
    except IntegrityError:
        # The artifact itself is bad: nothing of it is worth resuming, not even the blobs
        # that were still downloading (cancelled) when the bad one was found.
        workspace.discard_partials(item.layer.digest for item in planned)
        workspace.close(remove_dir=remove_on_failure)
        raise
    except BaseException:
        workspace.close(remove_dir=remove_on_failure)
        raise
    workspace.close()


def _pull_blobs(
    model: ResolvedModel,
    workspace: Workspace,
    planned: Sequence[PlannedFile],
    observer: TransferObserver,
    concurrency: int,
    cache: BlobCache | None,
) -> None:
    """Fill ``workspace.staging`` with one verified file per distinct digest."""
    by_digest: dict[str, PlannedFile] = {}
    for item in planned:
        by_digest.setdefault(item.layer.digest, item)
    cached = {d for d, item in by_digest.items() if cache is not None and cache.has(item.layer)}
    partial = sum(workspace.partial_size(d, item.layer.size) for d, item in by_digest.items() if d not in cached)
    # Cache entries on DEST's filesystem are hardlinks of the pulled files: no extra space.
    needed = sum(item.layer.size for item in planned) - partial
    check_free_space(workspace.dest, needed)
    cancelled = threading.Event()

    def fetch(item: PlannedFile) -> None:
        staged = workspace.staged_name(item.layer.digest)
        progress = functools.partial(observer.advance, item.title)
        if cache is not None and item.layer.digest in cached:
            observer.begin(item.title, item.layer.size)
            try:
                if cache.copy_out(item.layer, staged, progress, into=workspace.staging):
                    return
            finally:
                observer.end(item.title)
        partials = workspace.partials
        partial = workspace.partial_name(item.layer.digest)
        _download_blob(
            model.reference.target, item.layer, partials, partial, observer, item.title, resume=True, cancelled=cancelled
        )
        partials.rename(partial, workspace.staging, staged)
        if cache is not None:
            cache.add(item.layer, workspace.staged(item.layer.digest))

    run_all(fetch, list(by_digest.values()), concurrency, cancelled)


def _move_into_place(swap: Swap, workspace: Workspace, planned: Sequence[PlannedFile]) -> None:
    # Files sharing a digest were downloaded once: the last user moves it, others copy it.
    remaining: dict[str, int] = {}
    for item in planned:
        remaining[item.layer.digest] = remaining.get(item.layer.digest, 0) + 1
    for item in planned:
        remaining[item.layer.digest] -= 1
        swap.put(item.title, workspace.staged_name(item.layer.digest), item.mode, copy=bool(remaining[item.layer.digest]))
