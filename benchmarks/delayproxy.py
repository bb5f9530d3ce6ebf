"""A TCP proxy that puts a real-network latency and bandwidth between a client and a registry.

    proxy = DelayProxy("127.0.0.1", 5000, one_way_delay=0.040, bandwidth=100e6).start()
    ...  # talk to proxy.host instead of the registry
    proxy.counts()  # Counts(connections=..., requests=..., ...)
    proxy.stop()

Used by ``benchmarks/latency.py`` and by the tests (``tests/integration/test_delayproxy.py``
and the request-count tests), which add ``benchmarks/`` to ``sys.path``.

What it models, per connection and direction (client -> registry, registry -> client):

- **Bandwidth**: one token bucket per direction, shared by every connection (a full-duplex
  link: uploads and downloads each get ``bandwidth`` bytes/s, all connections share it). It is
  a virtual clock: each chunk read reserves ``len / bandwidth`` seconds of the link after the
  previous reservation, so the long-run rate is exact whatever the chunk sizes.
- **Delay**: a chunk is delivered ``one_way_delay`` after its transmission ends on that link.
- **The TCP handshake**: the kernel accepts the client at once, but on a real link
  ``connect()`` returns one round trip later; so nothing the client sends reaches the
  registry before ``accept + 3 × one_way_delay`` (SYN, SYN-ACK, then the data's own trip).
  A client that opens a new connection per request pays that round trip each time, as it
  would on a real network.

Bounded memory: each direction of a connection queues at most ``bandwidth × delay + 2 MiB``
(16 MiB without a bandwidth cap) before it stops reading; TCP back-pressure does the rest.

Counting: ``connections`` accepted, and ``requests``: HTTP/1.1 request heads seen client ->
registry. The client's stream is parsed just enough to skip bodies (``Content-Length`` or
``chunked``), so a request line inside a pushed blob is never counted. A stream that stops
looking like HTTP/1.1 is still forwarded but no longer counted (``unparsed`` says so).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

CHUNK = 256 * 1024
_MAX_HEAD = 64 * 1024
_NO_CAP_QUEUE = 16 * 1024 * 1024
_QUEUE_SLACK = 2 * 1024 * 1024
_MIN_SLEEP = 0.001  # below this a pending wait is folded into the next one (the clock stays exact)
_REQUEST_LOG = 4096  # request lines remembered (the counters themselves are unbounded ints)


@dataclass(frozen=True)
class Counts:
    """A snapshot of what went through the proxy since it started (or the last :meth:`reset`)."""

    connections: int
    requests: int
    by_method: dict[str, int]
    request_lines: list[str]  # "METHOD target", the last few thousand
    bytes_up: int  # client -> registry
    bytes_down: int  # registry -> client
    unparsed: int  # connections whose client stream stopped parsing as HTTP/1.1


class _Link:
    """One direction of the shared link: a virtual clock of when the wire is free again."""

    def __init__(self) -> None:
        self.free_at = 0.0

    def reserve(self, nbytes: int, bandwidth: float | None, now: float) -> float:
        """When the last of ``nbytes`` sent now has left the wire."""
        if not bandwidth:
            return now
        start = max(now, self.free_at)
        self.free_at = start + nbytes / bandwidth
        return self.free_at


class _RequestParser:
    """Finds request heads in a client's byte stream, skipping message bodies."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.state = "head"  # head | body | chunk-size | chunk-data | chunk-crlf | trailers | broken
        self.left = 0
        self.reported = False  # counted once in ``unparsed``

    def feed(self, data: bytes) -> list[str]:
        """Request lines ("METHOD target") completed by ``data``."""
        found: list[str] = []
        view = memoryview(data)
        while view and self.state != "broken":
            if self.state in ("body", "chunk-data"):
                take = min(self.left, len(view))
                self.left -= take
                view = view[take:]
                if self.left == 0:
                    self.state = "chunk-crlf" if self.state == "chunk-data" else "head"
                continue
            # Line-oriented states: buffer up to the next CRLF (or the head's end).
            self.buffer += view
            view = view[len(view):]
            found += self._lines()
            if self.state in ("body", "chunk-data") and self.buffer:
                rest, self.buffer = bytes(self.buffer), bytearray()
                found += self.feed(rest)
        return found

    def _lines(self) -> list[str]:
        found: list[str] = []
        while self.state not in ("body", "chunk-data", "broken"):
            if self.state == "head":
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > _MAX_HEAD:
                        self.state = "broken"
                    return found
                head, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 4:]
                line = self._head(head)
                if line is None:
                    self.state = "broken"
                    return found
                found.append(line)
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.state = "broken"
                return found
            text, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 2:]
            if self.state == "chunk-crlf":
                self.state = "chunk-size" if text == b"" else "broken"
            elif self.state == "chunk-size":
                try:
                    size = int(text.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.state = "broken"
                    return found
                self.state, self.left = ("trailers", 0) if size == 0 else ("chunk-data", size)
            elif self.state == "trailers":
                if text == b"":
                    self.state = "head"
        return found

    def _head(self, head: bytes) -> str | None:
        lines = head.split(b"\r\n")
        while lines and lines[0] == b"":  # tolerated stray CRLFs between requests (RFC 9112 2.2)
            lines.pop(0)
        parts = lines[0].split(b" ") if lines else []
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return None
        length, chunked = 0, False
        for raw in lines[1:]:
            name, _, value = raw.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return None
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            self.state = "chunk-size"
        elif length > 0:
            self.state, self.left = "body", length
        return f"{parts[0].decode('latin-1')} {parts[1].decode('latin-1')}"


@dataclass
class _Stats:
    connections: int = 0
    requests: int = 0
    by_method: collections.Counter[str] = field(default_factory=collections.Counter)
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_REQUEST_LOG))
    bytes_up: int = 0
    bytes_down: int = 0
    unparsed: int = 0


