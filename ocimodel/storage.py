"""The storage interface: what push, pull, verify, sign, promote, history, lineage, scan and
tags talk to instead of a registry client.

A :class:`Target` is one repository's worth of content-addressed storage: manifests and blobs
by digest, tags naming manifests, and referrers (manifests whose ``subject`` is another). The
registry is one implementation (:class:`ocimodel.registry.target.RegistryTarget`); an OCI
image layout on disk is meant to be a second one, not a second code path. Capabilities only
some stores have are separate small protocols checked with ``isinstance``, as oras-go checks
for its ``registry.Mounter``: :class:`Mounter` (cross-repository blob mounts) and
:class:`StreamingPusher` (uploading a blob while its digest is still being computed).

Bytes from a Target are never trusted unverified: manifests come back checked against their
digest (:class:`FetchedManifest`), small blobs too (:meth:`Target.fetch_blob_bytes`), a whole
blob is read through a :class:`VerifyingReader` (the only thing :meth:`Target.open_blob`
yields), and a resumable read (:meth:`Target.read_blob`) goes into a verifying writer
(:class:`ocimodel.transfer.verify.VerifyingWriter`, which also hashes what a resumed file
already held). The size bound is the store's job: a stream never yields more than the
descriptor declares, and ends early only with an error.

Pure: no I/O of its own (protocols, the values they exchange, and the verifying reader).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import IO, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from .descriptor import MAX_MANIFEST_SIZE, Descriptor
from .errors import DigestMismatchError, InvalidReferenceError, SizeMismatchError
from .reference import validate_digest, validate_tag

#: ``open_chunks()``: a fresh iterable over a blob's whole content at each call (a retry reopens it).
OpenChunks = Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest exactly as it was stored, with its verified digest."""

    raw: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class ManifestPutResult:
    """What storing a manifest returned: the digest, and the subject the store indexed, if any.

    ``subject`` set means the store keeps a referrers index itself (a registry's referrers API
    answering ``OCI-Subject``); None means the caller must maintain the ``sha256-<hex>``
    fallback tag (see :mod:`ocimodel.referrers`).
    """

    digest: str
    subject: str | None = None


class BlobStream(Protocol):
    """An open blob, read once through :meth:`chunks`, starting at byte ``offset`` of the blob."""

    offset: int

    def chunks(self) -> Iterator[bytes]:
        """The pieces from ``offset`` on, never more than the descriptor's size in total."""
        ...


