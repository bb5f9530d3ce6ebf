"""Transfers under real faults: resets, stalls, 503/429, a registry killed mid-push, a pull killed
mid-blob, an expiring token, concurrent pulls, a full disk. No mocks of HTTP: the faults are
injected on real sockets by :mod:`faultproxy` in front of the real distribution registry."""

from __future__ import annotations

import email.utils
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from faultproxy import Fault, FaultProxy
from registry_fixtures import RegistryServer, fast_retry
from transfer_helpers import everything, model_tree, pull_model, push_model, tree, write_random

from ocimodel.descriptor import LAYER_MEDIA_TYPE, Descriptor
from ocimodel.errors import DigestMismatchError, NetworkError, UsageError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.registry.retry import RetryPolicy
from ocimodel.transfer.destination import PARTIAL_DIR
from ocimodel.transfer.installed import STATE_NAME
from ocimodel.transfer.observer import NullObserver

MiB = 1024 * 1024


def _ref(fault_proxy: FaultProxy, repo: str, tag: str = "v1") -> Reference:
    return Reference(registry=fault_proxy.host, repository=repo, tag=tag)


def _blob_path(digest: str) -> str:
    return f"/blobs/{digest}$"


def _only_our_state(dest: Path) -> bool:
    return all(name.startswith(".ocimodel") for name in os.listdir(dest))


@pytest.fixture
def one_file_model(tmp_path: Path) -> tuple[Path, bytes]:
    src = tmp_path / "model" / "weights.bin"
    return src.parent, write_random(src, 8 * MiB + 123)


# -- retries --------------------------------------------------------------------------------


def test_503_retried_with_exponential_backoff(fault_proxy, proxy_client, repo, one_file_model, tmp_path, retry_sleeps):
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    fault_proxy.add(Fault(method="GET", path="/manifests/", status=503, times=3))
    pull_model(proxy_client, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == {"weights.bin": data}
    assert retry_sleeps == [0.25, 0.5, 1.0]  # jitter 0: half of base * 2^n, doubling
    assert fault_proxy.count("/manifests/", "GET") == 4


@pytest.mark.parametrize("kind", ["seconds", "http-date"])
def test_429_retry_after_honoured(fault_proxy, proxy_client, repo, one_file_model, tmp_path, retry_sleeps, kind):
    model, _ = one_file_model
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    value = "7" if kind == "seconds" else email.utils.formatdate(time.time() + 9, usegmt=True)
    fault_proxy.add(Fault(method="GET", path="/manifests/", status=429, retry_after=value))
    pull_model(proxy_client, ref, tmp_path / "out")
    assert len(retry_sleeps) == 1
    if kind == "seconds":
        assert retry_sleeps == [7.0]
    else:
        assert 6.0 <= retry_sleeps[0] <= 9.0


def test_retry_after_beyond_total_cap_fails_fast_with_clear_error(fault_proxy, proxy_client, repo, one_file_model, tmp_path, retry_sleeps):
    model, _ = one_file_model
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    fault_proxy.add(Fault(method="GET", path="/manifests/", status=429, retry_after="3600"))
    with pytest.raises(NetworkError, match=r"\(429\) \(gave up after 1 attempt\(s\): the registry asked to wait 3600s more\)"):
        pull_model(proxy_client, ref, tmp_path / "out")
    assert retry_sleeps == []
    assert not (tmp_path / "out").exists()


def test_persistent_503_gives_up_with_clear_error(fault_proxy, proxy_client, repo, one_file_model, tmp_path, retry_sleeps):
    model, _ = one_file_model
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    fault_proxy.add(Fault(method="GET", path="/manifests/", status=503, times=100))
    with pytest.raises(NetworkError, match=r"refused GET manifest .* \(503\) \(gave up after 5 attempts\)"):
        pull_model(proxy_client, ref, tmp_path / "out")
    assert len(retry_sleeps) == 4


def test_upload_cut_midway_reopens_the_file_not_the_consumed_body(fault_proxy, proxy_client, repo, tmp_path):
    data = os.urandom(3 * MiB + 7)
    descriptor = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    opened = []

    def open_chunks() -> Iterator[bytes]:
        opened.append(1)
        # A generator: once consumed it cannot be rewound, so a retry must call us again.
        return (data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024))

    fault_proxy.add(Fault(method="PUT", path="/blobs/uploads/", cut_request_after=MiB))
    assert proxy_client.push_blob(_ref(fault_proxy, repo), descriptor, open_chunks) is True
    assert len(opened) == 2
    assert proxy_client.blob_exists(_ref(fault_proxy, repo), descriptor.digest)
    assert proxy_client.fetch_blob_bytes(_ref(fault_proxy, repo), descriptor, max_size=len(data)) == data