class DelayProxy:
    """The proxy, run by an asyncio loop in a daemon thread (``start`` / ``stop``).

    ``one_way_delay`` (seconds) and ``bandwidth`` (bytes/s, ``None`` = no cap) may be changed
    between uses; a change applies to chunks read after it.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, one_way_delay: float = 0.0,
                 bandwidth: float | None = None, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.one_way_delay = one_way_delay
        self.bandwidth = bandwidth
        self.listen_host = listen_host
        self.port = 0
        self._stats = _Stats()
        self._lock = threading.Lock()
        self._links = {"up": _Link(), "down": _Link()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        """``host:port`` to give the client instead of the registry's."""
        return f"{self.listen_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "DelayProxy":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.listen_host, 0, limit=CHUNK))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="delayproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the delay proxy did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> "DelayProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ---------------------------------------------------------------------------

    def counts(self) -> Counts:
        with self._lock:
            s = self._stats
            return Counts(s.connections, s.requests, dict(s.by_method), list(s.lines), s.bytes_up, s.bytes_down,
                          s.unparsed)

    def reset(self) -> None:
        """Zero the counters (connections still open are not counted again)."""
        with self._lock:
            self._stats = _Stats()

    # -- forwarding -------------------------------------------------------------------------

    def _queue_limit(self) -> int:
        if not self.bandwidth:
            return _NO_CAP_QUEUE
        # What the wire holds in flight during one delay, plus room to keep it full.
        return int(self.bandwidth * self.one_way_delay) + _QUEUE_SLACK

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        accepted = time.monotonic()
        with self._lock:
            self._stats.connections += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=CHUNK)
            except OSError:
                client_writer.close()
                return
            # The handshake's round trip, then the first bytes' own trip (see the module doc).
            not_before = accepted + 3 * self.one_way_delay
            directions = [
                asyncio.ensure_future(self._pipe(client_reader, up_writer, "up", not_before, _RequestParser())),
                asyncio.ensure_future(self._pipe(up_reader, client_writer, "down", 0.0, None)),
            ]
            try:
                # One side ending cleanly half-closes the other; an error ends both.
                await asyncio.gather(*directions)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                for d in directions:
                    d.cancel()
                await asyncio.gather(*directions, return_exceptions=True)
                for writer in (up_writer, client_writer):
                    writer.close()
        except asyncio.CancelledError:
            pass  # stop(): the connection handler ends quietly (asyncio would log a cancelled handler)
        finally:
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str,
                    not_before: float, parser: _RequestParser | None) -> None:
        """Read, stamp each chunk with its delivery time, deliver it then (a bounded delay line)."""
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        queued = 0
        wake_writer = asyncio.Event()
        room = asyncio.Event()
        room.set()
        done = False

        async def deliver() -> None:
            nonlocal queued
            while True:
                while not queue:
                    if done:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    wake_writer.clear()
                    await wake_writer.wait()
                at, data = queue[0]
                wait = at - time.monotonic()
                if wait > _MIN_SLEEP:
                    await asyncio.sleep(wait)
                queue.popleft()
                queued -= len(data)
                if queued <= self._queue_limit():
                    room.set()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                if not room.is_set():
                    has_room = asyncio.ensure_future(room.wait())
                    await asyncio.wait({has_room, sender}, return_when=asyncio.FIRST_COMPLETED)
                    has_room.cancel()
                    if sender.done():
                        break
                data = await reader.read(CHUNK)
                if not data:
                    break
                now = time.monotonic()
                leaves = self._links[direction].reserve(len(data), self.bandwidth, now)
                self._count(direction, data, parser)
                queue.append((max(leaves + self.one_way_delay, not_before), data))
                queued += len(data)
                if queued > self._queue_limit():
                    room.clear()
                wake_writer.set()
            done = True
            wake_writer.set()
            await sender
        finally:
            sender.cancel()

    def _count(self, direction: str, data: bytes, parser: _RequestParser | None) -> None:
        lines = parser.feed(data) if parser is not None and parser.state != "broken" else []
        with self._lock:
            s = self._stats
            if direction == "up":
                s.bytes_up += len(data)
            else:
                s.bytes_down += len(data)
            for line in lines:
                s.requests += 1
                s.by_method[line.split(" ", 1)[0]] += 1
                s.lines.append(line)
            if parser is not None and parser.state == "broken" and not parser.reported:
                parser.reported = True
                s.unparsed += 1
