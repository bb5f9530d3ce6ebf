"""Uploading blobs to a registry: the reopenable body, and the three upload protocols.

Uploads stream the body from a generator in pieces of at most 1 MiB (one big ``bytes`` body
makes httpcore copy quadratically), and a retry reopens the body instead of resending it.
The protocols: POST then a streamed monolithic ``PUT ?digest=`` (what oras-go does); PATCH
in chunks as the fallback for registries that refuse it (GHCR caps PATCH bodies at 4 MiB,
``OCI-Chunk-Min-Length`` honoured); and one streamed PATCH sent while the caller is still
hashing, committed by ``PUT ?digest=`` once the digest is known (:meth:`Uploads.streamed`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterable, Iterator

import httpx

from ..descriptor import Descriptor
from ..errors import (
    AuthError,
    DigestMismatchError,
    IntegrityError,
    NetworkError,
    OcimodelError,
    RegistryError,
    SizeMismatchError,
)
from ..reference import Reference
from ..storage import StreamedUploadFailed
from .retry import RetryableFailure
from .transport import BodyFactory, Operation, Transport

logger = logging.getLogger(__name__)

PIECE_SIZE = 1024 * 1024  # upload pieces: larger bodies make httpcore copy quadratically
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024  # PATCH size for the fallback (GHCR refuses > 4 MiB)
# Blobs up to this size are first offered as one ``POST ?digest=`` with the body (one request);
# small enough that a registry refusing it (and not reading the body) costs little.
SINGLE_POST_MAX = 256 * 1024


@dataclass(frozen=True)
class UploadSession:
    """An upload in progress: where to send the next request, and the registry's minimum chunk."""

    location: httpx.URL
    min_chunk: int = 0


class UploadBody:
    """Reopenable upload body: pieces ≤ 1 MiB, exactly ``size`` bytes, progress reported.

    ``progress`` gets byte increments; when the body is reopened for a retry it first gets the
    negative of what the abandoned attempt reported, so a running total stays right. ``what``
    names the content in errors.
    """

    def __init__(
        self, open_chunks: BodyFactory, size: int, what: str, progress: Callable[[int], None] | None
    ) -> None:
        self._open_chunks = open_chunks
        self._size = size
        self._what = what
        self._progress = progress
        self._reported = 0

    def open(self) -> Iterator[bytes]:
        """A fresh iterator over the whole body."""
        if self._progress and self._reported:
            self._progress(-self._reported)
        self._reported = 0
        return self._pieces(self._open_chunks())

    def _pieces(self, source: Iterable[bytes]) -> Iterator[bytes]:
        size = self._size
        sent = 0
        for piece in split_pieces(source, PIECE_SIZE):
            sent += len(piece)
            if sent > size:
                raise SizeMismatchError(
                    f"content of {self._what} is longer than its declared {size} bytes "
                    "(did the file change while pushing?)"
                )
            if self._progress:
                self._progress(len(piece))
                self._reported += len(piece)
            yield piece
        if sent != size:
            raise SizeMismatchError(
                f"content of {self._what} is {sent} bytes, not its declared {size} "
                "(did the file change while pushing?)"
            )


class _Abandoned(Exception):
    """Raised from inside a streamed upload's body: the blob need not be uploaded after all."""


