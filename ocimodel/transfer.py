"""Move a model between a local path and a registry: files <-> layers, verified, in flat memory.

Push hashes each file (or takes its digest from the digest cache when unchanged), uploads the
blobs the registry lacks (streamed, concurrently; mounted from another repository when the
cache knows one that has it), then the config, then the manifest.

Pull resolves the reference to one digest, validates every title before touching the disk,
locks DEST, checks free space, then for each blob either copies it from the local blob cache
(re-verified) or streams it into a resumable partial file inside DEST while checking size and
sha256, resuming with ``Range`` when the connection breaks. Only when everything verified are
the files renamed into place. See :mod:`ocimodel.destination` for what lives in DEST.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence, TypeVar

from .allocator import tune_for_streaming
from .cache import BlobCache
from .config import FileInfo, ModelConfig
from .descriptor import (
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    INDEX_V1,
    LAYER_MEDIA_TYPE,
    DOCKER_MANIFEST_LIST_V2,
    Descriptor,
    Manifest,
)
from .destination import DestinationLock, Swap, Workspace, check_destination, check_free_space, resumable_size
from .dirfd import DirHandle
from .errors import (
    DigestMismatchError,
    IntegrityError,
    NetworkError,
    RegistryError,
    TransferInterrupted,
    UsageError,
)
from .files import SourceFile, file_chunks, sha256_file
from .titles import validate_titles
from .reference import Reference
from .registry.client import RegistryClient
from .registry.uploads import StreamedUploadFailed
from .registry.retry import RetryableFailure
from .verify import VerifyingWriter

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2  # two blob streams gave +25% on 2 cores; three gave nothing more
# Files this large that need hashing are uploaded while hashed (the hash off the critical
# path); smaller ones are hashed first, which costs little and keeps the simplest path.
STREAM_MIN_SIZE = 64 * 1024 * 1024
_MAX_RESUMES = 50  # rounds of the retry policy per blob, each one having made progress

T = TypeVar("T")
R = TypeVar("R")


class TransferObserver(Protocol):
    """Receives progress events (thread-safe implementations only: blobs move concurrently)."""

    def begin(self, name: str, total: int) -> None: ...

    def advance(self, name: str, amount: int) -> None: ...

    def end(self, name: str) -> None: ...


class NullObserver:
    """Ignores progress (non-interactive use)."""

    def __enter__(self) -> "NullObserver":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def begin(self, name: str, total: int) -> None:
        pass

    def advance(self, name: str, amount: int) -> None:
        pass

    def end(self, name: str) -> None:
        pass


@dataclass(frozen=True)
class PushedLayers:
    """What the blob phase of a push produced."""

    layers: list[Descriptor]
    files: list[FileInfo]
    uploaded: int
    skipped: int


def _digest_of(src: SourceFile, observer: TransferObserver, cache: BlobCache | None) -> str:
    """sha256 of ``src``; from the digest cache when the file is unchanged since last hashed."""
    known = cache.index.lookup_file(src.path) if cache is not None else None
    if known is not None:
        return known
    name = f"hash {src.title}"
    observer.begin(name, src.size)
    try:
        before = os.stat(src.path)
        started = time.time_ns()
        digest = sha256_file(src.path, functools.partial(observer.advance, name))
    finally:
        observer.end(name)
    if cache is not None:
        cache.index.store_file(src.path, digest, before, started)
    return digest


def _layer(src: SourceFile, digest: str) -> Descriptor:
    return Descriptor(media_type=LAYER_MEDIA_TYPE, digest=digest, size=src.size, annotations={ANNOTATION_TITLE: src.title})


def _upload_file(
    client: RegistryClient, ref: Reference, src: SourceFile, layer: Descriptor, observer: TransferObserver,
    cache: BlobCache | None,
) -> bool:
    """Upload one file's blob unless the registry has it; True if sent (or mounted)."""
    name = f"push {src.title}"
    observer.begin(name, layer.size)

    def open_chunks() -> Iterable[bytes]:
        for chunk in file_chunks(src.path, layer.size):
            observer.advance(name, len(chunk))
            yield chunk

    try:
        return _push_one(client, ref, layer, open_chunks, cache)
    finally:
        observer.end(name)


