"""The copy use-case: a model and everything attached to it, from one Target to another, with
every digest kept.

A copy walks the graph from the manifest the source names: its config and layers (an index:
its manifests), then, unless told not to, its referrers (signatures, promotion records, scan
records, anything whose ``subject`` is it), and theirs, recursively. Bytes are never rewritten,
so ``verify`` and ``history`` on the copy answer as on the source.

Order makes it resumable and safe to interrupt: blobs before the manifest that names them, a
manifest before it is listed as a referrer, tags last (a tag on the destination appears only
once everything attached to it is there). A manifest the destination already has is not
descended into (it was stored after everything under it), a blob it has is skipped (HEAD), so
a re-run moves only what is missing and a copy of an unchanged model moves nothing but a few
manifests. Blobs stream from source to destination with nothing on disk, hashed on the way;
the last piece is held back until the digest matched, so a blob that does not match its digest
is never completed at the destination (a registry also checks it: ``PUT ?digest=``). Within one
registry, blobs are mounted from the source repository instead of uploaded.

What the source lists is not trusted: a listed referrer whose manifest does not name the
subject is not copied; the walk is bounded (:data:`MAX_MANIFESTS`, :data:`MAX_DEPTH`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..descriptor import (
    DOCKER_MANIFEST_LIST_V2,
    INDEX_V1,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    Index,
    Manifest,
    media_type_of,
)
from ..errors import (
    NetworkError,
    NotFoundError,
    OcimodelError,
    SchemaError,
    StalledError,
    UnsafeContentError,
    UsageError,
)
from ..jsondoc import load_object
from ..referrers import list_referrers, merge_into_fallback
from ..storage import FetchedManifest, Mounter, Target, TargetRef
from .allocator import tune_for_streaming
from .observer import NullObserver, TransferObserver
from .parallel import DEFAULT_CONCURRENCY, run_all

logger = logging.getLogger(__name__)

#: Manifests one copy may walk (the model, its referrers, theirs...): a hostile source could
#: list referrers without end.
MAX_MANIFESTS = 10_000
#: Index nesting, and referrers of referrers, followed at most this deep.
MAX_DEPTH = 32
#: Attempts at one blob when the *source* breaks off (a destination's failures are retried by
#: the destination itself); each attempt starts the blob over.
SOURCE_ATTEMPTS = 3

#: Fallback indexes updated side by side at the end of a copy.
MAX_LISTINGS_AT_ONCE = 8
#: Pieces (each at most ~1 MiB) read ahead of the upload, per blob in flight.
QUEUE_PIECES = 8

COPIED, SKIPPED, MOUNTED = "copied", "skipped", "mounted"


@dataclass(frozen=True)
class CopiedItem:
    """One blob or manifest of a copy and what happened to it: ``copied`` (its bytes moved),
    ``skipped`` (the destination had it), ``mounted`` (from another repository of the registry)."""

    kind: str  # "blob" or "manifest"
    digest: str
    size: int
    action: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "digest": self.digest, "size": self.size, "action": self.action}


@dataclass(frozen=True)
class Carry:
    """What goes with a model beyond its graph: tags to set on the destination (tag -> digest,
    set in this order after everything else) and more manifests to copy with their referrers
    (a stage's older promotion records, say)."""

    tags: Mapping[str, str] = field(default_factory=dict)
    manifests: Sequence[str] = ()


@dataclass(frozen=True)
class CopyResult:
    """What :func:`copy` did."""

    source: str
    destination: str
    digest: str
    media_type: str
    tags: list[str]
    referrers: list[str]
    items: list[CopiedItem]

    def _count(self, kind: str, action: str) -> int:
        return sum(1 for i in self.items if i.kind == kind and i.action == action)

    def _bytes(self, action: str) -> int:
        return sum(i.size for i in self.items if i.kind == "blob" and i.action == action)

    @property
    def copied_blobs(self) -> int:
        return self._count("blob", COPIED)

    @property
    def skipped_blobs(self) -> int:
        return self._count("blob", SKIPPED)

    @property
    def mounted_blobs(self) -> int:
        return self._count("blob", MOUNTED)

    @property
    def copied_manifests(self) -> int:
        return self._count("manifest", COPIED)

    @property
    def skipped_manifests(self) -> int:
        return self._count("manifest", SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "digest": self.digest,
            "mediaType": self.media_type,
            "tags": list(self.tags),
            "referrers": list(self.referrers),
            "blobs": {
                "copied": self.copied_blobs, "skipped": self.skipped_blobs, "mounted": self.mounted_blobs,
                "copiedBytes": self._bytes(COPIED), "skippedBytes": self._bytes(SKIPPED),
                "mountedBytes": self._bytes(MOUNTED),
            },
            "manifests": {"copied": self.copied_manifests, "skipped": self.skipped_manifests},
            "items": [i.to_dict() for i in self.items],
        }


@dataclass(frozen=True)
class _Node:
    """What a manifest points at: its subject, its blobs, the manifests it lists (an index)."""

    subject: Descriptor | None
    blobs: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    artifact_type: str | None
    annotations: dict[str, str]


def _node(fetched: FetchedManifest, what: str) -> _Node:
    """Parse a manifest or index (each field validated) into what a copy follows."""
    media_type = fetched.media_type or media_type_of(fetched.raw) or ""
    if media_type in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        index = Index.parse(fetched.raw, what)
        found = load_object(fetched.raw, what, max_bytes=MAX_MANIFEST_SIZE).get("subject")  # Index keeps none
        subject = Descriptor.from_dict(found, f"{what} subject") if found is not None else None
        return _Node(subject, (), index.manifests, index.artifact_type, index.annotations)
    if media_type in MANIFEST_MEDIA_TYPES:
        manifest = Manifest.parse(fetched.raw, what)
        blobs = (manifest.config, *manifest.layers)
        return _Node(manifest.subject, blobs, (), manifest.artifact_type, manifest.annotations)
    raise SchemaError(f"{what} has media type {media_type!r}, which ocimodel cannot copy")


def _index_entry(fetched: FetchedManifest, node: _Node) -> Descriptor:
    """A referrer's entry in its subject's referrers index (as :func:`ocimodel.referrers.index_entry`
    writes it: from the referrer's own manifest, not from the source's listing)."""
    return Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw),
                      artifact_type=node.artifact_type, annotations=dict(node.annotations))


