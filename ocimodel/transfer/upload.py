"""The blob phase of a push: hash each file (or take its digest from the digest cache), upload
the blobs the target lacks (streamed, concurrently; mounted from another repository when the
cache knows one that has it, uploaded while hashed when large), then the config and manifest.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

from ..config import FileInfo, ModelConfig
from ..descriptor import ANNOTATION_TITLE, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, Descriptor, Manifest
from ..storage import Mounter, OpenChunks, StreamedUploadFailed, StreamingPusher, Target
from .allocator import tune_for_streaming
from .cache import BlobCache
from .files import SourceFile, file_chunks, sha256_file
from .observer import StoppableObserver, TransferObserver
from .parallel import DEFAULT_CONCURRENCY, run_all

logger = logging.getLogger(__name__)

# Files this large that need hashing are uploaded while hashed (the hash off the critical
# path); smaller ones are hashed first, which costs little and keeps the simplest path.
STREAM_MIN_SIZE = 64 * 1024 * 1024
# Blobs under this size are latency-bound (a few round trips, few bytes): up to SMALL_IN_FLIGHT
# of them and of the existence checks go at once; larger ones are bounded by ``concurrency``.
SMALL_BLOB = 4 * 1024 * 1024
SMALL_IN_FLIGHT = 8


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
    target: Target, src: SourceFile, layer: Descriptor, observer: TransferObserver, cache: BlobCache | None,
    *, checked: bool = False,
) -> bool:
    """Upload one file's blob unless the target has it; True if sent (or mounted)."""
    name = f"push {src.title}"
    observer.begin(name, layer.size)

    def open_chunks() -> Iterable[bytes]:
        for chunk in file_chunks(src.path, layer.size):
            observer.advance(name, len(chunk))
            yield chunk

    try:
        return _push_one(target, layer, open_chunks, cache, checked)
    finally:
        observer.end(name)


def small_workers(concurrency: int) -> int:
    """Workers for existence checks and small blobs: ``concurrency`` 1 stays one request at a
    time (asked for explicitly); otherwise at least SMALL_IN_FLIGHT, since those are latency-bound."""
    return concurrency if concurrency <= 1 else max(concurrency, SMALL_IN_FLIGHT)


@runtime_checkable
class PushPlanner(Protocol):
    """A target that lets a push save round trips (a registry): HEAD with the token the uploads
    reuse, and upload a blob already known to be missing without a HEAD of its own."""

    def blob_exists_for_push(self, digest: str) -> bool: ...

    def push_blob(
        self, descriptor: Descriptor, open_chunks: OpenChunks, *, progress: Callable[[int], None] | None = None,
        checked: bool = False,
    ) -> bool: ...

    def push_blob_bytes(self, media_type: str, data: bytes, *, checked: bool = False) -> Descriptor: ...