def push_files(
    client: RegistryClient,
    ref: Reference,
    sources: Sequence[SourceFile],
    observer: TransferObserver,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    cache: BlobCache | None = None,
    stream_min: int = STREAM_MIN_SIZE,
) -> PushedLayers:
    """Hash and upload every file (``concurrency`` files at a time); returns the layers.

    The registry needs a blob's digest to check whether it has it (HEAD) and to commit it
    (``PUT ?digest=``), so the simple way reads a file twice: hash, then upload. That stays
    for files the digest cache knows (no hashing at all) and for small ones. A file of
    ``stream_min`` bytes or more that must be hashed is instead uploaded *while* it is hashed
    (:func:`_push_streamed`): hashing leaves the critical path. Files are pipelined too, so
    with several files hashing one overlaps uploading another.
    """
    tune_for_streaming()
    claimed: set[str] = set()
    lock = threading.Lock()

    def claim(digest: str) -> bool:
        """True for the first file with this content (identical files: one upload)."""
        with lock:
            mine = digest not in claimed
            claimed.add(digest)
            return mine

    def push(src: SourceFile) -> tuple[Descriptor, bool | None]:
        known = cache.index.lookup_file(src.path) if cache is not None else None
        if known is None and src.size >= stream_min and client.streams_uploads(ref.registry):
            return _push_streamed(client, ref, src, observer, cache, claim)
        layer = _layer(src, known or _digest_of(src, observer, cache))
        # None: another task's blob
        return layer, _upload_file(client, ref, src, layer, observer, cache) if claim(layer.digest) else None

    results = _run_all(push, list(sources), concurrency)
    layers = [layer for layer, _ in results]
    sent = [r for _, r in results if r is not None]
    return PushedLayers(
        layers=layers,
        files=file_entries(sources, layers),
        uploaded=sum(1 for r in sent if r),
        skipped=sum(1 for r in sent if not r),
    )


def _push_streamed(
    client: RegistryClient,
    ref: Reference,
    src: SourceFile,
    observer: TransferObserver,
    cache: BlobCache | None,
    claim: Callable[[str], bool],
) -> tuple[Descriptor, bool | None]:
    """Upload ``src`` while a second thread hashes it; same result as hash-then-upload.

    The hashing thread, once it knows the digest, does what the simple path does before
    uploading: skip a blob another file of this push claimed, HEAD the registry, try a
    cross-repository mount. If any of those settles it, the running upload is abandoned (a
    partial upload is never committed: only ``PUT ?digest=`` commits). If the registry refuses
    the streamed upload, it is redone the simple way with the digest now known, and the client
    remembers not to stream to that registry again.
    """
    outcome: list[bool | None] = []  # set by the hashing thread when the upload is not needed
    digest_known: Future[str] = Future()
    decision: Future[str | None] = Future()
    stop_hashing = threading.Event()  # the upload failed: do not finish hashing a huge file for nothing

    def hash_and_check() -> None:
        try:
            digest = _digest_of(src, _StoppableObserver(observer, stop_hashing), cache)
        except BaseException as exc:
            digest_known.set_exception(exc)
            decision.set_exception(exc)
            return
        digest_known.set_result(digest)
        try:
            if not claim(digest):
                outcome.append(None)
            elif client.blob_exists(ref, digest):
                outcome.append(False)
            elif _mount(client, ref, digest, cache):
                outcome.append(True)
            decision.set_result(None if outcome else digest)
        except BaseException as exc:
            decision.set_exception(exc)

    hasher = threading.Thread(target=hash_and_check, name="ocimodel-hash", daemon=True)
    hasher.start()
    name = f"push {src.title}"
    observer.begin(name, src.size)
    try:
        try:
            digest = client.push_blob_streamed(
                ref, src.size, functools.partial(file_chunks, src.path, src.size), decision,
                what=f"file {src.title}", progress=functools.partial(observer.advance, name),
            )
        except StreamedUploadFailed as exc:
            logger.info("streamed upload of %s refused (%s); uploading it after hashing instead", src.title, exc)
            client.stop_streaming_uploads(ref.registry)
            decision.result()  # the hashing thread's own failure, if any, comes first
            digest = None
    except BaseException:
        stop_hashing.set()
        raise
    finally:
        observer.end(name)
        hasher.join()
    layer = _layer(src, digest_known.result())
    if digest is None and not outcome:  # the streamed upload failed: the simple way
        return layer, _upload_file(client, ref, src, layer, observer, cache)
    if outcome and outcome[0] is None:
        return layer, None
    if cache is not None:
        cache.index.remember_blob(ref.registry, ref.repository, layer.digest)
    return layer, True if digest is not None else outcome[0]