def split_pieces(source: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Re-cut ``source`` so no piece exceeds ``limit`` bytes (slices, no copying of small ones)."""
    for chunk in source:
        if len(chunk) <= limit:
            if chunk:
                yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(view), limit):
            yield bytes(view[start : start + limit])


def group_chunks(pieces: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Group ``pieces`` into lists totalling exactly ``size`` bytes (the last may be shorter)."""
    group: list[bytes] = []
    filled = 0
    for piece in pieces:
        while piece:
            take = piece[: size - filled]
            piece = piece[len(take) :]
            group.append(take)
            filled += len(take)
            if filled == size:
                yield group
                group, filled = [], 0
    if group:
        yield group


class Uploads:
    """The upload protocols of one client, over its transport: a monolithic PUT, the chunked
    PATCH fallback, and one streamed PATCH while the caller is still hashing."""

    def __init__(self, transport: Transport, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.transport = transport
        self.chunk_size = chunk_size
        self._no_single_post: set[str] = set()  # hosts that answered a single POST with a session

    def _post_whole(self, ref: Reference, descriptor: Descriptor, body: UploadBody, op: Operation) -> UploadSession | None:
        """The single-request upload (``POST ?digest=`` with the body); None once stored.

        A registry without it answers 202 with an upload session instead (the spec's fallback;
        distribution 2.8 does): that session is returned for the usual PUT, and the host is not
        asked this way again.
        """
        url = self.transport.url(op, ref, "blobs", "uploads", "").copy_merge_params({"digest": descriptor.digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(descriptor.size)}
        with self.transport.open("POST", url, op, headers=headers, body=body.open, retry=False) as response:
            if response.status_code == 201:
                stored = response.headers.get("docker-content-digest", "")
                if stored.startswith("sha256:") and stored != descriptor.digest:
                    raise DigestMismatchError(
                        f"registry {op.host} stored {op.noun} as {stored}, not {descriptor.digest}; refusing it"
                    )
                return None
            location = response.headers.get("location")
            if response.status_code != 202 or not location:
                raise self._error(response, op)
            self._no_single_post.add(op.host)
            min_chunk = response.headers.get("oci-chunk-min-length", "")
            return UploadSession(response.url.join(location), int(min_chunk) if min_chunk.isdigit() else 0)

    def upload(
        self, ref: Reference, descriptor: Descriptor, body: UploadBody, op: Operation, mount_from: str | None, chunked: bool
    ) -> None:
        """One whole upload attempt; RetryableFailure restarts it from the POST."""
        if not (chunked or mount_from) and descriptor.size <= SINGLE_POST_MAX and op.host not in self._no_single_post:
            session = self._post_whole(ref, descriptor, body, op)
            if session is None:
                return
        else:
            session = self.start(ref, descriptor.digest, op, mount_from)
        if session is None:
            return  # mounted
        if not chunked:
            if self._put_whole(descriptor, body, op, session):
                return
            # Refused as too large for one request; that session is spent, so start another.
            session = self.start(ref, descriptor.digest, op, None)
            assert session is not None  # only a mount returns None
        self._upload_chunks(descriptor, body, op, session)

    def start(
        self, ref: Reference, digest: str | None, op: Operation, mount_from: str | None
    ) -> UploadSession | None:
        """POST an upload session; None if the blob (``digest``) got mounted instead."""
        url = self.transport.url(op, ref, "blobs", "uploads", "")
        if mount_from and digest:
            url = url.copy_merge_params({"mount": digest, "from": mount_from})
        with self.transport.open("POST", url, op, retry=False) as response:
            if response.status_code == 201 and mount_from:
                return None
            location = response.headers.get("location")
            if response.status_code != 202 or not location:
                raise self._error(response, op)
            min_chunk = response.headers.get("oci-chunk-min-length", "")
            return UploadSession(response.url.join(location), int(min_chunk) if min_chunk.isdigit() else 0)

    def _put_whole(self, descriptor: Descriptor, body: UploadBody, op: Operation, session: UploadSession) -> bool:
        """The streamed monolithic PUT; False if the registry wants chunks instead (413/416)."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(descriptor.size)}
        url = session.location.copy_merge_params({"digest": descriptor.digest})
        with self.transport.open("PUT", url, op, headers=headers, body=body.open, retry=False) as response:
            if response.status_code in (201, 204):
                return True
            if response.status_code in (413, 416):
                return False
            raise self._error(response, op)

    def _upload_chunks(self, descriptor: Descriptor, body: UploadBody, op: Operation, session: UploadSession) -> None:
        """PATCH the body in chunks, then PUT the digest; offsets tracked here, not by the registry."""
        location = session.location
        offset = 0
        for group in group_chunks(body.open(), max(self.chunk_size, session.min_chunk)):
            length = sum(len(piece) for piece in group)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{offset}-{offset + length - 1}",
            }
            with self.transport.open("PATCH", location, op, headers=headers, body=partial(iter, group), retry=False) as response:
                new_location = response.headers.get("location")
                if response.status_code != 202 or not new_location:
                    raise self._error(response, op)
                location = response.url.join(new_location)  # state lives in the newest Location
            offset += length
        url = location.copy_merge_params({"digest": descriptor.digest})
        with self.transport.open("PUT", url, op, headers={"Content-Length": "0"}, retry=False) as response:
            if response.status_code not in (201, 204):
                raise self._error(response, op)

    def _error(self, response: httpx.Response, op: Operation) -> OcimodelError:
        error = self.transport.error(response, op)
        if isinstance(error, RegistryError) and error.code == "DIGEST_INVALID":
            return DigestMismatchError(
                f"registry {op.host} computed another digest for {op.noun}: the content changed while "
                "pushing, or the descriptor is wrong"
            )
        return error

    def streamed(
        self,
        ref: Reference,
        op: Operation,
        size: int,
        open_chunks: BodyFactory,
        decision: "Future[str | None]",
        what: str,
        progress: Callable[[int], None] | None,
    ) -> str | None:
        """Upload ``size`` bytes whose digest is still being computed; returns it, or None.

        The upload need not wait for the caller's hashing: the content goes out in one
        streamed PATCH while ``decision`` resolves elsewhere, either to the digest (the upload
        is completed with ``PUT ?digest=``, which makes the registry check it) or to None (the
        registry turned out to have the blob already, say: the upload is abandoned as soon as
        that is known, and the session deleted). An exception in ``decision`` propagates.

        Raises :class:`StreamedUploadFailed` when the registry does not take a whole blob in
        one PATCH (GHCR caps PATCH bodies at 4 MiB), the connection fails, or the registry
        disagrees on the digest: nothing is committed, and the caller falls back to
        the plain upload, which has the retries. Authentication errors propagate.
        """
        body = UploadBody(open_chunks, size, what, progress)

        def pieces() -> Iterator[bytes]:
            for piece in body.open():
                if decision.done() and (decision.exception() is not None or decision.result() is None):
                    raise _Abandoned()
                yield piece

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Content-Range": f"0-{size - 1}",
        }
        session: UploadSession | None = None
        try:
            session = self.start(ref, None, op, None)
            assert session is not None  # only a mount returns None
            with self.transport.open("PATCH", session.location, op, headers=headers, body=pieces, retry=False) as response:
                location = response.headers.get("location")
                if response.status_code != 202 or not location:
                    raise self._error(response, op)
                session = replace(session, location=response.url.join(location))
            digest = decision.result()
            if digest is not None:
                url = session.location.copy_merge_params({"digest": digest})
                with self.transport.open("PUT", url, op, headers={"Content-Length": "0"}, retry=False) as response:
                    if response.status_code not in (201, 204):
                        raise self._error(response, op)
                return digest
        except _Abandoned:
            pass
        except AuthError:
            raise
        except (RegistryError, NetworkError, IntegrityError, RetryableFailure) as exc:
            self.cancel(session, op)
            raise StreamedUploadFailed(str(exc)) from exc
        self.cancel(session, op)
        return decision.result()  # None, or the exception that stopped the decision

    def cancel(self, session: UploadSession | None, op: Operation) -> None:
        """Best effort: tell the registry an upload session is dead (it expires anyway)."""
        if session is None:
            return
        try:
            with self.transport.open("DELETE", session.location, op, retry=False):
                pass
        except (OcimodelError, RetryableFailure):
            logger.debug("could not cancel upload session %s", session.location)
