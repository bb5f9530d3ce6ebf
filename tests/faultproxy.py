"""A small threaded TCP proxy that injects real network faults between a client and a registry.

Real sockets, real resets: the client under test sees exactly what a flaky network or an
overloaded registry does to it. Each request travels on its own upstream connection (the proxy
adds ``Connection: close`` to the request, so the end of the upstream stream is the end of the
response and no response parsing is needed); the registry's ``Connection: close`` reply makes
the client open a fresh connection for its next request, so faults apply per request.

Faults are :class:`Fault` rules, added or changed at runtime; the first rule matching a request
(method + path regex) fires, and is dropped after ``times`` uses. A rule can:

- answer ``status`` itself (503, 429 with ``Retry-After``...) without asking the registry;
- cut the connection (TCP reset) after ``cut_response_after`` bytes of the response or
  ``cut_request_after`` bytes of the request, or close it cleanly (FIN, as a server that
  gives up does) after ``close_response_after`` bytes of the response;
- ``stall`` for some seconds after ``stall_after`` response bytes, then carry on;
- ``dribble``: after ``dribble_after`` response bytes (counted from the end of the response
  head with ``dribble_body``), send the rest one byte at a time, ``dribble`` seconds apart
  (a slow-loris server: every byte comes well within any per-read timeout).

Every loop is bounded (socket timeouts, an idle limit) and all threads are daemons, so a broken
test cannot hang the session; :meth:`FaultProxy.stop` ends everything.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_IDLE_LIMIT = 30.0  # seconds without traffic before a connection is given up
_POLL = 0.05
_MAX_HEAD = 64 * 1024


@dataclass
class Fault:
    """One fault rule; ``None`` matchers match anything."""

    method: str | None = None
    path: str | None = None  # regex searched in the request path
    times: int = 1
    status: int | None = None
    retry_after: str | None = None
    cut_response_after: int | None = None
    close_response_after: int | None = None  # like cut_response_after, but a clean close (FIN)
    cut_request_after: int | None = None
    stall: float = 0.0
    stall_after: int = 0
    dribble: float = 0.0
    dribble_after: int = 0
    dribble_body: bool = False
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, path) is not None
        )


@dataclass
class Exchange:
    """One request that went through the proxy, and what happened to it."""

    method: str
    path: str
    head: bytes
    fault: Fault | None
    response_bytes: int = 0
    request_bytes: int = 0


@dataclass
class _Counters:
    exchanges: list[Exchange] = field(default_factory=list)


class FaultProxy:
    """Listen on 127.0.0.1, forward to ``upstream`` (``host:port``), inject the configured faults."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.faults: list[Fault] = []
        self._counters = _Counters()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL * 4)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)

    # -- configuration and inspection -------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        """Add a rule (checked after the ones already there)."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every rule and the exchange log."""
        with self._lock:
            self.faults.clear()
            self._counters = _Counters()

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._counters.exchanges)

    def bytes_served(self, path_regex: str, method: str = "GET") -> int:
        """Response bytes (headers included) sent to the client for matching requests."""
        return sum(
            e.response_bytes for e in self.exchanges if e.method == method and re.search(path_regex, e.path)
        )

    def count(self, path_regex: str, method: str | None = None) -> int:
        """How many requests matched."""
        return sum(
            1 for e in self.exchanges if (method is None or e.method == method) and re.search(path_regex, e.path)
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True).start()

    # -- one client connection: one request -----------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(_IDLE_LIMIT)
            head, rest = _read_head(client)
            if head is None:
                return
            method, path = _request_line(head)
            fault = self._take_fault(method, path)
            exchange = Exchange(method, path, head, fault)
            with self._lock:
                self._counters.exchanges.append(exchange)
            if fault and fault.status is not None:
                self._answer(client, head, rest, fault, exchange)
                return
            upstream = socket.create_connection(self.upstream, timeout=_IDLE_LIMIT)
            upstream.sendall(_force_close(head) + rest)
            exchange.request_bytes += len(rest)
            self._pump(client, upstream, fault, exchange)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    if fault.fired >= fault.times:
                        self.faults.remove(fault)
                    return fault
        return None

    def _answer(self, client: socket.socket, head: bytes, rest: bytes, fault: Fault, exchange: Exchange) -> None:
        """Reply ``fault.status`` ourselves, after reading the request body so the client sees it."""
        length = _content_length(head)
        received = len(rest)
        deadline = time.monotonic() + _IDLE_LIMIT
        while received < length and time.monotonic() < deadline and not self._stopped.is_set():
            chunk = client.recv(1024 * 1024)
            if not chunk:
                break
            received += len(chunk)
        body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by faultproxy"}]}'
        lines = [
            f"HTTP/1.1 {fault.status} Injected",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if fault.retry_after is not None:
            lines.append(f"Retry-After: {fault.retry_after}")
        reply = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        client.sendall(reply)
        exchange.response_bytes += len(reply)

    def _pump(self, client: socket.socket, upstream: socket.socket, fault: Fault | None, exchange: Exchange) -> None:
        """Copy both ways until upstream ends the response; apply cuts and stalls."""
        stalled = False
        head_seen = b""
        last = time.monotonic()
        open_in = True
        while not self._stopped.is_set():
            readable, _, _ = select.select([client, upstream] if open_in else [upstream], [], [], _POLL)
            if not readable:
                if time.monotonic() - last > _IDLE_LIMIT:
                    return
                continue
            last = time.monotonic()
            if client in readable:
                data = client.recv(1024 * 1024)
                if not data:
                    open_in = False
                else:
                    if fault and fault.cut_request_after is not None:
                        allowed = fault.cut_request_after - exchange.request_bytes
                        if len(data) >= allowed:
                            upstream.sendall(data[: max(0, allowed)])
                            _reset(client)
                            _reset(upstream)
                            return
                    upstream.sendall(data)
                    exchange.request_bytes += len(data)
            if upstream in readable:
                data = upstream.recv(1024 * 1024)
                if not data:
                    return
                if fault and fault.dribble:
                    head_seen = self._dribble(client, data, fault, exchange, head_seen)
                    continue
                if fault and fault.stall and not stalled and exchange.response_bytes + len(data) > fault.stall_after:
                    keep = max(0, fault.stall_after - exchange.response_bytes)
                    client.sendall(data[:keep])
                    exchange.response_bytes += keep
                    data = data[keep:]
                    stalled = True
                    self._stopped.wait(fault.stall)
                limit = None if fault is None else (
                    fault.cut_response_after if fault.cut_response_after is not None else fault.close_response_after
                )
                if fault and limit is not None:
                    allowed = limit - exchange.response_bytes
                    if len(data) >= allowed:
                        client.sendall(data[: max(0, allowed)])
                        exchange.response_bytes += max(0, allowed)
                        if fault.cut_response_after is not None:
                            _reset(client)
                        else:
                            client.shutdown(socket.SHUT_RDWR)
                        return
                client.sendall(data)
                exchange.response_bytes += len(data)


    def _dribble(self, client: socket.socket, data: bytes, fault: Fault, exchange: Exchange, head: bytes) -> bytes:
        """Send ``data`` at full speed up to the dribble point, then byte by byte; returns the head so far."""
        start = fault.dribble_after
        if fault.dribble_body:
            if b"\r\n\r\n" not in head:
                head += data[: _MAX_HEAD]
            end = head.find(b"\r\n\r\n")
            start = fault.dribble_after + (end + 4 if end >= 0 else len(head) + len(data))
        fast = max(0, start - exchange.response_bytes)
        client.sendall(data[:fast])
        exchange.response_bytes += min(fast, len(data))
        for index in range(fast, len(data)):
            if self._stopped.wait(fault.dribble):
                return head
            client.sendall(data[index : index + 1])  # raises once the client gave up: the exchange ends
            exchange.response_bytes += 1
        return head


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """The request head (up to the blank line) and whatever body bytes came with it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk or len(buffer) > _MAX_HEAD:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _request_line(head: bytes) -> tuple[str, str]:
    method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, path


def _content_length(head: bytes) -> int:
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return int(match.group(1)) if match else 0


def _force_close(head: bytes) -> bytes:
    """The head with ``Connection: close``: upstream then ends the stream after its response."""
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Relay:
    """A transparent TCP relay to ``upstream`` that counts client connections (no HTTP parsing,
    no ``Connection: close``: keep-alive is the client's to use), optionally delaying each
    direction by ``delay`` seconds (a one-way latency, for measuring round trips by hand).

    ``connections`` is how many TCP connections clients opened: with connection reuse it stays
    at the number of concurrent workers, not the number of requests.
    """

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.delay = delay
        self.connections = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL * 4)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept_loop, name="relay", daemon=True)

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.connections += 1
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), name="relay-pipe", daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` to ``sink``, each piece ``delay`` s after it arrived; EOF is passed on."""
        import queue

        pending: "queue.Queue[tuple[float, bytes]]" = queue.Queue()

        def write() -> None:
            try:
                while True:
                    at, data = pending.get()
                    wait = at + self.delay - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
            except OSError:
                pass

        writer = threading.Thread(target=write, name="relay-write", daemon=True)
        writer.start()
        source.settimeout(_IDLE_LIMIT)
        try:
            while not self._stopped.is_set():
                data = source.recv(256 * 1024)
                pending.put((time.monotonic(), data))
                if not data:
                    break
        except OSError:
            pending.put((time.monotonic(), b""))
        writer.join(timeout=_IDLE_LIMIT)