class _StoppableObserver:
    """Passes progress on to ``inner``; raises :class:`_Cancelled` once ``stop`` is set, which
    ends the hashing loop that reports to it at its next chunk."""

    def __init__(self, inner: TransferObserver, stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def begin(self, name: str, total: int) -> None:
        self._inner.begin(name, total)

    def advance(self, name: str, amount: int) -> None:
        if self._stop.is_set():
            raise _Cancelled()
        self._inner.advance(name, amount)

    def end(self, name: str) -> None:
        self._inner.end(name)


def _mount(client: RegistryClient, ref: Reference, digest: str, cache: BlobCache | None) -> bool:
    """Mount ``digest`` from a repository of the same registry the cache saw it in."""
    sources = cache.index.repositories_with(ref.registry, digest, exclude=ref.repository) if cache else []
    if not sources or not client.mount_blob(ref, digest, sources[0]):
        return False
    if cache is not None:
        cache.index.remember_blob(ref.registry, ref.repository, digest)
    return True


def _push_one(
    client: RegistryClient,
    ref: Reference,
    layer: Descriptor,
    open_chunks: Callable[[], Iterable[bytes]],
    cache: BlobCache | None,
) -> bool:
    """Push one blob, mounting it from a repository the cache saw it in; True if sent or mounted."""
    sources = cache.index.repositories_with(ref.registry, layer.digest, exclude=ref.repository) if cache else []
    # One mount attempt: if the registry refuses it, the POST turns into a normal upload.
    sent = client.push_blob(ref, layer, open_chunks, mount_from=sources[0] if sources else None)
    if cache is not None:
        cache.index.remember_blob(ref.registry, ref.repository, layer.digest)
    return sent


def _run_all(
    fn: Callable[[T], R], items: list[T], concurrency: int, cancelled: threading.Event | None = None
) -> list[R]:
    """Run ``fn`` over ``items`` with a thread pool; the first error wins and is re-raised.

    ``cancelled`` is set on the first error, before waiting for the running calls, so that
    long ones (a big download) can notice and stop instead of finishing for nothing.
    """
    if concurrency <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ocimodel-blob") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            # FIRST_EXCEPTION, not result() in order: a failure of the second blob must not
            # wait for the first (maybe many GiB) to finish before it is noticed.
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
            return [f.result() for f in futures]
        except BaseException:
            if cancelled is not None:
                cancelled.set()
            for f in futures:
                f.cancel()
            raise


def file_entries(sources: Sequence[SourceFile], layers: Sequence[Descriptor]) -> list[FileInfo]:
    """The config's file list."""
    return [FileInfo(path=s.title, digest=l.digest, size=l.size, mode=s.mode) for s, l in zip(sources, layers)]


def push_manifest(
    client: RegistryClient,
    ref: Reference,
    config: ModelConfig,
    layers: Sequence[Descriptor],
    annotations: dict[str, str],
) -> Manifest:
    """Upload the config blob, then the manifest under ``ref``'s tag."""
    config_desc = client.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, config.to_bytes())
    manifest = Manifest.build(config_desc, list(layers), artifact_type=ARTIFACT_TYPE, annotations=annotations)
    client.put_manifest(ref, manifest.raw, manifest.media_type)
    return manifest


# --------------------------------------------------------------------------------------- pull


@dataclass(frozen=True)
class ResolvedModel:
    """A manifest fetched once by tag or digest, pinned to its digest, and its config."""

    reference: Reference
    manifest: Manifest
    config: ModelConfig | None
    config_raw: bytes = b""

    @property
    def digest(self) -> str:
        return self.manifest.digest


