"""The one place ocimodel talks HTTP to a registry (OCI distribution spec v1.1).

Everything above this module works with :class:`~ocimodel.reference.Reference` and
:class:`~ocimodel.descriptor.Descriptor`; everything below it is httpx. Every failure leaves as
an :mod:`ocimodel.errors` type with a one-line message; raw httpx exceptions never escape.

Transport rules worth knowing (see shared notes/registry.md for the measurements):

- uploads stream the body from a generator in pieces of at most 1 MiB (one big ``bytes`` body
  makes httpcore copy quadratically), and a retry reopens the body instead of resending it;
- downloads use ``iter_raw()`` without a chunk size (twice as fast), read a blob's body past
  the HTTP parser after its first piece (:func:`_body_pieces`: a third of a pull's CPU), and
  stop at the descriptor's size, so a hostile registry cannot make us read more than promised;
- redirects are followed by hand so ``Authorization`` is only ever sent to the registry itself,
  and only the registry's own 401 challenge is answered;
- every wait is bounded (:mod:`.timeouts`): a deadline for the response headers and for small
  bodies, an idle limit and a minimum progress for blob bodies, a time budget for retries;
- reads may go through mirrors first (pull-through caches, see :mod:`.mirrors`); writes never do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import httpcore
import httpx

from .. import __version__
from ..descriptor import (
    INDEX_V1,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    Index,
    check_digest,
    media_type_of,
    sha256_digest,
)
from ..errors import (
    AuthError,
    DigestMismatchError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    OcimodelError,
    RegistryError,
    SchemaError,
    SizeMismatchError,
    StalledError,
    UnsafeContentError,
    UsageError,
)
from ..reference import DOCKER_HUB, DOCKER_HUB_API, Reference
from .auth import Authenticator, repository_scope
from .credentials import CredentialStore, normalise_host
from .mirrors import Mirror, registry_key, resolve_mirrors
from .retry import RetryableFailure, RetryPolicy, is_retryable_status, parse_retry_after
from .timeouts import BodyTooSlow, ResponseTooSlow, Timeouts, guard, slowness

logger = logging.getLogger(__name__)

BodyFactory = Callable[[], Iterable[bytes]]
T = TypeVar("T")

ARTIFACT_MANIFEST_V1 = "application/vnd.oci.artifact.manifest.v1+json"
DEFAULT_MANIFEST_ACCEPT: tuple[str, ...] = MANIFEST_MEDIA_TYPES + (ARTIFACT_MANIFEST_V1,)
READ_SIZE = 1024 * 1024  # socket reads on download (see _raise_read_size)
DIRECT_READ_MIN = 4 * 1024 * 1024  # blob bodies this large are read past h11 (_body_pieces)
PIECE_SIZE = 1024 * 1024  # upload pieces: larger bodies make httpcore copy quadratically
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024  # PATCH size for the fallback (GHCR refuses > 4 MiB)
_MAX_ERROR_BODY = 64 * 1024
_MAX_TAGS_BODY = 64 * 1024 * 1024
_MAX_PAGES = 10_000
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?')
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_WARNING_RE = re.compile(r'^\s*299\s+\S+\s+"((?:[^"\\]|\\.)*)"')
_PLAIN_HTTP_ENV = "OCIMODEL_PLAIN_HTTP"
MIRROR_COOLDOWN = 30.0  # seconds a mirror that could not be reached (or answered 5xx) is skipped


class TransferInterrupted(NetworkError):
    """The connection broke in the middle of a blob body; ``position`` bytes had arrived.

    Distinct from other network errors so a download can resume with ``Range`` from there.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest exactly as the registry sent it, with its verified digest."""

    raw: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class ManifestPutResult:
    """What a manifest PUT returned: the digest, and the ``OCI-Subject`` header if any.

    ``subject`` set means the registry supports the referrers API and indexed the manifest's
    subject itself; None means the caller must maintain the ``sha256-<hex>`` fallback tag.
    """

    digest: str
    subject: str | None = None


@dataclass(frozen=True)
class _Op:
    """One logical request, named for error messages: ``verb`` + ``noun``, on ``host``.

    ``mirror`` is set when the request goes to a mirror of the registry instead of to it.
    """

    verb: str
    noun: str
    host: str
    scopes: tuple[str, ...] = ()
    scheme: str = "https"
    mirror: Mirror | None = None


@dataclass(frozen=True)
class _UploadSession:
    """An upload in progress: where to send the next request, and the registry's minimum chunk."""

    location: httpx.URL
    min_chunk: int = 0


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
        op: _Op,
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


class _UploadBody:
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


class StreamedUploadFailed(Exception):
    """A streamed upload (:meth:`RegistryClient.push_blob_streamed`) did not complete; nothing
    was committed. The caller falls back to :meth:`RegistryClient.push_blob`, whose retries and
    checks then give the authoritative outcome (the message says what went wrong)."""


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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class DeferredTrustContext(ssl.SSLContext):
    """httpx's default TLS trust, loaded at the first TLS connection instead of up front.

    The same trust as httpx's ``verify=True`` (``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else
    certifi's bundle), but loading the bundle costs ~25-35 ms, measured, of every command's
    start-up; a command that never opens a TLS connection (a plain-http registry, a usage
    error) need not pay it. Certificate and host name checks are on from the start
    (``PROTOCOL_TLS_CLIENT``), so nothing connects unverified.
    """

    _trust_lock: threading.Lock
    _trusted: bool

    def __new__(cls) -> "DeferredTrustContext":
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context._trust_lock = threading.Lock()
        context._trusted = False
        return context

    def load_trust(self) -> None:
        """Load the CA certificates now (idempotent, thread-safe)."""
        with self._trust_lock:
            if self._trusted:
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi  # httpx's own dependency

                self.load_verify_locations(cafile=certifi.where())
            self._trusted = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)


