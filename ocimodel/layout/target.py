"""The OCI image layout as a storage :class:`~ocimodel.storage.Target`, over a directory
(:class:`~.files.LayoutDir`) or a tar file (:class:`~.staged.ArchiveStore`).

Every manifest and blob read is checked as from a registry: a manifest against the digest its
index entry (or the reference) names and the size the entry declares, blobs through
:class:`~ocimodel.storage.VerifyingReader` or a verifying writer, and a blob file whose size is
not the descriptor's is refused before a byte is read. Referrers are kept as in a registry
without the referrers API: the ``sha256-<hex>`` fallback tag (written by
:mod:`ocimodel.referrers`), and every referrer is also an unnamed index entry, which is how
oras finds them; :meth:`LayoutTarget.scan_referrers` finds those of layouts oras wrote.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from .. import jsondoc
from ..descriptor import DOCKER_MANIFEST_LIST_V2, INDEX_V1, MANIFEST_V1, MAX_MANIFEST_SIZE, Descriptor, check_digest, media_type_of, sha256_digest
from ..errors import IntegrityError, NotFoundError, SchemaError, SizeMismatchError, UsageError
from ..storage import BlobStream, FetchedManifest, ManifestPutResult, OpenChunks, TargetRef, VerifyingReader
from .files import CHUNK, LayoutDir, Readable
from .index import INDEX_FILE, LAYOUT_FILE, MAX_INDEX_SIZE, MAX_LAYOUT_FILE_SIZE, LayoutIndex, check_layout_header, ref_name
from .names import LayoutReference, validate_ref_name

#: What ``oci:PATH`` means without a tag when writing (as ``host/repo`` means ``:latest``).
DEFAULT_TAG = "latest"
INDEX_TYPES = (INDEX_V1, DOCKER_MANIFEST_LIST_V2)


class LayoutStore(Protocol):
    """The files of a layout: a directory or an archive."""

    name: str

    def exists(self) -> bool: ...
    def read_file(self, name: str, max_size: int) -> bytes | None: ...
    def blob_size(self, digest: str) -> int | None: ...
    def open_blob(self, digest: str) -> AbstractContextManager[Readable | None]: ...
    def writer(self) -> LayoutDir: ...
    def close(self, *, commit: bool = True) -> None: ...


class _FileStream:
    """A blob file from ``offset`` to ``size``; an early end is an error, never a short read."""

    def __init__(self, handle: Readable, offset: int, size: int, what: str) -> None:
        self.offset, self._handle, self._size, self._what = offset, handle, size, what

    def chunks(self) -> Iterator[bytes]:
        left = self._size - self.offset
        while left > 0:
            data = self._handle.read(min(CHUNK, left))
            if not data:
                raise SizeMismatchError(f"{self._what}: the file ends {left} bytes short of its declared size")
            left -= len(data)
            yield data


class LayoutTarget:
    """An OCI image layout as a :class:`~ocimodel.storage.Target` (``name``: ``oci:PATH``)."""

    def __init__(self, store: LayoutStore, reference: LayoutReference) -> None:
        self.store = store
        self.reference = reference

    @property
    def name(self) -> str:
        return self.reference.name

    def __repr__(self) -> str:
        return f"LayoutTarget({self.name!r})"

    # -- the index -----------------------------------------------------------------------------------

    def _index(self, *, required: bool = False) -> LayoutIndex:
        """The checked index; an absent layout is empty (or NotFoundError if ``required``)."""
        header = self.store.read_file(LAYOUT_FILE, MAX_LAYOUT_FILE_SIZE)
        if header is None:
            if not self.store.exists() or self._empty_directory():
                if required:
                    raise NotFoundError(f"{self.name}: no OCI image layout there")
                return LayoutIndex()
            if self.reference.archive:  # a tar file that is no layout, or one cut short
                raise IntegrityError(f"{self.name}: the archive holds no oci-layout file; not an OCI image layout")
            raise UsageError(f"{self.name}: not an OCI image layout (no oci-layout file)")
        check_layout_header(header, self.name)
        raw = self.store.read_file(INDEX_FILE, MAX_INDEX_SIZE)
        if raw is None:
            raise IntegrityError(f"{self.name}: the layout has no index.json")
        return LayoutIndex.parse(raw, self.name)

    def _empty_directory(self) -> bool:
        """An empty directory, or one a writer is creating a layout in (another thread of this
        command, or another process): no layout yet, so nothing in it."""
        import os

        path = self.reference.path
        if self.reference.archive or not os.path.isdir(path) or LayoutDir(path, self.name).foreign_content():
            return False
        # A creating writer writes an empty index.json, then oci-layout: an index with entries
        # and no oci-layout is a broken layout, not one being made.
        raw = self.store.read_file(INDEX_FILE, MAX_INDEX_SIZE)
        return raw is None or not LayoutIndex.parse(raw, self.name).entries

    def default_ref(self) -> TargetRef:
        """What ``oci:PATH`` names without a tag: ``latest`` if the layout has it (or is new),
        else its only model (skopeo's rule, for layouts written without a name), else a
        usage error listing the tags."""
        index = self._index()
        if not index.entries or index.find(DEFAULT_TAG):
            return TargetRef(self, tag=DEFAULT_TAG)
        # Models only: not the referrers (signatures, records), not the fallback indexes.
        referrers = {d.digest for d in self._all_referrers(index)}
        models = [e for e in index.manifests() if e.media_type not in INDEX_TYPES and e.digest not in referrers]
        if len({e.digest for e in models}) == 1:
            return TargetRef(self, digest=models[0].digest)
        tags = sorted({n for e in models if (n := ref_name(e))})
        raise UsageError(
            f"{self.name} holds {len({e.digest for e in models})} models: name one as {self.name}:TAG"
            f" (tags: {', '.join(tags) or 'none'})"
        )

    # -- manifests and tags ----------------------------------------------------------------------

    def resolve(self, reference: str) -> Descriptor | None:
        index = self._index()
        if reference.startswith("sha256:"):
            entry = index.by_digest(reference)
            if entry is None:
                size = self.store.blob_size(reference)
                if size is None or size > MAX_MANIFEST_SIZE:
                    return None
                raw = self._read_manifest(Descriptor(MANIFEST_V1, reference, size))
                return Descriptor(media_type_of(raw) or MANIFEST_V1, reference, size)
        else:
            entry = index.find(reference)
            if entry is None:
                return None
        return Descriptor(entry.media_type, entry.digest, entry.size)

    def _read_manifest(self, descriptor: Descriptor) -> bytes:
        return self._read_whole(descriptor, MAX_MANIFEST_SIZE, f"manifest {descriptor.digest} in {self.name}")

    def _read_whole(self, descriptor: Descriptor, max_size: int, what: str) -> bytes:
        """A small blob in memory, checked against its size and digest."""
        if descriptor.size > max_size:
            raise IntegrityError(f"{what}: {descriptor.size} bytes declared, over the {max_size}-byte limit; refusing it")
        with self._open(descriptor) as handle:
            data = handle.read(descriptor.size + 1)
        if len(data) != descriptor.size:
            raise SizeMismatchError(f"{what}: {len(data)} bytes, not {descriptor.size}")
        check_digest(data, descriptor.digest, what)
        return data

    @contextmanager
    def _open(self, descriptor: Descriptor) -> Iterator[Readable]:
        where = f"{self.name}: blobs/sha256/{descriptor.digest.partition(':')[2]}"
        with self.store.open_blob(descriptor.digest) as handle:
            if handle is None:
                raise NotFoundError(f"{where} is missing (the layout lists it but does not hold it)")
            size = self.store.blob_size(descriptor.digest)
            if size != descriptor.size:
                raise SizeMismatchError(f"{where} holds {size} bytes, {descriptor.size} declared; refusing it")
            yield handle

    def fetch_manifest(self, reference: str, accept: Sequence[str] | None = None) -> FetchedManifest:
        descriptor = self.resolve(reference)
        if descriptor is None and not self.store.exists():
            raise NotFoundError(f"{self.name}: no such layout ({self.reference.path!r} does not exist)")
        if descriptor is None:
            raise NotFoundError(f"{self.name}:{reference}: no such manifest in the layout")
        raw = self._read_manifest(descriptor)
        return FetchedManifest(raw=raw, media_type=media_type_of(raw) or descriptor.media_type, digest=descriptor.digest)

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> ManifestPutResult:
        if tag is not None:
            validate_ref_name(tag)
        digest = sha256_digest(raw)
        writer = self.store.writer()
        self._index()  # refuse to amend a layout that does not read
        writer.write_blob(digest, len(raw), [raw])
        artifact_type = _artifact_type(raw)
        entry = Descriptor(media_type=media_type, digest=digest, size=len(raw), artifact_type=artifact_type)
        with writer.lock():
            index = self._index()
            amended = index.with_entry(entry, tag)
            if amended != index or writer.read_file(INDEX_FILE, MAX_INDEX_SIZE) is None:
                writer.write_file(INDEX_FILE, amended.to_raw())
        return ManifestPutResult(digest=digest)

    def tags(self) -> list[str]:
        return self._index(required=True).names()

    def referrers(self, subject_digest: str) -> list[Descriptor] | None:
        return None  # no native index: the fallback tag is kept (and scan_referrers adds the rest)

    def scan_referrers(self, subject_digest: str) -> list[Descriptor]:
        """Index entries whose manifest's ``subject`` is ``subject_digest`` (how oras-go finds
        referrers in a layout); entries that do not read are skipped here, refused when fetched."""
        return [d for d in self._all_referrers(self._index()) if d.annotations.get("subject") == subject_digest]

    def _all_referrers(self, index: LayoutIndex) -> list[Descriptor]:
        found = []
        for entry in index.manifests():
            if entry.media_type != MANIFEST_V1 or entry.size > MAX_MANIFEST_SIZE:
                continue
            try:
                obj = jsondoc.load_object(self._read_manifest(entry), "manifest", max_bytes=MAX_MANIFEST_SIZE)
            except (IntegrityError, NotFoundError, SchemaError):
                continue
            subject = obj.get("subject")
            if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                found.append(Descriptor(entry.media_type, entry.digest, entry.size, annotations={"subject": subject["digest"]},
                                        artifact_type=_artifact_type_of(obj)))
        return found

    def delete_manifest(self, digest: str) -> None:
        writer = self.store.writer()
        with writer.lock():
            index = self._index(required=True)
            if index.by_digest(digest) is None and self.store.blob_size(digest) is None:
                raise NotFoundError(f"{self.name}@{digest}: no such manifest in the layout")
            writer.write_file(INDEX_FILE, index.without_digest(digest).to_raw())
            writer.remove_blob(digest)

    def delete_tag(self, tag: str) -> None:
        writer = self.store.writer()
        with writer.lock():
            index = self._index(required=True)
            if index.find(tag) is None:
                raise NotFoundError(f"{self.name}:{tag}: no such tag")
            writer.write_file(INDEX_FILE, index.without_name(tag).to_raw())

    # -- blobs ---------------------------------------------------------------------------------------

    @contextmanager
    def open_blob(self, descriptor: Descriptor, what: str | None = None) -> Iterator[VerifyingReader]:
        label = what or f"blob {descriptor.digest[:19]} in {self.name}"
        with self._open(descriptor) as handle:
            yield VerifyingReader(descriptor, _FileStream(handle, 0, descriptor.size, label), label)

    def read_blob(
        self, descriptor: Descriptor, consume: Callable[[BlobStream], None], *, position: Callable[[], int]
    ) -> None:
        """One read from ``position()`` (a file does not break mid-way as a connection does)."""
        start = position()
        if start >= descriptor.size:
            return
        label = f"blob {descriptor.digest[:19]} in {self.name}"
        with self._open(descriptor) as handle:
            handle.seek(start)
            consume(_FileStream(handle, start, descriptor.size, label))

    def fetch_blob_bytes(self, descriptor: Descriptor, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        return self._read_whole(descriptor, max_size, f"blob {descriptor.digest[:19]} in {self.name}")

    def blob_exists(self, digest: str) -> bool:
        return self.store.blob_size(digest) is not None

    def push_blob(
        self, descriptor: Descriptor, open_chunks: OpenChunks, *, progress: Callable[[int], None] | None = None
    ) -> bool:
        if self.store.blob_size(descriptor.digest) == descriptor.size:
            return False
        return self.store.writer().write_blob(descriptor.digest, descriptor.size, _counted(open_chunks(), progress))

    def push_blob_bytes(self, media_type: str, data: bytes) -> Descriptor:
        descriptor = Descriptor.from_bytes(media_type, data)
        self.push_blob(descriptor, lambda: [data])
        return descriptor

    def close(self, *, commit: bool = True) -> None:
        """Write out what an archive target staged (if ``commit``); nothing for a directory."""
        self.store.close(commit=commit)


def _counted(chunks: Iterable[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk


def _artifact_type_of(obj: dict[str, object]) -> str | None:
    found = obj.get("artifactType")
    if isinstance(found, str):
        return found
    config = obj.get("config")
    media = config.get("mediaType") if isinstance(config, dict) else None
    return media if isinstance(media, str) else None


def _artifact_type(raw: bytes) -> str | None:
    """The artifact type an index entry carries (oras-go keeps it there: cheap listing; never
    trusted when reading)."""
    try:
        return _artifact_type_of(jsondoc.load_object(raw, "manifest", max_bytes=MAX_MANIFEST_SIZE))
    except SchemaError:
        return None


def open_layout(reference: LayoutReference) -> LayoutTarget:
    """The layout ``reference`` names, as a Target (nothing is read or created yet)."""
    if reference.archive:
        from .staged import ArchiveStore

        store: LayoutStore = ArchiveStore(reference.path, reference.name)
    else:
        store = LayoutDir(reference.path, reference.name)
    return LayoutTarget(store, reference)