def resolve(client: RegistryClient, ref: Reference, *, allow_any_type: bool = False) -> ResolvedModel:
    """Fetch the manifest (verified against its digest) and the model config."""
    fetched = client.get_manifest(ref)
    if fetched.media_type in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        raise UsageError(f"{ref} is an image index, not a model; name one of its manifests by digest")
    manifest = Manifest.parse(fetched.raw, f"manifest of {ref}")
    pinned = ref.with_digest(manifest.digest)
    kind = manifest.effective_artifact_type
    if kind != ARTIFACT_TYPE and not allow_any_type:
        raise UsageError(
            f"{ref} is not an ocimodel model (artifact type {kind!r}); "
            "pass --allow-any-type to pull it as plain files"
        )
    config: ModelConfig | None = None
    raw = b""
    if manifest.config.media_type == CONFIG_MEDIA_TYPE:
        raw = client.fetch_blob_bytes(pinned, manifest.config)
        config = ModelConfig.from_bytes(raw)
    return ResolvedModel(reference=pinned, manifest=manifest, config=config, config_raw=raw)


@dataclass
class PlannedFile:
    """One file to write on pull."""

    title: str
    layer: Descriptor
    mode: int


def plan_files(model: ResolvedModel, include: Sequence[str] = ()) -> list[PlannedFile]:
    """Validate all titles (even excluded ones: a hostile artifact is refused whole)."""
    titles = validate_titles(layer.title for layer in model.manifest.layers)
    modes = {f.path: f.mode for f in model.config.files} if model.config else {}
    planned = []
    for title, layer in zip(titles, model.manifest.layers):
        if include and not any(fnmatch.fnmatchcase(title, pattern) for pattern in include):
            continue
        # Only permission bits; never setuid/setgid/sticky from a registry.
        planned.append(PlannedFile(title=title, layer=layer, mode=modes.get(title, 0o644) & 0o777))
    if include and not planned:
        raise UsageError(f"no file of {model.reference} matches --include {' '.join(include)}")
    return planned


def download_blob(
    client: RegistryClient,
    ref: Reference,
    layer: Descriptor,
    into: DirHandle,
    target: str,
    observer: TransferObserver,
    name: str,
    *,
    resume: bool = False,
    cancelled: threading.Event | None = None,
) -> None:
    """Stream one blob into the file ``target`` of the open directory ``into``, verifying size
    and digest, retrying broken connections.

    A connection lost mid-body is resumed with ``Range`` from the bytes already received (the
    hash continues; a registry answering 200 instead of 206 restarts it), under the client's
    retry policy, which starts afresh whenever an attempt made progress. With ``resume``,
    ``target`` is a partial download kept after a non-integrity failure and continued from its
    current size; without it ``target`` is removed on any failure. Integrity failures always
    remove it: bytes that failed a check are never resumed from.
    """
    offset = resumable_size(into, target, layer.size) if resume else 0
    observer.begin(name, layer.size)
    try:
        try:
            _fetch(client, ref, layer, into, target, offset, observer, name, cancelled)
        except DigestMismatchError:
            if not offset:
                raise
            # The kept prefix may be what was bad (a crash can leave garbage behind): once,
            # start over from byte 0 before blaming the registry.
            logger.warning("resumed download of %s did not verify; downloading it again from the start", name)
            into.unlink(target)
            observer.advance(name, -layer.size)
            _fetch(client, ref, layer, into, target, 0, observer, name, cancelled)
    except IntegrityError:
        into.unlink(target)
        raise
    except BaseException:
        if not resume:
            into.unlink(target)
        raise
    finally:
        observer.end(name)