def push_files(
    target: Target,
    sources: Sequence[SourceFile],
    observer: TransferObserver,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    cache: BlobCache | None = None,
    stream_min: int = STREAM_MIN_SIZE,
) -> PushedLayers:
    """Hash and upload every file; returns the layers (in the order of ``sources``).

    A store needs a blob's digest to check whether it has it and to commit it (a registry:
    HEAD, ``PUT ?digest=``), so the simple way reads a file twice: hash, then upload. That
    stays for files the digest cache knows (no hashing at all) and for small ones. A file of
    ``stream_min`` bytes or more that must be hashed is instead uploaded *while* it is hashed
    when the target can (:class:`~ocimodel.storage.StreamingPusher`, :func:`_push_streamed`):
    hashing leaves the critical path.

    Round trips (a registry, :class:`PushPlanner`): the other files are hashed and their
    existence checked all together first (:func:`small_workers` at a time),
    then only the missing blobs are uploaded,
    largest first. At most ``concurrency`` blobs of ``SMALL_BLOB`` bytes or more are in flight
    (memory and disk bandwidth); smaller ones fill up to ``SMALL_IN_FLIGHT`` workers.
    """
    tune_for_streaming()
    claimed: set[str] = set()
    lock = threading.Lock()
    planner = target if isinstance(target, PushPlanner) else None
    known = [cache.index.lookup_file(s.path) if cache is not None else None for s in sources]
    workers = small_workers(concurrency) if planner is not None else concurrency

    def claim(digest: str) -> bool:
        """True for the first file with this content (identical files: one upload)."""
        with lock:
            mine = digest not in claimed
            claimed.add(digest)
            return mine

    def streams(src: SourceFile, known: str | None) -> bool:
        return known is None and src.size >= stream_min and isinstance(target, StreamingPusher) and target.streams_uploads()

    streamed = [i for i, s in enumerate(sources) if streams(s, known[i])]
    rest = [i for i in range(len(sources)) if i not in set(streamed)]

    def check(i: int) -> tuple[Descriptor, bool | None]:
        """The layer, and None (another file's blob), False (present) or True (to upload)."""
        layer = _layer(sources[i], known[i] or _digest_of(sources[i], observer, cache))
        if not claim(layer.digest):
            return layer, None
        if planner is None:
            return layer, True  # push_blob checks
        return layer, not planner.blob_exists_for_push(layer.digest)

    checked = dict(zip(rest, run_all(check, rest, workers)))
    big = threading.Semaphore(max(concurrency, 1))

    def send(i: int) -> tuple[Descriptor, bool | None]:
        src = sources[i]
        with big if src.size >= SMALL_BLOB or i not in checked else contextlib.nullcontext():
            if i not in checked:
                if streams(src, None):
                    return _push_streamed(target, target, src, observer, cache, claim)  # type: ignore[arg-type]
                # Another streamed upload was refused meanwhile: hash first, like the rest.
                layer = _layer(src, _digest_of(src, observer, cache))
                return layer, _upload_file(target, src, layer, observer, cache) if claim(layer.digest) else None
            layer, todo = checked[i]
            if not todo:
                if todo is False:
                    _remember(target, layer.digest, cache)
                return layer, todo
            return layer, _upload_file(target, src, layer, observer, cache, checked=planner is not None)

    todo = sorted(streamed + [i for i, (_, t) in checked.items() if t], key=lambda i: -sources[i].size)
    sent = dict(zip(todo, run_all(send, todo, workers)))
    results = [sent.get(i) or checked[i] for i in range(len(sources))]
    layers = [layer for layer, _ in results]
    outcomes = [r for _, r in results if r is not None]
    return PushedLayers(
        layers=layers,
        files=file_entries(sources, layers),
        uploaded=sum(1 for r in outcomes if r),
        skipped=sum(1 for r in outcomes if not r),
    )


def _push_streamed(
    target: Target,
    pusher: StreamingPusher,
    src: SourceFile,
    observer: TransferObserver,
    cache: BlobCache | None,
    claim: Callable[[str], bool],
) -> tuple[Descriptor, bool | None]:
    """Upload ``src`` to ``target`` (its ``pusher`` side) while a second thread hashes it; same
    result as hash-then-upload.

    The hashing thread, once it knows the digest, does what the simple path does before
    uploading: skip a blob another file of this push claimed, HEAD the registry, try a
    cross-repository mount. If any of those settles it, the running upload is abandoned (a
    partial upload is never committed: only ``PUT ?digest=`` commits). If the store refuses
    the streamed upload, it is redone the simple way with the digest now known, and the target
    remembers not to stream there again.
    """
    outcome: list[bool | None] = []  # set by the hashing thread when the upload is not needed
    digest_known: Future[str] = Future()
    decision: Future[str | None] = Future()
    stop_hashing = threading.Event()  # the upload failed: do not finish hashing a huge file for nothing

    def hash_and_check() -> None:
        try:
            digest = _digest_of(src, StoppableObserver(observer, stop_hashing), cache)
        except BaseException as exc:
            digest_known.set_exception(exc)
            decision.set_exception(exc)
            return
        digest_known.set_result(digest)
        try:
            if not claim(digest):
                outcome.append(None)
            elif _exists(target, digest):
                outcome.append(False)
            elif _mount(target, digest, cache):
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
            digest = pusher.push_blob_streamed(
                src.size, functools.partial(file_chunks, src.path, src.size), decision,
                what=f"file {src.title}", progress=functools.partial(observer.advance, name),
            )
        except StreamedUploadFailed as exc:
            logger.info("streamed upload of %s refused (%s); uploading it after hashing instead", src.title, exc)
            pusher.stop_streaming_uploads()
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
        return layer, _upload_file(target, src, layer, observer, cache)
    if outcome and outcome[0] is None:
        return layer, None
    _remember(target, layer.digest, cache)
    return layer, True if digest is not None else outcome[0]