class _SourceFailed(Exception):
    """Raised out of an upload's body when the source, not the destination, failed: the
    destination's client must not take it for its own failure (nor retry it as one)."""

    def __init__(self, error: OcimodelError) -> None:
        super().__init__(str(error))
        self.error = error


def _same_registry(src: Target, dst: Target) -> str | None:
    """The source repository to mount from, if both targets are repositories of one registry."""
    if isinstance(src, Mounter) and isinstance(dst, Mounter) and src.registry == dst.registry:
        return src.repository if src.repository != dst.repository else None
    return None


class Copier:
    """One copy from ``src`` to ``dst``: remembers what it moved, so each thing moves once."""

    def __init__(
        self, src: Target, dst: Target, *, observer: TransferObserver | None = None,
        concurrency: int = DEFAULT_CONCURRENCY, max_manifests: int = MAX_MANIFESTS,
    ) -> None:
        self.src, self.dst = src, dst
        self.observer = observer or NullObserver()
        self.concurrency = max(1, concurrency)
        self.max_manifests = max_manifests
        self.mount_from = _same_registry(src, dst)
        self.items: list[CopiedItem] = []
        self.referrers: list[str] = []
        self._referrers: set[str] = set()
        self._lock = threading.Lock()
        self._blobs: dict[str, Future[None]] = {}  # claimed by the task moving it
        self._manifests: set[str] = set()  # claimed by this copy (stored, or found at the destination)

    def _record(self, kind: str, digest: str, size: int, action: str) -> None:
        with self._lock:
            self.items.append(CopiedItem(kind, digest, size, action))

    # -- manifests -----------------------------------------------------------------------------

    def manifest(self, reference: str, depth: int = 0) -> FetchedManifest:
        """Copy the manifest ``reference`` names (a digest, or a tag of the source) and
        everything it references, but not its referrers; returns it as fetched (verified)."""
        fetched = self.src.fetch_manifest(reference)
        self.copy_fetched(fetched, depth)
        return fetched

    def copy_fetched(self, fetched: FetchedManifest, depth: int = 0) -> None:
        """:meth:`manifest` for a manifest already fetched (and verified)."""
        digest = fetched.digest
        with self._lock:
            if digest in self._manifests:
                return
            if len(self._manifests) >= self.max_manifests:
                raise UnsafeContentError(
                    f"{self.src.name} lists more than {self.max_manifests} manifests under the copied model; "
                    "refusing to go on"
                )
            self._manifests.add(digest)
        if depth > MAX_DEPTH:
            raise UnsafeContentError(f"{self.src.name}: manifests nest deeper than {MAX_DEPTH} levels; refusing to go on")
        if self.dst.resolve(digest) is not None:
            # Stored after everything under it (by this copy or any writer): nothing to descend into.
            self._record("manifest", digest, len(fetched.raw), SKIPPED)
            return
        node = _node(fetched, f"manifest {digest} in {self.src.name}")
        for child in node.children:
            self.manifest(child.digest, depth + 1)
        run_all(self.blob, list(node.blobs), self.concurrency)
        self.dst.push_manifest(fetched.raw, fetched.media_type)
        self._record("manifest", digest, len(fetched.raw), COPIED)

    # -- blobs ---------------------------------------------------------------------------------

    def blob(self, descriptor: Descriptor) -> None:
        """Copy one blob unless the destination has it; a blob another task of this copy is
        moving is waited for (a manifest naming it must not be stored before it)."""
        with self._lock:
            claimed = self._blobs.get(descriptor.digest)
            if claimed is None:
                mine: Future[None] = Future()
                self._blobs[descriptor.digest] = mine
        if claimed is not None:
            claimed.result()
            return
        name = f"copy {descriptor.title or descriptor.digest[7:19]}"
        self.observer.begin(name, descriptor.size)
        try:
            action = self._blob_attempts(descriptor, partial(self.observer.advance, name))
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            self.observer.end(name)
        mine.set_result(None)
        self._record("blob", descriptor.digest, descriptor.size, action)

    def _blob_attempts(self, descriptor: Descriptor, progress: Callable[[int], None]) -> str:
        opened: list[bool] = []

        def open_chunks() -> Iterator[bytes]:
            opened.append(True)
            return self._stream(descriptor)

        for attempt in range(1, SOURCE_ATTEMPTS + 1):
            try:
                if self.mount_from is not None and isinstance(self.dst, Mounter):
                    sent = self.dst.push_blob_mounting(descriptor, open_chunks, self.mount_from, progress=progress)
                else:
                    sent = self.dst.push_blob(descriptor, open_chunks, progress=progress)
            except _SourceFailed as failed:
                retry = isinstance(failed.error, (NetworkError, StalledError)) and attempt < SOURCE_ATTEMPTS
                if not retry:
                    raise failed.error from None
                logger.info("source broke off %s (%s); starting it over", descriptor.digest, failed.error)
                continue
            if not sent:
                return SKIPPED
            return COPIED if opened else MOUNTED
        raise AssertionError("unreachable")

    def _stream(self, descriptor: Descriptor) -> Iterator[bytes]:
        """The blob from the source, verified on the way: the last piece comes only after the
        whole blob matched its size and digest, so a wrong blob never completes an upload.

        A second thread reads and hashes (both release the GIL) while this one sends, through
        a queue of at most :data:`QUEUE_PIECES` pieces: the two sides overlap in flat memory.
        """
        pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUE_PIECES)
        stop = threading.Event()

        def put(item: bytes | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    pieces.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                with self.src.open_blob(descriptor, f"blob {descriptor.digest} in {self.src.name}") as reader:
                    for piece in reader.pieces():
                        if not put(piece):
                            return  # the upload stopped: stop reading
                    reader.verify()
                put(None)
            except BaseException as exc:  # handed to the sending side, which raises it
                put(exc)

        reading = threading.Thread(target=read, name="ocimodel-copy-read", daemon=True)
        reading.start()
        try:
            held: bytes | None = None
            while (item := pieces.get()) is not None:
                if isinstance(item, OcimodelError):
                    raise _SourceFailed(item)
                if isinstance(item, BaseException):
                    raise item
                if held is not None:
                    yield held
                held = item
            if held is not None:
                yield held
        finally:
            stop.set()
            reading.join()

    # -- referrers -----------------------------------------------------------------------------

    def attached(self, subject: str, depth: int = 0) -> None:
        """Copy everything attached to ``subject`` (already copied), recursively, and make it
        findable from the subject at the destination."""
        waiting: deque[tuple[str, int]] = deque([(subject, depth)])
        listings: list[tuple[str, list[Descriptor]]] = []
        while waiting:
            current, level = waiting.popleft()
            if level > MAX_DEPTH:
                raise UnsafeContentError(
                    f"{self.src.name}: referrers of referrers go deeper than {MAX_DEPTH} levels; refusing to go on"
                )
            entries = []
            for listed in list_referrers(self.src, current):
                entry = self._referrer(current, listed.digest, level)
                if entry is not None:
                    entries.append(entry)
                    waiting.append((entry.digest, level + 1))
            if entries:
                listings.append((current, entries))
        # Every referrer is stored by now; each subject's index update waits to settle, so
        # they run side by side rather than one settle time after another.
        run_all(lambda pair: self._list_at_destination(*pair), listings, min(len(listings), MAX_LISTINGS_AT_ONCE))

    def _referrer(self, subject: str, digest: str, level: int) -> Descriptor | None:
        """Copy the referrer ``digest`` of ``subject``; its entry for a referrers index, or
        None if it is not one (the source's list said so, its manifest does not)."""
        if digest in self._referrers:
            return None
        try:
            fetched = self.src.fetch_manifest(digest)
        except NotFoundError:
            # A dangling entry (a deleted signature, say): the source cannot give it, and the
            # destination will not list it. A referrer that fails its digest still stops the copy.
            logger.warning("%s lists %s as a referrer of %s, but has no such manifest; not copied",
                           self.src.name, digest, subject)
            return None
        node = _node(fetched, f"referrer {digest} of {subject} in {self.src.name}")
        if node.subject is None or node.subject.digest != subject:
            logger.warning("%s lists %s as a referrer of %s, but its subject says otherwise; not copied",
                           self.src.name, digest, subject)
            return None
        self.copy_fetched(fetched, level + 1)
        with self._lock:
            self.referrers.append(digest)
            self._referrers.add(digest)
        return _index_entry(fetched, node)

    def _list_at_destination(self, subject: str, entries: list[Descriptor]) -> None:
        """Make ``entries`` findable from ``subject`` at the destination: a store that indexes
        referrers did so when they were stored; else the fallback index gets what it lacks."""
        if self.dst.referrers(subject) is not None:
            return
        listed = {d.digest for d in list_referrers(self.dst, subject)}
        missing = [e for e in entries if e.digest not in listed]
        if missing:
            merge_into_fallback(self.dst, subject, missing)

    def record_with_subject(self, digest: str) -> None:
        """Copy a manifest that is a referrer of something this copy may not carry (an older
        promotion record of a stage): itself, findable from its subject, and its referrers."""
        fetched = self.manifest(digest)
        node = _node(fetched, f"manifest {digest} in {self.src.name}")
        if node.subject is not None:
            self._list_at_destination(node.subject.digest, [_index_entry(fetched, node)])
        self.attached(digest)

    # -- tags ----------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        """Whether this copy put ``digest`` at the destination (or found it there)."""
        return digest in self._manifests

    def tag(self, tag: str, digest: str) -> None:
        """Point ``tag`` at ``digest`` at the destination, unless it already does."""
        current = self.dst.resolve(tag)
        if current is not None and current.digest == digest:
            return
        fetched = self.src.fetch_manifest(digest)
        self.dst.push_manifest(fetched.raw, fetched.media_type, tag=tag)


def copy(
    source: TargetRef,
    destination: TargetRef,
    *,
    referrers: bool = True,
    carry: Callable[[str], Carry] | None = None,
    observer: TransferObserver | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> CopyResult:
    """Copy the manifest ``source`` names, with everything it references and (``referrers``)
    everything attached to it, to ``destination``; see :func:`ocimodel.api.copy`.

    The destination's tag is its own, else the source's tag (a source digest with no tag given
    for the destination copies by digest only); a destination digest must be the source's.
    ``carry(digest)`` says which other tags (and the manifests they need) go along.
    """
    tune_for_streaming()
    copier = Copier(source.target, destination.target, observer=observer, concurrency=concurrency)
    root = source.target.fetch_manifest(source.identifier)
    if destination.digest and destination.digest != root.digest:
        raise UsageError(f"{source} is {root.digest}, not the {destination.digest} the destination names")
    if referrers and destination.target.resolve(root.digest) is None:
        # A store's first write happens alone (an OCI layout being created cannot be read
        # until it is): the root's first blob, the config, before anything runs side by side.
        first = _node(root, f"manifest {root.digest} in {source.target.name}").blobs[:1]
        run_all(copier.blob, list(first), 1)
    # The referrers (small, but each subject's fallback index waits to settle) move alongside
    # the model's blobs: a store takes a referrer before its subject, and tags come last anyway.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocimodel-referrers") as side:
        attached = side.submit(copier.attached, root.digest) if referrers else None
        copier.copy_fetched(root)  # on failure, leaving the block waits for the side task
        if attached is not None:
            attached.result()
    tags: dict[str, str] = {}
    dst_tag = destination.tag if destination.tag or destination.digest else source.tag
    if dst_tag:
        tags[dst_tag] = root.digest
    if carry is not None:
        extra = carry(root.digest)
        if referrers:
            for digest in extra.manifests:
                copier.record_with_subject(digest)
        for tag, digest in extra.tags.items():
            if copier.has(digest):  # a history tag goes only with the records it needs
                tags.setdefault(tag, digest)
    for tag, digest in tags.items():
        copier.tag(tag, digest)
    return CopyResult(
        source=str(source), destination=str(destination), digest=root.digest, media_type=root.media_type,
        tags=list(tags), referrers=list(copier.referrers), items=list(copier.items),
    )
