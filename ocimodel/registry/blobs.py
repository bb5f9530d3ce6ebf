"""Reading blobs from a registry: the size-bounded body stream, read past h11 when large.

Downloads use ``iter_raw()`` without a chunk size (twice as fast as a fixed size), read a large
blob's body past the HTTP parser after its first piece (:func:`_body_pieces`: a third of a
pull's CPU), with 1 MiB socket reads (:func:`raise_read_size`), and stop at the descriptor's
size, so a hostile registry cannot make us read more than it promised.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Iterator

import httpcore
import httpx

from ..descriptor import Descriptor
from ..errors import IntegrityError, RegistryError, SizeMismatchError, StalledError, TransferInterrupted
from .timeouts import BodyTooSlow, slowness
from .transport import Operation, Transport

READ_SIZE = 1024 * 1024  # socket reads on download (see raise_read_size)
DIRECT_READ_MIN = 4 * 1024 * 1024  # blob bodies this large are read past h11 (_body_pieces)
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class BlobStream:
    """An open blob download; iterate :meth:`chunks` once.

    ``status`` is the HTTP status (200 or 206) and ``offset`` the position of the first byte
    served: 0 when the registry ignored a Range request, so the caller restarts its hashing.

    ``on_bad_mirror`` (set for a whole blob served by a mirror) makes the stream verify the
    digest itself and hold back the last piece until it matched: a mirror serving wrong bytes
    then never completes a download. It is called (with what went wrong: wrong content, or
    too slow a trickle), and the stream ends as interrupted
    (:class:`TransferInterrupted`), so the caller's retry asks again, and the client, having
    marked the mirror bad for that digest, answers from byte 0 from the next source.
    """

    def __init__(
        self,
        response: httpx.Response,
        descriptor: Descriptor,
        offset: int,
        op: Operation,
        on_bad_mirror: Callable[[str], None] | None = None,
    ) -> None:
        self._response = response
        self._descriptor = descriptor
        self._op = op
        self._on_bad_mirror = on_bad_mirror
        self.status = response.status_code
        self.offset = offset

    def chunks(self) -> Iterator[bytes]:
        """Raw body pieces, never more than the descriptor's size in total."""
        if self._on_bad_mirror is None:
            return self._chunks()
        return self._mirror_chunks(self._on_bad_mirror)

    def _mirror_chunks(self, on_bad_mirror: Callable[[str], None]) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        held = b""
        passed = 0
        fault = "with wrong content"
        try:
            for piece in self._chunks():
                hasher.update(piece)
                if held:
                    yield held
                    passed += len(held)
                held = piece
            good = f"sha256:{hasher.hexdigest()}" == self._descriptor.digest
        except IntegrityError:
            good = False
        except StalledError:  # a mirror that trickles is as useless as one that lies
            good, fault = False, "too slowly"
        if not good:
            on_bad_mirror(fault)
            raise TransferInterrupted(
                f"mirror {self._op.host} served {self._op.noun} {fault}; fetching it from the next source",
                self.offset + passed,
            )
        if held:
            yield held

    def _chunks(self) -> Iterator[bytes]:
        remaining = self._descriptor.size - self.offset
        received = 0
        try:
            for piece in _body_pieces(self._response):
                if len(piece) > remaining:
                    if remaining:
                        yield piece[:remaining]
                    raise SizeMismatchError(
                        f"registry {self._op.host} sent more than the {self._descriptor.size} bytes "
                        f"declared for {self._op.noun}; refusing it"
                    )
                remaining -= len(piece)
                received += len(piece)
                yield piece
        except (httpx.HTTPError, httpcore.NetworkError, httpcore.TimeoutException) as exc:
            position = self.offset + received
            slow = slowness(exc)
            if isinstance(slow, BodyTooSlow):
                raise StalledError(
                    f"registry {self._op.host} sends {self._op.noun} too slowly: {slow.received} bytes in "
                    f"{slow.window:.0f} s of waiting at byte {position}; giving up (--timeout sets the limit)"
                ) from None
            if isinstance(exc, (httpx.TimeoutException, httpcore.TimeoutException)):
                why = "it sent nothing for the --timeout limit"
            else:
                why = type(exc).__name__
            raise TransferInterrupted(
                f"connection to {self._op.host} lost while downloading {self._op.noun} "
                f"at byte {position} ({why}); try again to resume",
                position,
            ) from None
        if remaining:
            raise SizeMismatchError(
                f"registry {self._op.host} sent {self.offset + received} of the {self._descriptor.size} "
                f"bytes declared for {self._op.noun}; refusing it"
            )


def _body_pieces(response: httpx.Response) -> Iterator[bytes]:
    """The raw body of a blob response, read past the HTTP/1.1 parser once it is out of the way.

    Why: h11 copies every body byte three times on its way out (into its buffer, out of it,
    and httpcore's ``bytes()``), ~0.3 s of CPU per GiB, on a pull that is CPU-bound on 2 cores
    (sha256 and the registry itself take the rest). The first piece comes through httpx as
    usual, which empties h11's buffer of whatever body bytes arrived with the headers; after
    that the bytes are on the connection's stream (httpcore's ``network_stream``, the same
    stream h11 reads from, TLS included), and are read from it directly. Only for a plain
    ``Content-Length`` body on HTTP/1.1; anything else goes through httpx all the way. The
    caller stops at the declared size. h11 never sees the end of the body, so httpcore closes
    the connection instead of reusing it: one new connection per large blob (bodies under
    ``DIRECT_READ_MIN`` go through httpx, and their connection is reused).
    """
    raw = response.iter_raw()
    stream = response.extensions.get("network_stream")
    direct = (
        response.http_version == "HTTP/1.1"
        and response.headers.get("content-length", "").isdigit()
        and "transfer-encoding" not in response.headers
        and response.headers.get("content-encoding", "identity") == "identity"
    )
    if not direct or stream is None or int(response.headers["content-length"]) < DIRECT_READ_MIN:
        yield from raw  # small bodies keep the connection reusable (no new TLS handshake)
        return
    remaining = int(response.headers["content-length"])
    # Not raw.close() after it: that would close the connection (httpcore closes it when its
    # body iterator is abandoned); the generator simply goes with this one, at the end.
    first = next(raw, None)
    if first is None:
        return
    yield first
    remaining -= len(first)
    if remaining <= 0:
        yield from raw  # all of it came with the headers: let h11 finish, keep the connection
        return
    timeout = response.request.extensions.get("timeout", {}).get("read")
    while remaining > 0:
        data = stream.read(min(READ_SIZE, remaining), timeout)
        if not data:  # what h11 would report: the body ended early; the caller resumes
            raise httpcore.ReadError("peer closed connection without sending complete message body")
        remaining -= len(data)
        yield data


def blob_start(transport: Transport, response: httpx.Response, descriptor: Descriptor, offset: int, op: Operation) -> int:
    """The offset the body starts at, after checking status and announced length."""
    if response.status_code == 200:
        start = 0
    elif response.status_code == 206 and offset:
        match = _CONTENT_RANGE_RE.match(response.headers.get("content-range", ""))
        total = match.group(3) if match else ""
        if not match or int(match.group(1)) != offset or total not in ("*", str(descriptor.size)):
            raise RegistryError(
                f"registry {op.host} answered a range request for {op.noun} with a wrong Content-Range "
                f"({response.headers.get('content-range')!r}); retry without resuming",
                status=206,
            )
        start = offset
    else:
        raise transport.error(response, op)
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) != descriptor.size - start:
        raise SizeMismatchError(
            f"registry {op.host} announced {int(length)} bytes for {op.noun} from byte {start}, "
            f"but its descriptor declares {descriptor.size}; refusing it"
        )
    return start


def raise_read_size() -> None:
    """Let httpcore read 1 MiB per socket read instead of 64 KiB.

    With 64 KiB reads a 1 GiB pull makes ~16,500 trips through the Python receive path, which
    together with hashing saturates a core (measured: 2.5x curl on 2 cores; 1 MiB reads bring
    it to ~1.2x). httpcore exposes this only as a class attribute of its HTTP/1.1 connection,
    so it is set process-wide; it only changes buffer sizes, never behaviour.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:  # pragma: no cover - a future httpcore: keep its default
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", 0) < READ_SIZE:
        HTTP11Connection.READ_NUM_BYTES = READ_SIZE