def _ssl_verify(insecure: bool, ca_file: str | Path | None) -> ssl.SSLContext | bool:
    if insecure:
        return False
    if ca_file is None:
        return DeferredTrustContext()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {ca_file}: {exc}") from None


def _media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None


def _error_detail(body: bytes) -> tuple[str | None, str]:
    """The first OCI error's code and a ``CODE: message`` summary, from an error body."""
    try:
        errors = json.loads(body).get("errors")
        first = errors[0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, TypeError, IndexError, KeyError, RecursionError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return None, (text[0][:200] if text else "")
    return code or None, ": ".join(part for part in (code, message) if part)


def _same_origin(url: httpx.URL, op: _Op) -> bool:
    """True if ``url`` is on the scheme, host and port ``op`` is addressed to (its credentials' origin)."""
    return url.scheme == op.scheme and url.netloc.decode("ascii") == op.host


def _next_link(response: httpx.Response) -> httpx.URL | None:
    match = _LINK_NEXT_RE.search(response.headers.get("link", ""))
    return response.url.join(match.group(1)) if match else None


def _raise_read_size() -> None:
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


class RegistryClient:
    """Blobs, manifests, tags and referrers over HTTP, with auth, retries and verification.

    Plain http is used only when asked for (``plain_http=True`` or ``OCIMODEL_PLAIN_HTTP=1``),
    never automatically, not even for localhost: a silent downgrade would leak credentials.
    Thread-safe for concurrent transfers (one httpx connection pool, a locked token cache).

    ``mirrors`` maps registry names (as in references: ``docker.io``, ``127.0.0.1:5000``) to
    mirror base URLs tried in order before the registry for reads only; see :mod:`.mirrors`.
    A mirror gets one attempt per request (no retries: the next source is the retry); one that
    cannot be reached or answers 5xx is skipped for :data:`MIRROR_COOLDOWN` seconds.

    ``credentials`` decides what each host is sent (see :class:`.CredentialStore`: a credential
    given for one registry goes to that registry only). ``timeout`` is seconds, or a
    :class:`.Timeouts`; None: ``OCIMODEL_TIMEOUT``, else 60 s (see :mod:`.timeouts`).
    """

    def __init__(
        self,
        *,
        credentials: CredentialStore | None = None,
        plain_http: bool = False,
        insecure: bool = False,
        ca_file: str | Path | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | Timeouts | None = None,
        user_agent: str = f"ocimodel/{__version__}",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
        mirrors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.scheme = "http" if plain_http or _env_flag(_PLAIN_HTTP_ENV) else "https"
        self.timeouts = Timeouts.resolve(timeout, os.environ)
        self.mirrors = resolve_mirrors(mirrors)
        self.retry = retry or RetryPolicy()
        self.chunk_size = chunk_size
        _raise_read_size()
        self._http = httpx.Client(
            verify=_ssl_verify(insecure, ca_file),
            timeout=self.timeouts.for_httpx(),
            headers={"User-Agent": user_agent},
            follow_redirects=False,  # done by hand: see _follow
            event_hooks=dict(event_hooks or {}),
        )
        guard(self._http, self.timeouts)
        credentials = credentials or CredentialStore()
        self._auth = Authenticator(credentials, self._http, timeouts=self.timeouts)
        # Mirrors authenticate with their own docker-config entry, never the registry's.
        self._mirror_auth = Authenticator(credentials.config_only(), self._http, timeouts=self.timeouts)
        self._mirror_lock = threading.Lock()
        self._mirror_down: dict[Mirror, float] = {}  # mirror → monotonic time to try it again
        self._mirror_bad: set[tuple[Mirror, str]] = set()  # (mirror, digest) that failed verification
        self._no_streamed_uploads: set[str] = set()  # registries that refused push_blob_streamed

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs ------------------------------------------------------------------------------

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        """True if the registry itself has the blob (HEAD; never a mirror: it decides uploads)."""
        return self._head_blob(ref, digest, self._op(ref, "HEAD", f"blob {digest} in {ref.repository}", "pull"))

    def _head_blob(self, ref: Reference, digest: str, op: _Op) -> bool:
        with self._open("HEAD", self._url(op, ref, "blobs", digest), op) as response:
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._error(response, op)

    def push_blob(
        self,
        ref: Reference,
        descriptor: Descriptor,
        open_chunks: BodyFactory,
        *,
        progress: Callable[[int], None] | None = None,
        mount_from: str | None = None,
        chunked: bool = False,
    ) -> bool:
        """Upload a blob unless present; False if it was already there, True if uploaded or mounted.

        ``open_chunks()`` must return a fresh iterable over the whole content each call (a retry
        reopens it). ``mount_from`` names another repository on the same registry to mount the
        blob from. ``chunked`` forces the PATCH upload, otherwise only a fallback for registries
        that refuse the monolithic PUT.
        """
        actions = [repository_scope(ref.repository, "pull", "push")]
        if mount_from:
            actions.append(repository_scope(mount_from, "pull"))
        op = self._op(ref, "push", f"blob {descriptor.digest} to {ref.repository}", scopes=actions)
        # HEAD with the push scopes: one token serves the whole upload.
        if self._head_blob(ref, descriptor.digest, op):
            return False
        body = _UploadBody(open_chunks, descriptor.size, f"blob {descriptor.digest}", progress)
        self.retry.run(lambda: self._upload(ref, descriptor, body, op, mount_from, chunked))
        return True

    def streams_uploads(self, registry: str) -> bool:
        """False once a streamed upload to ``registry`` failed (see :meth:`push_blob_streamed`)."""
        return registry_key(registry) not in self._no_streamed_uploads

    def stop_streaming_uploads(self, registry: str) -> None:
        """Use only hash-then-upload with ``registry`` from now on (it refused a streamed upload)."""
        self._no_streamed_uploads.add(registry_key(registry))

    def mount_blob(self, ref: Reference, digest: str, from_repository: str) -> bool:
        """Mount blob ``digest`` from another repository of the same registry; True if mounted.

        A registry that declines (no such blob there, no permission, no mount support) answers
        with an upload session instead, which is cancelled: False.
        """
        scopes = [repository_scope(ref.repository, "pull", "push"), repository_scope(from_repository, "pull")]
        op = self._op(ref, "mount", f"blob {digest} from {from_repository} to {ref.repository}", scopes=scopes)
        session = self.retry.run(lambda: self._start_upload(ref, digest, op, from_repository))
        if session is None:
            return True
        self._cancel_upload(session, op)
        return False

    def push_blob_streamed(
        self,
        ref: Reference,
        size: int,
        open_chunks: BodyFactory,
        decision: "Future[str | None]",
        *,
        what: str = "blob",
        progress: Callable[[int], None] | None = None,
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
        :meth:`push_blob`, which has the retries. Authentication errors propagate.
        """
        op = self._op(ref, "push", f"{what} to {ref.repository}", scopes=[repository_scope(ref.repository, "pull", "push")])
        body = _UploadBody(open_chunks, size, what, progress)

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
        session: _UploadSession | None = None
        try:
            session = self._start_upload(ref, None, op, None)
            assert session is not None  # only a mount returns None
            with self._open("PATCH", session.location, op, headers=headers, body=pieces, retry=False) as response:
                location = response.headers.get("location")
                if response.status_code != 202 or not location:
                    raise self._upload_error(response, op)
                session = replace(session, location=response.url.join(location))
            digest = decision.result()
            if digest is not None:
                url = session.location.copy_merge_params({"digest": digest})
                with self._open("PUT", url, op, headers={"Content-Length": "0"}, retry=False) as response:
                    if response.status_code not in (201, 204):
                        raise self._upload_error(response, op)
                return digest
        except _Abandoned:
            pass
        except AuthError:
            raise
        except (RegistryError, NetworkError, IntegrityError, RetryableFailure) as exc:
            self._cancel_upload(session, op)
            raise StreamedUploadFailed(str(exc)) from exc
        self._cancel_upload(session, op)
        return decision.result()  # None, or the exception that stopped the decision

    def _cancel_upload(self, session: _UploadSession | None, op: _Op) -> None:
        """Best effort: tell the registry an upload session is dead (it expires anyway)."""
        if session is None:
            return
        try:
            with self._open("DELETE", session.location, op, retry=False):
                pass
        except (OcimodelError, RetryableFailure):
            logger.debug("could not cancel upload session %s", session.location)

    def push_blob_bytes(self, ref: Reference, media_type: str, data: bytes) -> Descriptor:
        """Upload a small in-memory blob (a config, say); returns its descriptor."""
        descriptor = Descriptor.from_bytes(media_type, data)
        self.push_blob(ref, descriptor, lambda: (data,))
        return descriptor

    @contextmanager
    def open_blob(
        self, ref: Reference, descriptor: Descriptor, *, offset: int = 0, retry: bool = True
    ) -> Iterator[BlobStream]:
        """Open a blob for streaming from ``offset``; the caller verifies the digest.

        ``retry=False`` lets a caller that retries the whole download (resuming it) own the
        retry policy, instead of nesting two retry loops.

        With mirrors, the first source that answers serves the blob. A whole blob from a mirror
        is verified here too (see :class:`BlobStream`); once a mirror has served wrong bytes for
        a digest, a resumed read of it starts again from byte 0 (``offset`` 0 in the stream),
        since the caller's prefix may hold the mirror's bad bytes.
        """
        if offset < 0 or (offset and offset >= descriptor.size):
            raise UsageError(f"cannot resume blob {descriptor.digest} at byte {offset} of {descriptor.size}")
        if offset and self._mirrored_badly(descriptor.digest):
            offset = 0
        with ExitStack() as keep:

            def start(op: _Op) -> BlobStream:
                return keep.enter_context(self._open_blob(ref, descriptor, offset, op, retry))

            yield self._read(ref, "GET", f"blob {descriptor.digest} in {ref.repository}", start, descriptor.digest)

    @contextmanager
    def _open_blob(
        self, ref: Reference, descriptor: Descriptor, offset: int, op: _Op, retry: bool, *, stream_check: bool = True
    ) -> Iterator[BlobStream]:
        """Open the blob on one source; ``stream_check``: a mirror's whole blob is verified as it streams."""
        # identity: iter_raw hands us the wire bytes, which must be the blob's own bytes.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self._url(op, ref, "blobs", descriptor.digest)
        with self._open("GET", url, op, headers=headers, retry=retry) as response:
            start = self._blob_start(response, descriptor, offset, op)
            on_bad = None
            if stream_check and op.mirror is not None and start == 0 and descriptor.digest.startswith("sha256:"):
                on_bad = partial(self._mark_bad, op.mirror, descriptor.digest)
            yield BlobStream(response, descriptor, start, op, on_bad)

    def fetch_blob_bytes(self, ref: Reference, descriptor: Descriptor, *, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        """Download a small blob into memory, verifying size and digest."""
        if descriptor.size > max_size:
            raise UnsafeContentError(
                f"blob {descriptor.digest} declares {descriptor.size} bytes, over the {max_size}-byte "
                "limit for in-memory blobs; refusing it"
            )

        def fetch(op: _Op) -> bytes:
            with self._open_blob(ref, descriptor, 0, op, True, stream_check=False) as stream:
                data = b"".join(stream.chunks())
            source = f"mirror {op.host}" if op.mirror else ref.name
            check_digest(data, descriptor.digest, f"blob {descriptor.digest} from {source}")
            return data

        return self._read(ref, "GET", f"blob {descriptor.digest} in {ref.repository}", fetch, descriptor.digest)

    # -- manifests --------------------------------------------------------------------------

    def get_manifest(self, ref: Reference, accept: Sequence[str] = DEFAULT_MANIFEST_ACCEPT) -> FetchedManifest:
        """Fetch a manifest by tag or digest, keeping its bytes exactly; digest verified.

        Through a mirror, a tag resolves to whatever the mirror has cached for it: pin by digest
        to trust no mirror with tags.
        """
        noun = f"manifest {ref.repository}:{ref.identifier}"
        return self._read(ref, "GET", noun, partial(self._get_manifest, ref, accept), ref.digest)

    def _get_manifest(self, ref: Reference, accept: Sequence[str], op: _Op) -> FetchedManifest:
        headers = {"Accept": ", ".join(accept)}
        with self._open("GET", self._url(op, ref, "manifests", ref.identifier), op, headers=headers) as response:
            if response.status_code != 200:
                raise self._error(response, op)
            announced_type = _media_type(response.headers.get("content-type"))
            if announced_type is not None and announced_type not in DEFAULT_MANIFEST_ACCEPT:
                raise SchemaError(
                    f"registry {op.host} served manifest {ref} as {announced_type!r}, not a manifest media type; "
                    "refusing it"
                )
            raw = self._read_manifest(response, op)
            digest = sha256_digest(raw)
            what = f"manifest {ref} from {op.host}"
            if ref.digest:
                check_digest(raw, ref.digest, what)
            else:
                announced = response.headers.get("docker-content-digest", "")
                if announced.startswith("sha256:") and announced != digest:
                    raise DigestMismatchError(
                        f"{what}: digest mismatch (registry says {announced}, bytes are {digest}); refusing it"
                    )
            declared = media_type_of(raw)
            if announced_type and declared and declared != announced_type:
                raise SchemaError(
                    f"manifest {ref} from {op.host} is served as {announced_type!r} but declares "
                    f"{declared!r}; refusing it"
                )
            media_type = announced_type or declared or ""
            return FetchedManifest(raw=raw, media_type=media_type, digest=digest)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The manifest's descriptor (HEAD), or None if the tag or digest is unknown."""
        noun = f"manifest {ref.repository}:{ref.identifier}"
        try:
            return self._read(ref, "HEAD", noun, partial(self._head_manifest, ref), ref.digest)
        except NotFoundError:
            return None

    def _head_manifest(self, ref: Reference, op: _Op) -> Descriptor:
        headers = {"Accept": ", ".join(DEFAULT_MANIFEST_ACCEPT)}
        with self._open("HEAD", self._url(op, ref, "manifests", ref.identifier), op, headers=headers) as response:
            if response.status_code != 200:
                raise self._error(response, op)
            digest = response.headers.get("docker-content-digest", "")
            length = response.headers.get("content-length", "")
            media_type = _media_type(response.headers.get("content-type"))
        if not (digest.startswith("sha256:") and length.isdigit() and media_type):
            # Not every registry answers HEAD fully: fall back to a (verified) GET.
            fetched = self._get_manifest(ref, DEFAULT_MANIFEST_ACCEPT, replace(op, verb="GET"))
            return Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw))
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"manifest {ref} from {op.host}: registry answered for digest {digest}")
        return Descriptor(media_type=media_type, digest=digest, size=int(length))

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> str:
        """Store a manifest under the reference's tag (or digest); returns its digest."""
        return self.put_manifest_result(ref, raw, media_type).digest

    def put_manifest_result(self, ref: Reference, raw: bytes, media_type: str) -> ManifestPutResult:
        """Like :meth:`put_manifest`, also reporting the ``OCI-Subject`` header."""
        digest = sha256_digest(raw)
        if ref.digest and ref.digest != digest:
            raise DigestMismatchError(f"manifest for {ref}: its bytes have digest {digest}, not {ref.digest}")
        op = self._op(ref, "PUT", f"manifest {ref.repository}:{ref.identifier}", "pull", "push")
        headers = {"Content-Type": media_type, "Content-Length": str(len(raw))}
        url = self._url(op, ref, "manifests", ref.identifier)
        with self._open("PUT", url, op, headers=headers, body=lambda: split_pieces((raw,), PIECE_SIZE)) as response:
            if response.status_code in (200, 201):
                stored = response.headers.get("docker-content-digest", "")
                if stored.startswith("sha256:") and stored != digest:
                    raise DigestMismatchError(f"registry {op.host} stored manifest {ref} as {stored}, not {digest}")
                return ManifestPutResult(digest=digest, subject=response.headers.get("oci-subject"))
            error = self._error(response, op)
        if response.status_code == 413 or (error.code == "MANIFEST_INVALID" and len(raw) > MAX_MANIFEST_SIZE):
            raise RegistryError(
                f"registry {op.host} refused manifest {ref}: {len(raw)} bytes is over its size limit "
                "(4 MiB is the usual maximum); use fewer layers or shorter annotations",
                status=response.status_code,
                code=error.code,
            )
        raise error

    def delete_manifest(self, ref: Reference) -> None:
        """Delete a manifest by digest (tags pointing at it go too)."""
        if not ref.digest:
            raise UsageError(f"deleting needs a digest, got {ref}: resolve the tag first")
        refused = (
            f"registry {ref.api_host} has deletion disabled, so {ref} stays; ask its operator to enable it "
            "(distribution: storage.delete.enabled: true)"
        )
        self._delete(ref, ref.digest, f"manifest {ref.repository}@{ref.digest}", ("UNSUPPORTED",), refused)

    def _delete(self, ref: Reference, identifier: str, noun: str, refusals: tuple[str, ...], refused: str) -> None:
        """DELETE ``manifests/<identifier>``; a 405 or an error code in ``refusals`` raises
        RegistryError(``refused``) keeping the registry's status and code."""
        op = self._op(ref, "DELETE", noun, "delete")
        with self._open("DELETE", self._url(op, ref, "manifests", identifier), op) as response:
            if response.status_code in (200, 202):
                return
            error = self._error(response, op)
        if response.status_code == 405 or error.code in refusals:
            raise RegistryError(refused, status=response.status_code, code=error.code)
        raise error

    # -- tags and referrers -----------------------------------------------------------------

    def delete_tag(self, ref: Reference) -> None:
        """Delete just the tag ``ref.tag`` (``DELETE /v2/<name>/manifests/<tag>``, spec 1.1).

        Many registries delete manifests by digest only and refuse this: distribution 2.8.2
        answers 400 DIGEST_INVALID, others 405 or UNSUPPORTED. The RegistryError raised then
        keeps the registry's ``status`` and ``code`` so callers can offer the digest instead.
        """
        if not ref.tag:
            raise UsageError(f"deleting a tag needs a tag, got {ref}")
        refused = f"registry {ref.api_host} cannot delete the tag {ref.tag} alone (it deletes manifests by digest only)"
        self._delete(ref, ref.tag, f"tag {ref.repository}:{ref.tag}", ("UNSUPPORTED", "DIGEST_INVALID"), refused)

    def list_tags(self, ref: Reference, *, page_size: int = 1000) -> list[str]:
        """All tags of the repository, sorted (registries may page and may not sort)."""
        return self._read(ref, "GET", f"tags of {ref.repository}", partial(self._list_tags, ref, page_size))

    def _list_tags(self, ref: Reference, page_size: int, op: _Op) -> list[str]:
        url: httpx.URL | None = self._url(op, ref, "tags", "list").copy_merge_params({"n": page_size})
        tags: set[str] = set()
        for _ in range(_MAX_PAGES):
            if url is None:
                return sorted(tags)
            with self._open("GET", url, op) as response:
                if response.status_code != 200:
                    raise self._error(response, op)
                body = self._read_bounded(response, _MAX_TAGS_BODY, op)
                url = _next_link(response)
            try:
                page = json.loads(body).get("tags") or []
                if not isinstance(page, list):
                    raise ValueError("tags is not a list")
            except (ValueError, AttributeError, RecursionError):
                raise SchemaError(f"registry {op.host} sent a malformed tag list for {ref.repository}") from None
            tags.update(tag for tag in page if isinstance(tag, str))
        raise RegistryError(f"registry {op.host} kept paging tags of {ref.repository} past {_MAX_PAGES} pages")

    def referrers(self, ref: Reference, subject_digest: str) -> list[Descriptor] | None:
        """Manifests whose subject is ``subject_digest``, or None if the referrers API is missing.

        None tells the caller to use the ``sha256-<hex>`` fallback tag instead. A mirror without
        the API counts as failing (the next source is asked); only the registry's answer is final.
        """

        def ask(op: _Op) -> list[Descriptor] | None:
            found = self._referrers(ref, subject_digest, op)
            if found is None and op.mirror is not None:
                raise NotFoundError(f"mirror {op.host} has no referrers API")
            return found

        return self._read(ref, "GET", f"referrers of {subject_digest} in {ref.repository}", ask)

    def _referrers(self, ref: Reference, subject_digest: str, op: _Op) -> list[Descriptor] | None:
        url: httpx.URL | None = self._url(op, ref, "referrers", subject_digest)
        found: list[Descriptor] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                return found
            with self._open("GET", url, op, headers={"Accept": INDEX_V1}) as response:
                if response.status_code in (401, 403) or is_retryable_status(response.status_code):
                    raise self._error(response, op)
                if response.status_code != 200 or _media_type(response.headers.get("content-type")) != INDEX_V1:
                    return None
                raw = self._read_manifest(response, op)
                url = _next_link(response)
            found.extend(Index.parse(raw, f"referrers of {subject_digest} from {op.host}").manifests)
        raise RegistryError(f"registry {op.host} kept paging referrers past {_MAX_PAGES} pages")

    def ping(self, registry: str) -> None:
        """Check the registry answers and accepts our credentials (for ``login``)."""
        host = normalise_host(registry)
        api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        op = _Op("GET", "the API root /v2/", api_host, scheme=self.scheme)
        with self._open("GET", httpx.URL(f"{self.scheme}://{api_host}/v2/"), op) as response:
            if response.status_code == 200:
                return
            if response.status_code == 404:
                raise NotFoundError(f"{api_host} does not serve the registry API at /v2/: is it an OCI registry?", 404)
            raise self._error(response, op)

    # -- uploads ----------------------------------------------------------------------------

    def _upload(
        self, ref: Reference, descriptor: Descriptor, body: _UploadBody, op: _Op, mount_from: str | None, chunked: bool
    ) -> None:
        """One whole upload attempt; RetryableFailure restarts it from the POST."""
        session = self._start_upload(ref, descriptor.digest, op, mount_from)
        if session is None:
            return  # mounted
        if not chunked:
            if self._put_whole(descriptor, body, op, session):
                return
            # Refused as too large for one request; that session is spent, so start another.
            session = self._start_upload(ref, descriptor.digest, op, None)
            assert session is not None  # only a mount returns None
        self._upload_chunks(descriptor, body, op, session)

    def _start_upload(
        self, ref: Reference, digest: str | None, op: _Op, mount_from: str | None
    ) -> _UploadSession | None:
        """POST an upload session; None if the blob (``digest``) got mounted instead."""
        url = self._url(op, ref, "blobs", "uploads", "")
        if mount_from and digest:
            url = url.copy_merge_params({"mount": digest, "from": mount_from})
        with self._open("POST", url, op, retry=False) as response:
            if response.status_code == 201 and mount_from:
                return None
            location = response.headers.get("location")
            if response.status_code != 202 or not location:
                raise self._upload_error(response, op)
            min_chunk = response.headers.get("oci-chunk-min-length", "")
            return _UploadSession(response.url.join(location), int(min_chunk) if min_chunk.isdigit() else 0)

    def _put_whole(self, descriptor: Descriptor, body: _UploadBody, op: _Op, session: _UploadSession) -> bool:
        """The streamed monolithic PUT; False if the registry wants chunks instead (413/416)."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(descriptor.size)}
        url = session.location.copy_merge_params({"digest": descriptor.digest})
        with self._open("PUT", url, op, headers=headers, body=body.open, retry=False) as response:
            if response.status_code in (201, 204):
                return True
            if response.status_code in (413, 416):
                return False
            raise self._upload_error(response, op)

    def _upload_chunks(self, descriptor: Descriptor, body: _UploadBody, op: _Op, session: _UploadSession) -> None:
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
            with self._open("PATCH", location, op, headers=headers, body=partial(iter, group), retry=False) as response:
                new_location = response.headers.get("location")
                if response.status_code != 202 or not new_location:
                    raise self._upload_error(response, op)
                location = response.url.join(new_location)  # state lives in the newest Location
            offset += length
        url = location.copy_merge_params({"digest": descriptor.digest})
        with self._open("PUT", url, op, headers={"Content-Length": "0"}, retry=False) as response:
            if response.status_code not in (201, 204):
                raise self._upload_error(response, op)

    def _upload_error(self, response: httpx.Response, op: _Op) -> OcimodelError:
        error = self._error(response, op)
        if isinstance(error, RegistryError) and error.code == "DIGEST_INVALID":
            return DigestMismatchError(
                f"registry {op.host} computed another digest for {op.noun}: the content changed while "
                "pushing, or the descriptor is wrong"
            )
        return error

    # -- reading responses ------------------------------------------------------------------

    def _blob_start(self, response: httpx.Response, descriptor: Descriptor, offset: int, op: _Op) -> int:
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
            raise self._error(response, op)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) != descriptor.size - start:
            raise SizeMismatchError(
                f"registry {op.host} announced {int(length)} bytes for {op.noun} from byte {start}, "
                f"but its descriptor declares {descriptor.size}; refusing it"
            )
        return start

    def _read_manifest(self, response: httpx.Response, op: _Op) -> bytes:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
            raise SchemaError(f"{op.noun} from {op.host} is {length} bytes, over the 4 MiB limit; refusing it")
        return self._read_bounded(response, MAX_MANIFEST_SIZE, op)

    def _read_bounded(self, response: httpx.Response, limit: int, op: _Op) -> bytes:
        """The whole (decoded) body, refusing to buffer more than ``limit`` bytes."""
        body = bytearray()
        try:
            with self.timeouts.deadline():
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > limit:
                        raise SchemaError(f"{op.noun} from {op.host} is over the {limit}-byte limit; refusing it")
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException):
                raise NetworkError(
                    f"registry {op.host} sent {op.noun} too slowly: not complete within {self.timeouts.response:g} s "
                    "(--timeout sets the limit)"
                ) from None
            raise NetworkError(f"connection to {op.host} lost reading {op.noun} ({type(exc).__name__})") from None
        return bytes(body)

    def _error(self, response: httpx.Response, op: _Op) -> RegistryError:
        """The error for an unexpected answer: one line naming the operation and the fix."""
        status, host = response.status_code, op.host
        try:
            body = b"" if response.request.method == "HEAD" else self._read_bounded(response, _MAX_ERROR_BODY, op)
        except OcimodelError:
            body = b""
        code, detail = _error_detail(body)
        suffix = f": {detail}" if detail else ""
        if status == 401:
            auth = self._auth_for(op)
            if not auth.has_credentials(host):
                return AuthError(f"authentication required for {host}: {auth.login_hint(host)}", status, code)
            if response.headers.get("www-authenticate", "").lower().startswith("basic"):
                return AuthError(f"wrong username or password for {host}", status, code)
            return AuthError(
                f"registry {host} denied {op.verb} {op.noun}{suffix} (401): check the account's access "
                f"or run 'ocimodel login {host}' again",
                status,
                code,
            )
        if status == 403:
            return AuthError(
                f"registry {host} forbids {op.verb} {op.noun}{suffix} (403): check the account's permissions",
                status,
                code,
            )
        if status == 404:
            return NotFoundError(f"{op.noun} not found on registry {host}{suffix}", status, code)
        if status == 400 and b"HTTP request to an HTTPS server" in body:
            return RegistryError(f"registry {host} speaks https: drop --plain-http / {_PLAIN_HTTP_ENV}", status)
        return RegistryError(f"registry {host} refused {op.verb} {op.noun}{suffix} ({status})", status, code)

    # -- sending ----------------------------------------------------------------------------

    def _op(self, ref: Reference, verb: str, noun: str, *actions: str, scopes: Sequence[str] = ()) -> _Op:
        wanted = tuple(scopes) or (repository_scope(ref.repository, *actions),)
        return _Op(verb, noun, ref.api_host, wanted, self.scheme)

    def _url(self, op: _Op, ref: Reference, *parts: str) -> httpx.URL:
        """The URL of ``parts`` in ``ref``'s repository, on the registry or mirror ``op`` goes to."""
        prefix = op.mirror.prefix if op.mirror else ""
        url = httpx.URL(f"{op.scheme}://{op.host}{prefix}/v2/{ref.repository}/" + "/".join(parts))
        # Like containerd: tell a mirror which registry is meant (Spegel, Dragonfly need it).
        return url.copy_merge_params({"ns": ref.registry}) if op.mirror else url

    # -- mirrors ----------------------------------------------------------------------------

    def _read(
        self, ref: Reference, verb: str, noun: str, call: Callable[[_Op], T], digest: str | None = None
    ) -> T:
        """``call(op)`` on each usable mirror of ``ref``'s registry in turn, then on the registry.

        Any failure of a mirror is logged and the next source tried; the registry's own answer,
        or error, is final. ``digest`` (of the content read) skips mirrors that served it wrong.
        """
        origin = self._op(ref, verb, noun, "pull")
        mirrors = self.mirrors.get(registry_key(ref.registry), ())
        for mirror in mirrors:
            if not self._mirror_usable(mirror, digest):
                continue
            op = replace(origin, host=mirror.host, scheme=mirror.scheme, mirror=mirror)
            try:
                result = call(op)
            except (OcimodelError, RetryableFailure) as exc:
                self._mirror_failed(mirror, exc, op)
                continue
            logger.info("%s %s: served by mirror %s", verb, noun, mirror)
            return result
        result = call(origin)
        if mirrors:
            logger.info("%s %s: served by registry %s", verb, noun, origin.host)
        return result

    def _mirror_usable(self, mirror: Mirror, digest: str | None) -> bool:
        with self._mirror_lock:
            if digest and (mirror, digest) in self._mirror_bad:
                return False
            return self._mirror_down.get(mirror, 0.0) <= time.monotonic()

    def _mirror_failed(self, mirror: Mirror, exc: Exception, op: _Op) -> None:
        error = exc.error if isinstance(exc, RetryableFailure) else exc
        if isinstance(error, IntegrityError):
            logger.warning("mirror %s served bad content for %s (%s); using the next source", mirror, op.noun, error)
            return
        if isinstance(exc, RetryableFailure) or isinstance(error, (NetworkError, StalledError)):
            # Unreachable, failing (5xx, 429) or too slow: skip it for a while instead of waiting on every read.
            with self._mirror_lock:
                self._mirror_down[mirror] = time.monotonic() + MIRROR_COOLDOWN
        logger.info("mirror %s failed %s %s (%s); using the next source", mirror, op.verb, op.noun, error)

    def _mark_bad(self, mirror: Mirror, digest: str, fault: str) -> None:
        logger.warning("mirror %s served blob %s %s; using the next source", mirror, digest, fault)
        with self._mirror_lock:
            self._mirror_bad.add((mirror, digest))

    def _mirrored_badly(self, digest: str) -> bool:
        with self._mirror_lock:
            return any(bad == digest for _, bad in self._mirror_bad)

    def _auth_for(self, op: _Op) -> Authenticator:
        return self._mirror_auth if op.mirror else self._auth

    # -- sending ----------------------------------------------------------------------------

    @contextmanager
    def _open(
        self,
        method: str,
        url: httpx.URL,
        op: _Op,
        *,
        headers: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        retry: bool = True,
    ) -> Iterator[httpx.Response]:
        """Send with auth and redirects; yields the open (streaming) response, closed after.

        Retryable failures (408/429/5xx, connection errors) are retried here when ``retry``;
        otherwise they propagate as RetryableFailure so the caller can restart a larger unit
        (an upload restarts from its POST). A mirror is never retried: the next source is.
        """

        def attempt() -> httpx.Response:
            try:
                response = self._authorized(method, url, op, dict(headers or {}), body)
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, op) from None
            if is_retryable_status(response.status_code):
                error = self._error(response, op)
                response.close()
                raise RetryableFailure(NetworkError(str(error)), parse_retry_after(response.headers.get("retry-after")))
            return response

        if retry and op.mirror is None:
            response = self.retry.run(attempt, budget=self.timeouts.retry_budget)
        else:
            response = attempt()
        try:
            yield response
        finally:
            response.close()

    def _authorized(
        self, method: str, url: httpx.URL, op: _Op, headers: dict[str, str], body: BodyFactory | None
    ) -> httpx.Response:
        auth = self._auth_for(op)
        sent = auth.authorization(op.host, op.scopes)
        response = self._follow(method, url, op, headers, body, sent)
        challenge = response.headers.get("www-authenticate")
        # Only the registry's own challenge counts: one from a host it redirected to would
        # have us send the registry's credentials to that host's token realm.
        if response.status_code != 401 or not challenge or not _same_origin(response.url, op):
            return response
        retry_with = auth.on_challenge(op.host, challenge, op.scopes, sent)
        if retry_with is None:
            return response  # unread: _error reports its body
        response.close()
        return self._follow(method, url, op, headers, body, retry_with)

    def _follow(
        self,
        method: str,
        url: httpx.URL,
        op: _Op,
        headers: dict[str, str],
        body: BodyFactory | None,
        authorization: str | None,
    ) -> httpx.Response:
        """Send, following redirects; ``Authorization`` goes to the registry's own origin only."""
        for _ in range(_MAX_REDIRECTS + 1):
            hop_headers = dict(headers)
            if authorization and _same_origin(url, op):
                hop_headers["Authorization"] = authorization
            request = self._http.build_request(method, url, headers=hop_headers, content=body() if body else None)
            with self.timeouts.deadline():
                response = self._http.send(request, stream=True)
            self._log_warnings(response, op)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                return response
            response.close()
            url = response.url.join(location)
            if response.status_code == 303:
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
        raise NetworkError(f"registry {op.host} redirected {op.verb} {op.noun} more than {_MAX_REDIRECTS} times")

    @staticmethod
    def _log_warnings(response: httpx.Response, op: _Op) -> None:
        for value in response.headers.get_list("warning"):
            match = _WARNING_RE.match(value)
            if match:
                logger.warning("registry %s: %s", op.host, match.group(1))

    def _transport_failure(self, exc: httpx.TransportError, op: _Op) -> Exception:
        """A connection-level failure as an error with a hint; retryable ones wrapped."""
        text = str(exc)
        host = op.host
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return NetworkError(f"certificate verify failed for {host}: pass --ca-file or --insecure")
        if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text or "wrong version number" in text:
            return NetworkError(f"TLS handshake with {host} failed: if it serves plain http, pass --plain-http")
        limits = "--timeout / OCIMODEL_TIMEOUT sets the limit"
        if isinstance(slowness(exc), ResponseTooSlow):
            error = NetworkError(
                f"registry {host} did not answer {op.verb} {op.noun} within {self.timeouts.response:g} s "
                f"(no complete response headers; {limits})"
            )
        elif isinstance(exc, httpx.ConnectTimeout):
            error = NetworkError(
                f"cannot connect to registry {host} within {self.timeouts.connect:g} s ({op.verb} {op.noun}): "
                f"check the host, port and network ({limits})"
            )
        elif isinstance(exc, httpx.TimeoutException):
            error = NetworkError(f"timed out talking to registry {host} ({op.verb} {op.noun}; {limits}); try again later")
        elif isinstance(exc, httpx.ConnectError):
            error = NetworkError(f"cannot connect to registry {host} ({text}): check the host, port and network")
        else:
            error = NetworkError(
                f"connection to registry {host} failed during {op.verb} {op.noun}: {type(exc).__name__}: {text}"
            )
        return RetryableFailure(error)