class VerifyingReader:
    """A whole blob read in pieces of the caller's choosing, checked against its descriptor.

    Like oras-go's ``content.VerifyReader``: the bytes are hashed as they are handed out;
    :meth:`verify` is the only way to learn they are good, and it refuses if the blob was not
    read to its end, is shorter or longer than declared, or hashes to another digest. A caller
    that stops early (a scanner judging a format from its header) has unverified bytes and
    must say so.
    """

    def __init__(self, descriptor: Descriptor, stream: BlobStream, what: str) -> None:
        if stream.offset != 0:
            raise ValueError("a VerifyingReader needs the blob from its first byte")
        algorithm, _, _ = descriptor.digest.partition(":")
        if algorithm != "sha256":
            raise DigestMismatchError(f"{what}: unsupported digest algorithm in {descriptor.digest!r}")
        self.descriptor = descriptor
        self.what = what
        self._chunks = stream.chunks()
        self._pending = b""
        self._hash = hashlib.sha256()
        self.read_bytes = 0  # handed out so far

    def _take(self, data: bytes) -> bytes:
        self._hash.update(data)
        self.read_bytes += len(data)
        if self.read_bytes > self.descriptor.size:
            raise SizeMismatchError(f"{self.what}: more than the declared {self.descriptor.size} bytes; refusing it")
        return data

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the blob)."""
        parts, have = [self._pending], len(self._pending)
        while have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        data, self._pending = data[:n], data[n:]
        return self._take(data)

    def pieces(self) -> Iterator[bytes]:
        """Everything left, in the pieces the store delivers (nothing joined or copied), each
        hashed as it is handed out; :meth:`verify` after the last one."""
        if self._pending:
            pending, self._pending = self._pending, b""
            yield self._take(pending)
        for chunk in self._chunks:
            yield self._take(chunk)

    def read_into(self, out: IO[bytes]) -> None:
        """Everything left, appended to ``out``."""
        for chunk in (self._pending, *self._chunks):
            out.write(self._take(chunk))
        self._pending = b""

    def verify(self) -> None:
        """Raise unless every byte was read and they are the descriptor's size and digest."""
        if self._pending or next(self._chunks, b""):
            raise SizeMismatchError(f"{self.what}: not read to its end, so it cannot be verified")
        if self.read_bytes != self.descriptor.size:
            raise SizeMismatchError(f"{self.what}: got {self.read_bytes} bytes, expected {self.descriptor.size}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.descriptor.digest:
            raise DigestMismatchError(
                f"{self.what}: digest mismatch (expected {self.descriptor.digest}, got {actual}); refusing it"
            )


@runtime_checkable
class Target(Protocol):
    """One repository's worth of content: manifests, blobs, tags and referrers.

    A ``reference`` is a tag or a digest (``sha256:<hex>``) in this target. Every method
    raises :mod:`ocimodel.errors` errors only (NotFoundError, AuthError, NetworkError,
    IntegrityError...), with messages naming :attr:`name`.
    """

    @property
    def name(self) -> str:
        """What the target is, for messages and records (``registry/repository``)."""
        ...

    def resolve(self, reference: str) -> Descriptor | None:
        """The descriptor of the manifest ``reference`` names, or None if it names none."""
        ...

    def fetch_manifest(self, reference: str, accept: Sequence[str] | None = None) -> FetchedManifest:
        """The manifest ``reference`` names, its bytes exactly as stored, checked against the
        digest (the one asked for, or the one the store announces); ``accept``: media types."""
        ...

    def open_blob(self, descriptor: Descriptor, what: str | None = None) -> AbstractContextManager[VerifyingReader]:
        """The whole blob, as a :class:`VerifyingReader`; ``what`` names it in errors."""
        ...

    def read_blob(
        self, descriptor: Descriptor, consume: Callable[[BlobStream], None], *, position: Callable[[], int]
    ) -> None:
        """Pass the blob from byte ``position()`` on to ``consume``, resuming where ``position()``
        then says if the connection breaks, until ``position()`` reaches the blob's size or
        retrying gives up. A stream may start at byte 0 although more was asked for (the store
        could not resume, or the bytes it served before are suspect): ``consume`` starts over
        then. The caller verifies what ``consume`` kept (the stream cannot: it may start
        mid-blob)."""
        ...

    def fetch_blob_bytes(self, descriptor: Descriptor, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small blob in memory, checked against its size and digest (refused over ``max_size``)."""
        ...

    def blob_exists(self, digest: str) -> bool:
        """Whether the target itself holds the blob ``digest``."""
        ...

    def push_blob(
        self, descriptor: Descriptor, open_chunks: OpenChunks, *, progress: Callable[[int], None] | None = None
    ) -> bool:
        """Store a blob unless present; True if stored, False if it was there already.
        ``progress`` gets byte increments (negative ones when a retry starts over)."""
        ...

    def push_blob_bytes(self, media_type: str, data: bytes) -> Descriptor:
        """Store a small in-memory blob; returns its descriptor."""
        ...

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> ManifestPutResult:
        """Store manifest bytes as they are, under ``tag`` (moving it) or by their digest."""
        ...

    def tags(self) -> list[str]:
        """Every tag, sorted."""
        ...

    def referrers(self, subject_digest: str) -> list[Descriptor] | None:
        """Manifests whose subject is ``subject_digest``, or None if the store keeps no index of
        them (the caller then reads the ``sha256-<hex>`` fallback tag, see :mod:`ocimodel.referrers`)."""
        ...

    def delete_manifest(self, digest: str) -> None:
        """Delete the manifest ``digest`` (its tags go with it)."""
        ...

    def delete_tag(self, tag: str) -> None:
        """Delete the tag only (a store that cannot raises RegistryError keeping its status and code)."""
        ...


@runtime_checkable
class Mounter(Protocol):
    """Cross-repository blob mounts: a registry can make a blob it holds in another repository
    appear in this one without an upload. ``registry`` and ``repository`` say where this
    target is, so a cache can remember where each blob was seen."""

    @property
    def registry(self) -> str: ...

    @property
    def repository(self) -> str: ...

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Mount ``digest`` from ``from_repository``; False if the store declined."""
        ...

    def push_blob_mounting(
        self, descriptor: Descriptor, open_chunks: OpenChunks, from_repository: str,
        *, progress: Callable[[int], None] | None = None,
    ) -> bool:
        """:meth:`Target.push_blob`, trying a mount from ``from_repository`` first (one request
        that becomes a normal upload if the mount is refused)."""
        ...


class StreamedUploadFailed(Exception):
    """A streamed upload (:meth:`StreamingPusher.push_blob_streamed`) did not complete; nothing
    was committed. The caller falls back to :meth:`Target.push_blob`, whose retries and checks
    then give the authoritative outcome (the message says what went wrong)."""


@runtime_checkable
class StreamingPusher(Protocol):
    """Uploading a large blob while its digest is still being computed (off the critical path)."""

    def streams_uploads(self) -> bool:
        """False once a streamed upload failed here: then hash first, upload after."""
        ...

    def stop_streaming_uploads(self) -> None:
        """Never stream uploads to this store again (it refused one)."""
        ...

    def push_blob_streamed(
        self, size: int, open_chunks: OpenChunks, decision: Future[str | None],
        *, what: str, progress: Callable[[int], None] | None = None,
    ) -> str | None:
        """Upload ``size`` bytes; commit them under the digest ``decision`` resolves to, or
        abandon them if it resolves to None. Returns the digest, or None if abandoned;
        :class:`StreamedUploadFailed` if the store would not take it (nothing committed)."""
        ...


@runtime_checkable
class ReferrerScanner(Protocol):
    """A store with no referrers index whose referrers may also be listed without a fallback
    tag (an OCI image layout written by oras: each referrer is an ``index.json`` entry), found
    by reading the manifests it lists."""

    def scan_referrers(self, subject_digest: str) -> list[Descriptor]:
        """Descriptors of the listed manifests whose ``subject`` is ``subject_digest``."""
        ...


@dataclass(frozen=True)
class TargetRef:
    """What a command names: a :class:`Target` and in it a tag, a digest, or both (the digest wins).

    Neither names the whole target (a repository). ``str()`` reads like a registry reference:
    ``name[:tag][@digest]``.
    """

    target: Target
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def of(cls, target: Target, reference: str) -> "TargetRef":
        """``reference`` (a tag, or ``sha256:<hex>``) in ``target``."""
        if reference.startswith("sha256:"):
            return cls(target, digest=validate_digest(reference))
        return cls(target, tag=validate_tag(reference))

    @property
    def identifier(self) -> str:
        """The digest if known, else the tag (what to resolve or fetch)."""
        found = self.digest or self.tag
        if found is None:
            raise InvalidReferenceError(f"{self} names no tag or digest")
        return found

    def with_digest(self, digest: str) -> "TargetRef":
        """The same, pinned to ``digest`` (the tag kept for display)."""
        return replace(self, digest=validate_digest(digest))

    def with_tag(self, tag: str) -> "TargetRef":
        """The same target at ``tag`` (any digest dropped)."""
        return replace(self, tag=validate_tag(tag), digest=None)

    def __str__(self) -> str:
        out = self.target.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


#: Turns a reference someone wrote down (a lineage parent, say) into a :class:`TargetRef`.
Locate = Callable[[str], TargetRef]
