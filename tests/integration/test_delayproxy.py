"""The delaying proxy (benchmarks/delayproxy.py) in front of the real registry: it counts exactly,
delays at least as configured, caps bandwidth and bounds its memory.

Times are only ever asserted as lower bounds the proxy must impose (a delay it skipped would be
a broken proxy), never as a speed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from delayproxy import DelayProxy, _RequestParser

from ocimodel.api import Client
from ocimodel.registry.connection import Connection

# Bodies that look like HTTP requests: a proxy that scanned bytes instead of parsing would count them.
FAKE_REQUESTS = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" * 2000


@pytest.fixture
def proxy(registry) -> Iterator[DelayProxy]:
    p = DelayProxy("127.0.0.1", registry.port).start()
    yield p
    p.stop()


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
              chunked: bool = False) -> http.client.HTTPResponse:
    if chunked:
        conn.request(method, path, body=iter([body[:1000], body[1000:]]) if body else iter([]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    else:
        conn.request(method, path, body=body)
    response = conn.getresponse()
    response.read()
    return response


def _upload(conn: http.client.HTTPConnection, repo: str, data: bytes, chunked: bool = False) -> str:
    """POST, PATCH (chunked or not), PUT ?digest=: three requests; the blob's digest."""
    started = _exchange(conn, "POST", f"/v2/{repo}/blobs/uploads/")
    assert started.status == 202
    location = urlsplit(started.getheader("Location") or "")
    path = f"{location.path}?{location.query}"
    patched = _exchange(conn, "PATCH", path, data, chunked=chunked)
    assert patched.status == 202, patched.status
    location = urlsplit(patched.getheader("Location") or "")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = _exchange(conn, "PUT", f"{location.path}?{location.query}&digest={digest}", b"")
    assert done.status == 201, done.status
    return digest


def test_counts_exactly_the_requests_of_a_known_sequence(proxy, repo):
    conn = http.client.HTTPConnection(proxy.host)
    assert _exchange(conn, "GET", "/v2/").status == 200
    first = _upload(conn, repo, FAKE_REQUESTS)  # Content-Length body full of request lines
    second = _upload(conn, repo, FAKE_REQUESTS[::-1] + b"HEAD / HTTP/1.1\r\n\r\n", chunked=True)
    assert _exchange(conn, "HEAD", f"/v2/{repo}/blobs/{first}").status == 200
    got = _exchange(conn, "GET", f"/v2/{repo}/blobs/{second}")
    assert got.status == 200
    conn.close()

    counts = proxy.counts()
    assert counts.connections == 1  # http.client kept its one connection through the proxy
    assert counts.requests == 9
    assert counts.by_method == {"GET": 2, "POST": 2, "PATCH": 2, "PUT": 2, "HEAD": 1}
    assert counts.request_lines[0] == "GET /v2/"
    assert counts.request_lines[-1] == f"GET /v2/{repo}/blobs/{second}"
    assert counts.unparsed == 0
    assert counts.bytes_up > 2 * len(FAKE_REQUESTS)
    assert counts.bytes_down > len(FAKE_REQUESTS)  # the GET's body came back through it

    # A second connection is counted as one; reset() starts from zero.
    proxy.reset()
    other = http.client.HTTPConnection(proxy.host)
    assert _exchange(other, "GET", f"/v2/{repo}/blobs/{first}").status == 200
    other.close()
    assert (proxy.counts().connections, proxy.counts().requests) == (1, 1)


def test_counts_what_the_registry_served_for_an_ocimodel_push_and_pull(proxy, registry, repo, docker_config,
                                                                        tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for i in range(3):
        (model / f"part-{i}.bin").write_bytes(os.urandom(50_000 + i))
    mark = registry.log_path.stat().st_size
    with Client(Connection(plain_http=True), use_cache=False) as client:
        client.push(model, f"{proxy.host}/{repo}:v1", code=False, scan=False)
        client.pull(f"{proxy.host}/{repo}:v1", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == ["part-0.bin", "part-1.bin", "part-2.bin"]

    # The registry logs each response when it is complete; wait for the log to settle.
    served, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        text = registry.log_path.read_bytes()[mark:].decode(errors="replace")
        now = sum(1 for line in text.splitlines() if 'msg="response completed' in line and repo in line)
        if now == served and now >= proxy.counts().requests:
            break
        served = now
        time.sleep(0.2)
    counts = proxy.counts()
    assert counts.unparsed == 0
    assert counts.requests == served > 0
    assert 1 <= counts.connections <= counts.requests


def test_delays_each_direction_and_the_handshake(registry):
    delay = 0.05
    with DelayProxy("127.0.0.1", registry.port, one_way_delay=delay) as proxy:
        conn = http.client.HTTPConnection(proxy.host)
        started = time.monotonic()
        assert _exchange(conn, "GET", "/v2/").status == 200
        first = time.monotonic() - started
        started = time.monotonic()
        assert _exchange(conn, "GET", "/v2/").status == 200
        second = time.monotonic() - started
        conn.close()
    # A new connection: handshake round trip + request + response; then one round trip.
    assert first >= 4 * delay
    assert second >= 2 * delay
    assert proxy.counts().requests == 2


def test_caps_bandwidth_shared_by_all_connections(registry, repo):
    data = os.urandom(1_000_000)
    conn = http.client.HTTPConnection(registry.host)
    digest = _upload(conn, repo, data)
    conn.close()
    rate = 5e6
    with DelayProxy("127.0.0.1", registry.port, bandwidth=rate) as proxy:
        received: list[int] = []

        def fetch() -> None:
            c = http.client.HTTPConnection(proxy.host)
            c.request("GET", f"/v2/{repo}/blobs/{digest}")
            received.append(len(c.getresponse().read()))
            c.close()

        started = time.monotonic()
        workers = [threading.Thread(target=fetch) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        elapsed = time.monotonic() - started
    assert received == [len(data), len(data)]
    # Two downloads share one link: together they cannot beat bytes / rate.
    assert elapsed >= 2 * len(data) / rate
    assert proxy.counts().connections == 2


def test_memory_is_bounded_when_the_client_does_not_read(registry, repo):
    size = 48 * 1024 * 1024
    data = os.urandom(size)
    conn = http.client.HTTPConnection(registry.host)
    digest = _upload(conn, repo, data)
    conn.close()
    del data
    with DelayProxy("127.0.0.1", registry.port) as proxy:
        slow = http.client.HTTPConnection(proxy.host)
        slow.request("GET", f"/v2/{repo}/blobs/{digest}")
        response = slow.getresponse()
        assert response.status == 200
        # Read nothing more; wait until the proxy stops reading from the registry.
        seen, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = proxy.counts().bytes_down
            if now == seen:
                break
            seen = now
        # Its queue (16 MiB without a cap) plus the kernel's socket buffers, far from the blob.
        assert seen < size // 2
        slow.close()


def test_parser_skips_bodies_and_stops_counting_garbage():
    parser = _RequestParser()
    body = b"PUT /x HTTP/1.1\r\n\r\n" * 10
    stream = (b"PUT /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)) + body + \
        b"PATCH /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nGET /\r\n3\r\n x \r\n0\r\nT: 1\r\n\r\n" + \
        b"HEAD /c HTTP/1.1\r\n\r\n"
    # Fed one byte at a time: boundaries anywhere must not matter.
    lines = [line for i in range(len(stream)) for line in parser.feed(stream[i:i + 1])]
    assert lines == ["PUT /a", "PATCH /b", "HEAD /c"]
    assert parser.feed(b"\x16\x03\x01 not http\r\n\r\n") == []
    assert parser.state == "broken"
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []
