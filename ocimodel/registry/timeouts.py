"""How long a registry may keep us waiting: one :class:`Timeouts` value, enforced under httpx.

httpx's own timeouts bound each socket operation, so a server that dribbles a byte every few
seconds never trips them and a command can hang for hours. Three rules close that gap:

- a **response deadline**: the response headers must arrive within ``response`` seconds of
  the request's last byte going out (connecting has its own ``connect`` limit); a small body
  read whole (a manifest, a token answer, an error, a tag list) gets ``response`` seconds too;
- an **idle limit** on bodies that stream (blobs): no byte for ``idle`` seconds;
- a **minimum progress** on those bodies: at least ``progress_bytes`` per ``idle`` seconds that
  the server keeps us waiting (time our own side spends writing or hashing does not count),
  so a trickle that dodges the idle limit still fails, in bounded time.

They are enforced by a thin wrapper around httpcore's network stream, the one place every byte
passes, the direct blob reads of ``blobs._body_pieces`` included; the cost is two monotonic
clock reads per socket read (reads are up to 1 MiB). Which rule applies to a read is a
per-thread phase: the client opens a :meth:`Timeouts.deadline` around sending a request and
around reading a small body; everything else is streaming.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import httpcore
import httpx

from ..errors import UsageError

TIMEOUT_ENV = "OCIMODEL_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 86400.0
#: A streamed body must bring at least this much per ``idle`` seconds of waiting (≈1 KiB/s at 60 s).
PROGRESS_BYTES = 64 * 1024
#: Retries of one request stop once this many ``response`` limits have been spent on it.
RETRY_BUDGET_FACTOR = 3.0


@dataclass(frozen=True)
class Timeouts:
    """Every limit on waiting for a registry, in seconds; see the module docstring.

    ``--timeout SECONDS`` / ``OCIMODEL_TIMEOUT`` set them all from one number
    (:meth:`of`); the defaults are :meth:`of` 60 s.
    """

    connect: float = DEFAULT_TIMEOUT
    response: float = DEFAULT_TIMEOUT
    idle: float = DEFAULT_TIMEOUT
    progress_bytes: int = PROGRESS_BYTES
    retry_budget: float = RETRY_BUDGET_FACTOR * DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "response", "idle", "retry_budget"):
            _check_seconds(getattr(self, name), f"Timeouts.{name}")
        if self.progress_bytes < 0:
            raise UsageError("Timeouts.progress_bytes must be 0 or more")

    @classmethod
    def of(cls, seconds: float) -> "Timeouts":
        """Every limit from one number, as ``--timeout`` gives it (retries get 3 times that)."""
        _check_seconds(seconds, "--timeout")
        return cls(seconds, seconds, seconds, PROGRESS_BYTES, RETRY_BUDGET_FACTOR * seconds)

    @classmethod
    def resolve(cls, value: "float | Timeouts | None", env: Mapping[str, str]) -> "Timeouts":
        """``value`` as Timeouts; None means ``OCIMODEL_TIMEOUT`` if set, else the defaults."""
        if isinstance(value, Timeouts):
            return value
        if value is not None:
            return cls.of(float(value))
        text = env.get(TIMEOUT_ENV, "").strip()
        if not text:
            return cls()
        try:
            seconds = float(text)
        except ValueError:
            raise UsageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
        return cls.of(seconds)

    def for_httpx(self) -> httpx.Timeout:
        """httpx's per-operation limits: ``connect``, and ``idle`` for each read and write."""
        return httpx.Timeout(connect=self.connect, read=self.idle, write=self.idle, pool=self.response)

    def deadline(self) -> AbstractContextManager[None]:
        """Within this block, reads on this thread must be done ``response`` seconds after the
        last write (a request's last byte), or they fail with :class:`ResponseTooSlow`."""
        return _deadline(self.response)


def _check_seconds(value: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise UsageError(f"{what} must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}, got {value!r}")


class ResponseTooSlow(httpcore.ReadTimeout):
    """The response (headers, or a small body read whole) was not complete within ``limit`` s."""

    def __init__(self, limit: float) -> None:
        super().__init__(f"no complete response within {limit:g} s")
        self.limit = limit


class BodyTooSlow(httpcore.ReadTimeout):
    """A streamed body brought fewer than ``progress_bytes`` in ``window`` seconds of waiting."""

    def __init__(self, received: int, window: float) -> None:
        super().__init__(f"{received} bytes in {window:g} s of waiting")
        self.received = received
        self.window = window


def slowness(exc: BaseException) -> httpcore.ReadTimeout | None:
    """The :class:`ResponseTooSlow` or :class:`BodyTooSlow` behind ``exc`` (httpx wraps them), or None."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, (ResponseTooSlow, BodyTooSlow)):
            return candidate
    return None


class _Phase(threading.local):
    """This thread's response deadline (a monotonic time) and its length; None when streaming."""

    deadline: float | None = None
    limit: float = 0.0


_phase = _Phase()


@contextmanager
def _deadline(limit: float) -> Iterator[None]:
    saved = (_phase.deadline, _phase.limit)
    _phase.deadline, _phase.limit = time.monotonic() + limit, limit
    try:
        yield
    finally:
        _phase.deadline, _phase.limit = saved


class _GuardedStream(httpcore.NetworkStream):
    """A network stream that applies the response deadline, or the idle and progress rules."""

    def __init__(self, inner: httpcore.NetworkStream, timeouts: Timeouts) -> None:
        self._inner = inner
        self._timeouts = timeouts
        self._waited = 0.0  # seconds spent blocked in read() since the progress window began
        self._received = 0  # bytes read in that time

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = _phase.deadline
        if deadline is not None:
            self._waited, self._received = 0.0, 0  # a new response: its body starts a fresh window
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResponseTooSlow(_phase.limit)
            try:
                return self._inner.read(max_bytes, remaining if timeout is None else min(timeout, remaining))
            except httpcore.ReadTimeout:
                if time.monotonic() >= deadline:
                    raise ResponseTooSlow(_phase.limit) from None
                raise
        started = time.monotonic()
        data = self._inner.read(max_bytes, timeout)
        self._waited += time.monotonic() - started
        self._received += len(data)
        if self._waited >= self._timeouts.idle:
            if self._received < self._timeouts.progress_bytes:
                raise BodyTooSlow(self._received, self._waited)
            self._waited, self._received = 0.0, 0
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)
        if _phase.deadline is not None:
            # The answer is due ``limit`` seconds after the request's last byte, however long
            # a large upload took to send.
            _phase.deadline = time.monotonic() + _phase.limit

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _GuardedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._timeouts)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects like ``inner`` and hands out guarded streams."""

    def __init__(self, inner: httpcore.NetworkBackend, timeouts: Timeouts) -> None:
        self._inner = inner
        self._timeouts = timeouts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream, self._timeouts)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _GuardedStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._timeouts)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guard(client: httpx.Client, timeouts: Timeouts) -> None:
    """Put the guarded stream under every connection pool of ``client`` (proxies included).

    httpx offers no public way to choose httpcore's network backend, so this sets the pools'
    backend attribute; a future httpx without it fails here, loudly, rather than leaving every
    wait unbounded.
    """
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        if transport is None:  # a NO_PROXY mount: the default transport serves it
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            raise RuntimeError(
                f"cannot bound registry waits with httpx {httpx.__version__} / httpcore {httpcore.__version__}: "
                "install the versions ocimodel supports (httpx<1)"
            )
        setattr(pool, "_network_backend", _GuardedBackend(backend, timeouts))
