"""No endless waits: a registry that dribbles headers or bytes, or never connects or answers,
fails in bounded time with exit 7 and a line naming the host and what stalled.

The slow servers are real sockets: :mod:`faultproxy` in front of the real registry sends each
byte of a response 0.1 s apart (far inside any per-read timeout, which is what makes it an
attack), a listening socket whose backlog is full never completes a connect, and one that
is never accepted never answers. The outcome is asserted (exit code, message, what was
fetched), never the time taken.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from faultproxy import Fault, FaultProxy
from registry_fixtures import LocalServer, RecordedRequest, Reply, fast_retry
from test_timeout_settings import run
from transfer_helpers import pull_model, push_model, write_random

from ocimodel.errors import NetworkError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore

MiB = 1024 * 1024
DRIBBLE = 0.1  # seconds between bytes: every read returns well within the 1 s timeout


def _one_error_line(out: subprocess.CompletedProcess) -> str:
    """Exit 7 and one ``error:`` line, the last (pull logs its steps before it)."""
    assert out.returncode == 7, out.stderr
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in out.stderr, out.stderr
    return errors[0]


@pytest.fixture
def cli_env(docker_config: Path) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}


@pytest.fixture
def pushed(fault_proxy: FaultProxy, repo: str, tmp_path: Path, docker_config: Path) -> Iterator[tuple[Reference, str]]:
    """A two-file model behind the fault proxy: (reference, digest of its 5 MiB layer)."""
    write_random(tmp_path / "model" / "small.bin", 300_000)
    write_random(tmp_path / "model" / "large.bin", 5 * MiB)  # read past h11 (registry.blobs._body_pieces)
    ref = Reference(registry=fault_proxy.host, repository=repo, tag="v1")
    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as client:
        manifest = push_model(client, tmp_path / "model", ref).manifest
    yield ref, manifest
    fault_proxy.clear()


def test_dribbled_response_headers(fault_proxy, pushed, cli_env, tmp_path):
    ref, _ = pushed
    fault_proxy.add(Fault(method="GET", path="/manifests/", dribble=DRIBBLE, dribble_after=12, times=100))
    line = _one_error_line(run("inspect", str(ref), "--timeout", "1", env=cli_env))
    assert f"registry {fault_proxy.host} did not answer GET manifest" in line and "response headers" in line


@pytest.mark.parametrize("title", ["small.bin", "large.bin"])
def test_dribbled_blob_body(fault_proxy, pushed, cli_env, tmp_path, title):
    """The body trickles after 100 KB: it fails on the progress rule, and is not resumed."""
    ref, manifest = pushed
    layer = next(layer for layer in manifest.layers if layer.annotations["org.opencontainers.image.title"] == title)
    fault_proxy.add(Fault(method="GET", path=f"/blobs/{layer.digest}$", dribble=DRIBBLE, dribble_after=100_000,
                          dribble_body=True, times=100))
    dest = tmp_path / "out"
    line = _one_error_line(run("pull", str(ref), str(dest), "--timeout", "1", "--no-cache", env=cli_env))
    assert f"registry {fault_proxy.host} sends blob {layer.digest}" in line and "too slowly" in line
    assert fault_proxy.count(f"/blobs/{layer.digest}$", "GET") == 1  # a trickle is not resumed, again and again
    assert all(name.startswith(".ocimodel") for name in os.listdir(dest))  # only resumable state, no model file


def test_connect_that_never_completes(cli_env):
    """A listening socket whose accept queue is full: the kernel drops our SYN, again and again."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen(0)
        host = f"127.0.0.2:{listener.getsockname()[1]}"
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.2", listener.getsockname()[1]))
                time.sleep(0.05)  # let the kernel queue it before the next
            line = _one_error_line(run("inspect", f"{host}/m:1", "--timeout", "1", env=cli_env))
        finally:
            for filler in fillers:
                filler.close()
    assert f"cannot connect to registry {host} within 1 s" in line


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A listening socket never accepted: connections complete (the kernel's doing), nothing answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen(16)
        yield f"127.0.0.2:{listener.getsockname()[1]}"


def test_server_that_never_answers(silent_host, cli_env):
    env = {**cli_env, "OCIMODEL_TIMEOUT": "300"}  # the flag wins over the environment
    line = _one_error_line(run("tags", f"{silent_host}/m", "--timeout", "1", env=env))
    assert f"registry {silent_host} did not answer GET tags of m within 1 s" in line


def test_timeout_from_the_environment(silent_host, cli_env):
    line = _one_error_line(run("inspect", f"{silent_host}/m:1", env={**cli_env, "OCIMODEL_TIMEOUT": "0.5"}))
    assert f"registry {silent_host} did not answer" in line and "within 0.5 s" in line


def test_dribbling_token_server(token_registry, docker_config):
    """A token realm that trickles its answer fails like a registry that does."""
    tokens = token_registry.token_server.server
    with FaultProxy(tokens.host) as proxy:
        proxy.add(Fault(path="/token", dribble=DRIBBLE, dribble_after=20, times=100))
        realm = f"http://{proxy.host}/token"

        def challenge(request: RecordedRequest) -> Reply:
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="s",scope="repository:m:pull"'})

        with LocalServer(challenge) as front, RegistryClient(Connection(plain_http=True, timeout=1), credentials=CredentialStore(), retry=fast_retry()) as client:
            with pytest.raises(NetworkError, match=f"token server {realm} did not answer within 1 s"):
                client.get_manifest(Reference(front.host, "m", tag="1"))


def test_trickling_mirror_falls_back_to_the_registry(registry, proxy_registry, repo, tmp_path, docker_config, caplog):
    """A mirror that trickles a blob is dropped for it, like one serving wrong bytes."""
    data = write_random(tmp_path / "model" / "w.bin", 300_000)
    ref = registry.ref(repo, "v1")
    with FaultProxy(proxy_registry.host) as mirror:
        mirror.add(Fault(method="GET", path="/blobs/", dribble=DRIBBLE, dribble_after=100_000, dribble_body=True,
                         times=100))
        with RegistryClient(Connection(plain_http=True, timeout=1, mirrors={registry.host: [f"http://{mirror.host}"]}), credentials=CredentialStore(), retry=fast_retry()) as client:
            push_model(client, tmp_path / "model", ref)
            pull_model(client, ref, tmp_path / "out")
    assert f"mirror http://{mirror.host} served blob" in caplog.text and "too slowly" in caplog.text
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


def test_slow_consumer_is_not_a_slow_server(registry, repo, tmp_path, docker_config):
    """Only time spent waiting on the server counts: pausing between pieces is ours to take."""
    data = write_random(tmp_path / "model" / "w.bin", 5 * MiB)
    ref = registry.ref(repo, "v1")
    with RegistryClient(Connection(plain_http=True, timeout=0.5), credentials=CredentialStore(), retry=fast_retry()) as client:
        layer = push_model(client, tmp_path / "model", ref).manifest.layers[0]
        received = bytearray()
        with client.open_blob(ref, layer) as blob:
            for index, piece in enumerate(blob.chunks()):
                received += piece
                if index < 3:
                    time.sleep(0.7)  # longer than every limit of this client
    assert bytes(received) == data


# -- the limits themselves -----------------------------------------------------------------------