# -- resume -----------------------------------------------------------------------------------


def _range_start(head: bytes) -> int:
    match = re.search(rb"(?im)^range: bytes=(\d+)-", head)
    assert match, head
    return int(match.group(1))


def _range_requests(fault_proxy: FaultProxy, digest: str) -> list[bytes]:
    return [e.head for e in fault_proxy.exchanges if e.method == "GET" and e.path.endswith(digest)]


@pytest.mark.parametrize("how", ["reset", "clean-close"])
def test_connection_lost_mid_blob_resumes_with_range_and_verifies_whole_digest(
    fault_proxy, proxy_client, repo, one_file_model, tmp_path, how
):
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    # A clean close (FIN) mid-body is an interrupted transfer too, never a short blob.
    cut = {"cut_response_after": 3 * MiB} if how == "reset" else {"close_response_after": 3 * MiB}
    fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), **cut))
    pull_model(proxy_client, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == {"weights.bin": data}
    gets = [e for e in fault_proxy.exchanges if e.method == "GET" and e.path.endswith(layer.digest)]
    assert len(gets) == 2 and b"range: bytes=" not in gets[0].head.lower()
    # A reset discards what the client had not read yet: it resumes from what it really got,
    # and the second GET serves only the rest.
    offset = _range_start(gets[1].head)
    assert 0 < offset <= 3 * MiB
    assert len(data) - offset < gets[1].response_bytes < len(data) - offset + 4096


def _count_parsed_body_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every body piece h11 parses from now on."""
    import httpcore._sync.http11 as http11

    parsed: list[int] = []
    original = http11.HTTP11Connection._receive_event

    def counting(self, *args, **kwargs):
        event = original(self, *args, **kwargs)
        if type(event).__name__ == "Data":
            parsed.append(len(event.data))
        return event

    monkeypatch.setattr(http11.HTTP11Connection, "_receive_event", counting)
    return parsed


def test_large_blob_body_is_read_past_the_http_parser(proxy_client, fault_proxy, repo, one_file_model, tmp_path, monkeypatch):
    """After the first piece, a large blob's body comes straight off the connection, not through
    h11 (which copies every byte three times: ~0.3 s of CPU per GiB; registry.blobs._body_pieces)."""
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    parsed = _count_parsed_body_bytes(monkeypatch)
    pull_model(proxy_client, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == {"weights.bin": data}
    # Manifest and config are small; of the 8 MiB blob only the first piece went through h11.
    assert sum(parsed) < 2 * MiB, parsed


def test_small_blob_bodies_go_through_the_parser(proxy_client, fault_proxy, repo, tmp_path, monkeypatch):
    """Small bodies are parsed to their end, so their (maybe TLS) connection can be reused."""
    data = write_random(tmp_path / "model" / "small.bin", MiB)
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, tmp_path / "model", ref)
    parsed = _count_parsed_body_bytes(monkeypatch)
    pull_model(proxy_client, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == {"small.bin": data}
    assert sum(parsed) > MiB


def test_stall_times_out_then_resumes(fault_proxy, repo, one_file_model, tmp_path, docker_config):
    model, data = one_file_model
    with RegistryClient(Connection(plain_http=True, timeout=0.5), credentials=CredentialStore(), retry=fast_retry()) as c:
        ref = _ref(fault_proxy, repo)
        layer = push_model(c, model, ref).manifest.layers[0]
        fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), stall=3.0, stall_after=2 * MiB))
        pull_model(c, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == {"weights.bin": data}
    assert b"range: bytes=" in _range_requests(fault_proxy, layer.digest)[-1].lower()


def test_failed_pull_keeps_partial_only_under_ocimodel_and_next_pull_resumes(fault_proxy, proxy_client, repo, one_file_model, tmp_path):
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), cut_response_after=5 * MiB))
    fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), status=503, times=100))
    with pytest.raises(NetworkError):
        pull_model(proxy_client, ref, dest)
    assert everything(dest) == sorted([".ocimodel-partial", f".ocimodel-partial/{layer.digest.replace(':', '-')}", "keep.txt"])
    partial = (dest / PARTIAL_DIR / layer.digest.replace(":", "-")).stat().st_size
    assert 0 < partial <= 5 * MiB  # a reset drops what the client had not read yet

    fault_proxy.clear()
    pull_model(proxy_client, ref, dest)
    assert tree(dest) == {"keep.txt": b"mine", "weights.bin": data}
    assert everything(dest) == ["keep.txt", "weights.bin"]
    heads = _range_requests(fault_proxy, layer.digest)
    assert len(heads) == 1 and f"range: bytes={partial}-".encode() in heads[0].lower()
    assert fault_proxy.bytes_served(_blob_path(layer.digest)) < len(data) - partial + 64 * 1024


def test_corrupt_partial_is_discarded_and_downloaded_again(fault_proxy, proxy_client, repo, one_file_model, tmp_path):
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    dest = tmp_path / "out"
    partial = dest / PARTIAL_DIR / layer.digest.replace(":", "-")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * MiB)  # bad bytes, as a crash might leave
    pull_model(proxy_client, ref, dest)
    assert tree(dest) == {"weights.bin": data}
    heads = _range_requests(fault_proxy, layer.digest)
    assert len(heads) == 2 and b"range: bytes=1048576-" in heads[0].lower() and b"range" not in heads[1].lower()


def test_integrity_failure_deletes_partial_and_leaves_nothing(fault_proxy, proxy_client, registry, repo, one_file_model, tmp_path):
    model, _ = one_file_model
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    blob = registry.blob_path(layer.digest)
    tampered = bytearray(blob.read_bytes())
    tampered[-10] ^= 0xFF
    blob.write_bytes(bytes(tampered))
    try:
        fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), cut_response_after=2 * MiB))
        dest = tmp_path / "out"
        with pytest.raises(DigestMismatchError):
            pull_model(proxy_client, ref, dest)
        assert not dest.exists()  # no partial kept from bytes that failed the check
    finally:
        tampered[-10] ^= 0xFF
        blob.write_bytes(bytes(tampered))


def _cli_env(docker_config: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OCIMODEL_PLAIN_HTTP": "1",
        "DOCKER_CONFIG": str(docker_config),
        "OCIMODEL_CACHE_DIR": str(tmp_path / "cli-cache"),
    }


def test_pull_killed_with_sigkill_resumes_from_partial(fault_proxy, proxy_client, repo, tmp_path, docker_config):
    model = tmp_path / "model"
    data = write_random(model / "big.bin", 48 * MiB + 5)
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    dest = tmp_path / "out"
    partial = dest / PARTIAL_DIR / layer.digest.replace(":", "-")
    fault_proxy.add(Fault(method="GET", path=_blob_path(layer.digest), stall=60.0, stall_after=20 * MiB))
    env = _cli_env(docker_config, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "ocimodel", "pull", str(ref), str(dest)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size >= 16 * MiB):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        assert partial.exists() and partial.stat().st_size >= 16 * MiB
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = partial.stat().st_size
    assert _only_our_state(dest)

    fault_proxy.clear()
    done = subprocess.run([sys.executable, "-m", "ocimodel", "pull", str(ref), str(dest)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert model_tree(dest) == {"big.bin": data} and everything(dest) == [STATE_NAME, "big.bin"]
    heads = _range_requests(fault_proxy, layer.digest)
    assert len(heads) == 1 and f"range: bytes={kept}-".encode() in heads[0].lower()
    assert fault_proxy.bytes_served(_blob_path(layer.digest)) < len(data) - kept + 64 * 1024


def test_registry_killed_mid_push_then_push_again_uploads_only_missing(tmp_path, docker_config):
    server = RegistryServer(tmp_path / "reg").start()
    try:
        model = tmp_path / "model"
        files = {f"f{i}.bin": write_random(model / f"f{i}.bin", 256 * 1024 + i) for i in range(6)}
        ref = Reference(registry=server.host, repository="kill/me", tag="v1")

        class KillAfterThree(NullObserver):
            done = 0

            def end(self, name: str) -> None:
                if name.startswith("push "):
                    self.done += 1
                    if self.done == 3:
                        assert server._process is not None
                        server._process.kill()  # SIGKILL: no graceful shutdown
                        server._process.wait()

        with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
            with pytest.raises(NetworkError, match="cannot connect"):
                push_model(c, model, ref, concurrency=1, observer=KillAfterThree())
            server.start()  # same port, same storage
            again = push_model(c, model, ref, concurrency=1)
            assert (again.uploaded, again.skipped) == (3, 3)
            pull_model(c, ref, tmp_path / "out")
        assert tree(tmp_path / "out") == files
    finally:
        server.stop()


def test_registry_killed_mid_pull_then_restarted_pull_resumes(tmp_path, docker_config):
    """kill -9 of the registry while a blob streams; it comes back during the backoff; the
    pull continues from the bytes it has (Range) and still verifies the whole digest."""
    server = RegistryServer(tmp_path / "reg").start()
    try:
        model = tmp_path / "model"
        data = write_random(model / "big.bin", 24 * MiB + 3)
        ref = Reference(registry=server.host, repository="kill/pull", tag="v1")
        restarts: list[float] = []

        def sleep_and_restart(seconds: float) -> None:  # the retry's backoff: bring it back
            if not restarts:
                server.start()  # same port, same storage
            restarts.append(seconds)

        class KillMidBlob(NullObserver):
            received = 0

            def advance(self, name: str, amount: int) -> None:
                self.received += amount
                if self.received >= 4 * MiB and server._process is not None and not restarts:
                    server._process.kill()  # SIGKILL: connections drop mid-stream
                    server._process.wait()
                    server._process = None

        with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
            layer = push_model(c, model, ref).manifest.layers[0]
        ranges: list[str] = []

        def record(request: httpx.Request) -> None:
            if request.url.path.endswith(f"/blobs/{layer.digest}") and "range" in request.headers:
                ranges.append(request.headers["range"])

        retry = RetryPolicy(max_attempts=5, base_delay=0.01, sleep=sleep_and_restart)
        hooks = {"request": [record]}
        with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=retry, event_hooks=hooks) as c:
            pull_model(c, ref, tmp_path / "out", observer=KillMidBlob(), concurrency=1)
        assert restarts, "the registry was never killed mid-pull"
        assert tree(tmp_path / "out") == {"big.bin": data}
        assert len(ranges) == 1 and int(ranges[0].split("=")[1].rstrip("-")) >= 4 * MiB  # resumed, not restarted
    finally:
        server.stop()


def test_expired_token_is_refreshed_mid_transfer(token_registry, tmp_path, docker_config, monkeypatch):
    """The registry's clock runs ahead: a token the client believes valid for 300 s is refused."""
    tokens = token_registry.token_server
    original = tokens.server.handler

    def skewed(request):
        reply = original(request)
        if reply.status == 200:
            body = json.loads(reply.body)
            body["expires_in"] = 300  # what the client is told...
            reply.body = json.dumps(body).encode()
        return reply

    monkeypatch.setattr(tokens, "expires_in", -57)  # ...while the JWT lives ~2 s at the registry
    monkeypatch.setattr(tokens.server, "handler", skewed)
    monkeypatch.setenv("OCIMODEL_USERNAME", token_registry.username)
    monkeypatch.setenv("OCIMODEL_PASSWORD", token_registry.password)
    model = tmp_path / "model"
    files = {f"f{i}.bin": write_random(model / f"f{i}.bin", 100_000 + i) for i in range(2)}
    ref = Reference(registry=token_registry.host, repository="tok/model", tag="v1")

    class SlowObserver(NullObserver):
        def end(self, name: str) -> None:
            if name == "push f1.bin":  # the larger, uploaded first
                time.sleep(3.5)  # the token expires at the registry between the two blobs

    refused: list[str] = []

    def on_response(response) -> None:
        if response.status_code == 401 and response.request.headers.get("authorization", "").startswith("Bearer"):
            refused.append(f"{response.request.method} {response.request.url.path}")

    credentials = CredentialStore.for_registry(token_registry.host)  # the environment's, for this registry
    with RegistryClient(Connection(plain_http=True), credentials=credentials, retry=fast_retry(), event_hooks={"response": [on_response]}) as c:
        before = token_registry.token_requests
        pushed = push_model(c, model, ref, concurrency=1, observer=SlowObserver())
        assert pushed.uploaded == 2
        # The cached token was refused once, on the second blob's upload (both HEADs went first),
        # and a new one fetched.
        assert refused == [f"POST /v2/{ref.repository}/blobs/uploads/"]
        assert token_registry.token_requests - before >= 2
        pull_model(c, ref, tmp_path / "out")
    assert tree(tmp_path / "out") == files


# -- concurrent pulls, locking, free space -----------------------------------------------------


def test_two_concurrent_cli_pulls_into_one_dest(fault_proxy, proxy_client, repo, tmp_path, docker_config):
    model = tmp_path / "model"
    files = {f"part{i}.bin": write_random(model / f"part{i}.bin", 2 * MiB + i) for i in range(3)}
    ref = _ref(fault_proxy, repo)
    push_model(proxy_client, model, ref)
    # Slow the first blob download so the two pulls overlap.
    fault_proxy.add(Fault(method="GET", path="/blobs/sha256:", stall=1.0, stall_after=MiB))
    dest = tmp_path / "out"
    env = _cli_env(docker_config, tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-m", "ocimodel", "pull", str(ref), str(dest), "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    assert model_tree(dest) == files and everything(dest) == sorted([STATE_NAME, *files])


def test_concurrent_thread_pulls_into_one_dest(fault_proxy, repo, tmp_path, docker_config):
    model = tmp_path / "model"
    files = {f"p{i}.bin": write_random(model / f"p{i}.bin", MiB + i) for i in range(4)}
    ref = _ref(fault_proxy, repo)
    errors: list[BaseException] = []

    def pull(dest: Path) -> None:
        try:
            with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
                pull_model(c, ref, dest)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
        push_model(c, model, ref)
    dest = tmp_path / "out"
    threads = [threading.Thread(target=pull, args=(dest,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert tree(dest) == files and everything(dest) == sorted(files)


def _fake_disk_usage(free: int):
    real = shutil.disk_usage

    def usage(path):
        total = real(path).total
        return type(real(path))(total, total - free, free)

    return usage


def test_free_space_checked_before_writing(fault_proxy, proxy_client, repo, one_file_model, tmp_path, monkeypatch):
    model, data = one_file_model
    ref = _ref(fault_proxy, repo)
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    monkeypatch.setattr(shutil, "disk_usage", _fake_disk_usage(len(data) - 1))
    dest = tmp_path / "out"
    with pytest.raises(UsageError, match=r"not enough free space in .*: the pull needs 8\.0 MiB, 8\.0 MiB is free"):
        pull_model(proxy_client, ref, dest)
    assert not dest.exists()
    assert fault_proxy.count(_blob_path(layer.digest), "GET") == 0  # refused before downloading a byte
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(UsageError):
        pull_model(proxy_client, ref, dest)
    assert everything(dest) == ["keep.txt"]
    # What a partial download already holds does not need space again.
    partial = dest / PARTIAL_DIR / layer.digest.replace(":", "-")
    partial.parent.mkdir()
    partial.write_bytes(data[:MiB])
    pull_model(proxy_client, ref, dest)
    assert tree(dest) == {"keep.txt": b"mine", "weights.bin": data}