def _fetch(
    client: RegistryClient,
    ref: Reference,
    layer: Descriptor,
    into: DirHandle,
    target: str,
    offset: int,
    observer: TransferObserver,
    name: str,
    cancelled: threading.Event | None,
) -> None:
    what = f"blob {layer.digest[:19]} ({name})"
    writer = VerifyingWriter(target, layer.digest, layer.size, what=what, offset=offset, into=into)
    observer.advance(name, offset)

    def attempt() -> None:
        nonlocal writer
        try:
            with client.open_blob(ref, layer, offset=writer.written, retry=False) as blob:
                if blob.offset != writer.written:  # the registry ignored Range: start over
                    observer.advance(name, -writer.written)
                    writer.abort()
                    writer = VerifyingWriter(target, layer.digest, layer.size, what=what, into=into)
                for chunk in blob.chunks():
                    if cancelled is not None and cancelled.is_set():
                        raise _Cancelled()
                    writer.write(chunk)
                    observer.advance(name, len(chunk))
        except TransferInterrupted as exc:
            raise RetryableFailure(exc) from None

    try:
        for _ in range(_MAX_RESUMES):
            if writer.written >= layer.size:
                break
            before = writer.written
            try:
                client.retry.run(attempt)
            except (NetworkError, RegistryError):
                if writer.written == before:
                    raise  # a whole retry budget without a byte of progress: give up
        writer.finish()
    finally:
        writer.abort()


class _Cancelled(Exception):
    """Another part of the transfer failed: stop this one (a download, a hash) at its next chunk."""


def download_into(
    client: RegistryClient,
    model: ResolvedModel,
    dest: Path,
    planned: Sequence[PlannedFile],
    observer: TransferObserver,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    cache: BlobCache | None = None,
    into: DirHandle | None = None,
    remove_on_failure: Callable[[], None] | None = None,
    before_commit: Callable[[list[tuple[str, Path]]], object] | None = None,
    after_commit: Callable[[Swap], object] | None = None,
) -> None:
    """Download, verify, then move every planned file into ``dest``; all or nothing.

    Without ``into``, DEST is locked here (``DEST/.ocimodel.lock``: one pull per DEST at a
    time) and removed again on failure if this pull created it. With ``into``, the caller
    holds the lock and ``into`` is the open directory to install into (DEST or a directory
    below it; ``dest`` is then its path, for messages); ``remove_on_failure`` removes it if
    the caller made it (not called while resumable partials remain in it).

    ``before_commit(files)`` sees every verified file (title, staged path) before any is moved
    into DEST, and may refuse them all by raising (e.g. ``--deny-unsafe``). ``after_commit(swap)``
    runs once all are in place and may remove more files or write state through ``swap``; if
    it raises, every file replaced or removed is put back and every new one taken away.

    Blobs already in ``cache`` are copied from it (re-verified); the others are downloaded into
    resumable partials, then added to the cache. Free space is checked first. See
    :mod:`ocimodel.destination` for what may be left in DEST after a failure (only
    ``DEST/.ocimodel*``, and only resumable partials).
    """
    check_destination(dest, [item.title for item in planned])
    tune_for_streaming()
    if into is None:
        existed = dest.exists()
        with DestinationLock(dest) as lock:
            _download_locked(
                client, model, lock.dir, planned, observer, concurrency, cache,
                None if existed else functools.partial(shutil.rmtree, dest, ignore_errors=True),
                before_commit, after_commit,
            )
    else:
        _download_locked(
            client, model, into, planned, observer, concurrency, cache, remove_on_failure, before_commit, after_commit
        )
    if cache is not None:
        for digest in {item.layer.digest for item in planned}:
            cache.index.remember_blob(model.reference.registry, model.reference.repository, digest)


def _download_locked(
    client: RegistryClient,
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
        _pull_blobs(client, model, workspace, planned, observer, concurrency, cache)
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
    client: RegistryClient,
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
        download_blob(
            client, model.reference, item.layer, partials, partial, observer, item.title, resume=True, cancelled=cancelled
        )
        partials.rename(partial, workspace.staging, staged)
        if cache is not None:
            cache.add(item.layer, workspace.staged(item.layer.digest))

    _run_all(fetch, list(by_digest.values()), concurrency, cancelled)


def _move_into_place(swap: Swap, workspace: Workspace, planned: Sequence[PlannedFile]) -> None:
    # Files sharing a digest were downloaded once: the last user moves it, others copy it.
    remaining: dict[str, int] = {}
    for item in planned:
        remaining[item.layer.digest] = remaining.get(item.layer.digest, 0) + 1
    for item in planned:
        remaining[item.layer.digest] -= 1
        swap.put(item.title, workspace.staged_name(item.layer.digest), item.mode, copy=bool(remaining[item.layer.digest]))