def _exists(target: Target, digest: str) -> bool:
    """HEAD the blob; on a registry with the push token the upload would use anyway."""
    return target.blob_exists_for_push(digest) if isinstance(target, PushPlanner) else target.blob_exists(digest)


def _mount_sources(target: Target, digest: str, cache: BlobCache | None) -> list[str]:
    """Repositories of the target's registry the cache saw ``digest`` in (none if it cannot mount)."""
    if cache is None or not isinstance(target, Mounter):
        return []
    return cache.index.repositories_with(target.registry, digest, exclude=target.repository)


def _remember(target: Target, digest: str, cache: BlobCache | None) -> None:
    """Note in the cache that ``target`` holds ``digest`` (a later push elsewhere may mount it)."""
    if cache is not None and isinstance(target, Mounter):
        cache.index.remember_blob(target.registry, target.repository, digest)


def _mount(target: Target, digest: str, cache: BlobCache | None) -> bool:
    """Mount ``digest`` from a repository of the same registry the cache saw it in."""
    sources = _mount_sources(target, digest, cache)
    if not sources or not isinstance(target, Mounter) or not target.mount_blob(digest, sources[0]):
        return False
    _remember(target, digest, cache)
    return True


def _push_one(
    target: Target, layer: Descriptor, open_chunks: OpenChunks, cache: BlobCache | None, checked: bool = False
) -> bool:
    """Push one blob, mounting it from a repository the cache saw it in; True if sent or mounted.
    ``checked``: the target is known to lack it (a :class:`PushPlanner` uploads without a HEAD)."""
    sources = _mount_sources(target, layer.digest, cache)
    if sources and isinstance(target, Mounter):
        # One mount attempt: if the registry refuses it, the POST turns into a normal upload.
        sent = target.push_blob_mounting(layer, open_chunks, sources[0])
    elif checked and isinstance(target, PushPlanner):
        sent = target.push_blob(layer, open_chunks, checked=True)
    else:
        sent = target.push_blob(layer, open_chunks)
    _remember(target, layer.digest, cache)
    return sent


def file_entries(sources: Sequence[SourceFile], layers: Sequence[Descriptor]) -> list[FileInfo]:
    """The config's file list."""
    return [FileInfo(path=s.title, digest=l.digest, size=l.size, mode=s.mode) for s, l in zip(sources, layers)]


def push_manifest(
    target: Target, tag: str, config: ModelConfig, layers: Sequence[Descriptor], annotations: dict[str, str],
    *, new_config: bool = False,
) -> Manifest:
    """Upload the config blob, then the manifest under ``tag``.

    ``new_config``: the config cannot be on the registry yet (it records the current time), so
    a registry gets no HEAD for it, one round trip less on the critical path. A wrong guess
    costs only the upload of a few bytes the registry already had.
    """
    data = config.to_bytes()
    if new_config and isinstance(target, PushPlanner):
        config_desc = target.push_blob_bytes(CONFIG_MEDIA_TYPE, data, checked=True)
    else:
        config_desc = target.push_blob_bytes(CONFIG_MEDIA_TYPE, data)
    manifest = Manifest.build(config_desc, list(layers), artifact_type=ARTIFACT_TYPE, annotations=annotations)
    target.push_manifest(manifest.raw, manifest.media_type, tag=tag)
    return manifest
