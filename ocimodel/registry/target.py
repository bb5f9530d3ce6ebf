"""The registry as a storage Target: one repository of a :class:`~.client.RegistryClient`.

:class:`RegistryTarget` implements :class:`ocimodel.storage.Target` (and the registry-only
:class:`~ocimodel.storage.Mounter` and :class:`~ocimodel.storage.StreamingPusher`) by naming
each tag or digest as a :class:`~ocimodel.reference.Reference` in its repository and calling
the client's endpoint. :func:`locator` turns reference strings into targets, the seam where
a reference becomes a store.
"""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..descriptor import MAX_MANIFEST_SIZE, Descriptor, sha256_digest
from ..errors import NetworkError, RegistryError, TransferInterrupted
from ..reference import Reference
from ..storage import BlobStream, FetchedManifest, ManifestPutResult, OpenChunks, TargetRef, VerifyingReader
from .client import RegistryClient
from .retry import RetryableFailure

#: Rounds of the retry policy per resumed blob read, each one having made progress.
MAX_RESUMES = 50


class RegistryTarget:
    """The repository ``repository`` (its tag and digest are ignored) through ``client``."""

    def __init__(self, client: RegistryClient, repository: Reference) -> None:
        self.client = client
        self.reference = Reference.coerce(repository, repository=True)

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return self.reference.name

    @property
    def registry(self) -> str:
        return self.reference.registry

    @property
    def repository(self) -> str:
        return self.reference.repository

    def at(self, reference: str) -> Reference:
        """The registry reference of a tag or digest in this repository."""
        if reference.startswith("sha256:"):
            return self.reference.with_digest(reference)
        return self.reference.with_tag(reference)

    def __repr__(self) -> str:
        return f"RegistryTarget({self.name!r})"

    # -- manifests and tags --------------------------------------------------------------------

    def resolve(self, reference: str) -> Descriptor | None:
        return self.client.head_manifest(self.at(reference))

    def fetch_manifest(self, reference: str, accept: Sequence[str] | None = None) -> FetchedManifest:
        ref = self.at(reference)
        return self.client.get_manifest(ref, accept) if accept else self.client.get_manifest(ref)

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> ManifestPutResult:
        ref = self.reference.with_tag(tag) if tag else self.reference.with_digest(sha256_digest(raw))
        return self.client.put_manifest_result(ref, raw, media_type)

    def tags(self) -> list[str]:
        return self.client.list_tags(self.reference)

    def referrers(self, subject_digest: str) -> list[Descriptor] | None:
        return self.client.referrers(self.reference, subject_digest)

    def delete_manifest(self, digest: str) -> None:
        self.client.delete_manifest(self.reference.with_digest(digest))

    def delete_tag(self, tag: str) -> None:
        self.client.delete_tag(self.reference.with_tag(tag))

    # -- blobs -----------------------------------------------------------------------------------

    @contextmanager
    def open_blob(self, descriptor: Descriptor, what: str | None = None) -> Iterator[VerifyingReader]:
        with self.client.open_blob(self.reference, descriptor) as stream:
            yield VerifyingReader(descriptor, stream, what or f"blob {descriptor.digest[:19]} in {self.name}")

    def read_blob(
        self, descriptor: Descriptor, consume: Callable[[BlobStream], None], *, position: Callable[[], int]
    ) -> None:
        """Resumes a broken body with ``Range`` from ``position()``, under the client's retry
        policy, which starts afresh whenever an attempt made progress; gives up after a whole
        retry budget without a byte of progress (or :data:`MAX_RESUMES` rounds)."""

        def attempt() -> None:
            try:
                with self.client.open_blob(self.reference, descriptor, offset=position(), retry=False) as stream:
                    consume(stream)
            except TransferInterrupted as exc:
                raise RetryableFailure(exc) from None

        for _ in range(MAX_RESUMES):
            if position() >= descriptor.size:
                return
            before = position()
            try:
                self.client.retry.run(attempt)
            except (NetworkError, RegistryError):
                if position() == before:
                    raise  # a whole retry budget without a byte of progress: give up

    def fetch_blob_bytes(self, descriptor: Descriptor, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        return self.client.fetch_blob_bytes(self.reference, descriptor, max_size=max_size)

    def blob_exists(self, digest: str) -> bool:
        return self.client.blob_exists(self.reference, digest)

    def push_blob(
        self, descriptor: Descriptor, open_chunks: OpenChunks, *, progress: Callable[[int], None] | None = None,
        checked: bool = False,
    ) -> bool:
        return self.client.push_blob(self.reference, descriptor, open_chunks, progress=progress, checked=checked)

    def push_blob_bytes(self, media_type: str, data: bytes, *, checked: bool = False) -> Descriptor:
        return self.client.push_blob_bytes(self.reference, media_type, data, checked=checked)

    # -- fewer round trips for a push (see ocimodel.transfer.upload) -------------------------------

    def blob_exists_for_push(self, digest: str) -> bool:
        return self.client.blob_exists_for_push(self.reference, digest)

    # -- registry-only capabilities --------------------------------------------------------------

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        return self.client.mount_blob(self.reference, digest, from_repository)

    def push_blob_mounting(
        self, descriptor: Descriptor, open_chunks: OpenChunks, from_repository: str,
        *, progress: Callable[[int], None] | None = None,
    ) -> bool:
        return self.client.push_blob(self.reference, descriptor, open_chunks, progress=progress, mount_from=from_repository)

    def streams_uploads(self) -> bool:
        return self.client.streams_uploads(self.reference.registry)

    def stop_streaming_uploads(self) -> None:
        self.client.stop_streaming_uploads(self.reference.registry)

    def push_blob_streamed(
        self, size: int, open_chunks: OpenChunks, decision: Future[str | None],
        *, what: str, progress: Callable[[int], None] | None = None,
    ) -> str | None:
        return self.client.push_blob_streamed(self.reference, size, open_chunks, decision, what=what, progress=progress)


def target_ref(client: RegistryClient, reference: str | Reference, *, repository: bool = False) -> TargetRef:
    """``reference`` (``host/repo[:tag][@digest]``) as a target of ``client``; with
    ``repository``, the repository itself (no tag or digest allowed in a string)."""
    parsed = Reference.coerce(reference, repository=repository)
    return TargetRef(RegistryTarget(client, parsed), tag=parsed.tag, digest=parsed.digest)


def locator(source: RegistryClient | Callable[[str], RegistryClient]) -> Callable[[str], TargetRef]:
    """A function from reference strings to targets: of one client for every registry, or of
    the client ``source(registry host)`` returns (the caller owns and closes clients)."""

    def locate(text: str) -> TargetRef:
        parsed = Reference.parse(text)
        client = source if isinstance(source, RegistryClient) else source(parsed.registry)
        return TargetRef(RegistryTarget(client, parsed), tag=parsed.tag, digest=parsed.digest)

    return locate
