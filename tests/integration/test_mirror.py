"""Registry mirrors against real registries: a distribution pull-through cache of the origin.

The mirror is ``docker-registry`` in proxy mode (``proxy.remoteurl`` = the origin); it caches
blobs in its own storage directory, which lets a test tamper with what the mirror serves.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from registry_fixtures import (
    LocalServer,
    RecordedRequest,
    RegistryServer,
    Reply,
    fast_retry,
    free_port,
    start_proxy,
)

from ocimodel.api import Client
from ocimodel.descriptor import MANIFEST_V1
from ocimodel.errors import NotFoundError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore

MiB = 1024 * 1024


class Requests:
    """Every request a client sends, as (host, method, path), via an httpx event hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def hook(self, request: httpx.Request) -> None:
        self.seen.append((request.url.netloc.decode(), request.method, request.url.path))

    def to(self, host: str, kind: str = "", method: str | None = None) -> list[tuple[str, str, str]]:
        """Requests to ``host`` whose path has ``/<kind>/`` (e.g. ``blobs``), of ``method`` if given."""
        return [
            r
            for r in self.seen
            if r[0] == host and (not kind or f"/{kind}/" in r[2]) and (method is None or r[1] == method)
        ]


def _client(mirrors: dict[str, list[str]] | None, requests: Requests | None = None, **kwargs: object) -> RegistryClient:
    hooks = {"request": [requests.hook]} if requests else None
    return RegistryClient(Connection(plain_http=True, mirrors=mirrors), retry=fast_retry(), event_hooks=hooks, **kwargs)  # type: ignore[arg-type]


def _model(directory: Path, big: int = 3 * MiB) -> dict[str, bytes]:
    directory.mkdir()
    files = {"weights.bin": bytes(range(256)) * (big // 256), "README.md": uuid.uuid4().hex.encode()}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.startswith(".ocimodel")}


@pytest.fixture
def pushed(registry: RegistryServer, docker_config: Path, tmp_path: Path) -> tuple[str, dict[str, bytes], object]:
    """A model pushed to the origin: (reference, files, PushResult)."""
    files = _model(tmp_path / "model")
    ref = f"{registry.host}/mirror/{uuid.uuid4().hex[:8]}:v1"
    with Client(Connection(plain_http=True), use_cache=False) as client:
        result = client.push(tmp_path / "model", ref)
    return ref, files, result


def _pull(registry_client: RegistryClient, ref: str, dest: Path) -> str:
    with Client(registry=registry_client, use_cache=False) as client:
        return client.pull(ref, dest).digest


def test_pull_through_the_mirror(
    registry: RegistryServer, proxy_registry: RegistryServer, pushed: tuple, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref, files, result = pushed
    seen = Requests()
    caplog.set_level(logging.INFO, logger="ocimodel.registry")
    digest = _pull(_client({registry.host: [proxy_registry.url]}, seen), ref, tmp_path / "out")
    assert digest == result.digest and _tree(tmp_path / "out") == files
    # Every read went to the mirror, none to the origin; the mirror now holds the blobs.
    assert seen.to(proxy_registry.host, "blobs") and seen.to(proxy_registry.host, "manifests")
    assert not [r for r in seen.seen if r[0] == registry.host]
    for info in result.files:
        assert proxy_registry.wait_cached(info.digest).read_bytes() == files[info.path]
    assert "served by mirror http://" + proxy_registry.host in caplog.text


def test_mirror_requests_carry_ns_and_path_prefix(registry: RegistryServer, pushed: tuple, tmp_path: Path) -> None:
    """A mirror URL's path goes before /v2/, and ?ns= names the registry (as containerd does)."""
    ref, files, _ = pushed
    with LocalServer(lambda request: Reply(404)) as mirror:
        _pull(_client({registry.host: [f"{mirror.url}/cache/v2"]}), ref, tmp_path / "out")
    assert _tree(tmp_path / "out") == files
    first = urlsplit(mirror.requests[0].path)
    repository = ref.split("/", 1)[1].split(":")[0]
    assert first.path == f"/cache/v2/{repository}/manifests/v1"
    assert parse_qs(first.query) == {"ns": [registry.host]}


def test_mirror_down_falls_back_to_the_origin_without_retrying_it(
    registry: RegistryServer, pushed: tuple, tmp_path: Path
) -> None:
    ref, files, result = pushed
    dead = f"127.0.0.1:{free_port()}"
    seen = Requests()
    sleeps: list[float] = []
    client = RegistryClient(Connection(plain_http=True, mirrors={registry.host: [f"http://{dead}"]}), retry=fast_retry(sleeps), event_hooks={"request": [seen.hook]})
    assert _pull(client, ref, tmp_path / "out") == result.digest
    assert _tree(tmp_path / "out") == files
    # One attempt, no backoff; then the dead mirror is skipped for a while, not asked per blob.
    assert len(seen.to(dead)) == 1 and sleeps == []
    assert seen.to(registry.host, "blobs")


def test_mirror_with_tampered_content_falls_back_to_the_origin(
    registry: RegistryServer, proxy_registry: RegistryServer, pushed: tuple, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref, files, result = pushed
    mirrors = {registry.host: [proxy_registry.url]}
    _pull(_client(mirrors), ref, tmp_path / "first")  # fills the mirror
    weights = next(f for f in result.files if f.path == "weights.bin")
    cached = proxy_registry.wait_cached(weights.digest)
    poisoned = bytearray(cached.read_bytes())
    poisoned[len(poisoned) // 2] ^= 0xFF  # same size: only the digest can tell
    cached.write_bytes(bytes(poisoned))

    seen = Requests()
    caplog.set_level(logging.INFO, logger="ocimodel.registry")
    assert _pull(_client(mirrors, seen), ref, tmp_path / "second") == result.digest
    assert _tree(tmp_path / "second") == files
    blob = f"/blobs/{weights.digest}"
    assert [r for r in seen.to(proxy_registry.host, "blobs") if r[2].endswith(blob)]
    assert [r for r in seen.to(registry.host, "blobs") if r[2].endswith(blob)]
    assert "served blob " + weights.digest + " with wrong content" in caplog.text


def test_hostile_mirror_lying_about_manifest_and_config_is_bypassed(
    registry: RegistryServer, pushed: tuple, tmp_path: Path
) -> None:
    """Small reads verified after download (manifest by tag, config) fall back too.

    distribution's proxy re-reads manifests from its remote, so this mirror is a script: it
    serves the manifest with a byte changed under the real digest header, and wrong blobs.
    """
    ref, files, result = pushed
    raw = _client(None).get_manifest(Reference.parse(ref)).raw

    def lie(request: RecordedRequest) -> Reply:
        if "/manifests/" in request.path:
            headers = {"Content-Type": MANIFEST_V1, "Docker-Content-Digest": result.digest}
            return Reply(200, headers, raw.replace(b"{", b"{ ", 1))
        return Reply(200, {"Content-Type": "application/octet-stream"}, b"not the blob you asked for")

    seen = Requests()
    with LocalServer(lie) as mirror:
        assert _pull(_client({registry.host: [mirror.url]}, seen), ref, tmp_path / "out") == result.digest
    assert _tree(tmp_path / "out") == files
    assert [r.path for r in mirror.requests if "/manifests/" in r.path]
    assert seen.to(registry.host, "manifests") and seen.to(registry.host, "blobs")


@pytest.fixture
def origin_and_mirror(tmp_path: Path, docker_config: Path) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    """An origin of its own (this test stops it) and a pull-through cache of it."""
    origin = RegistryServer(tmp_path / "origin").start()
    try:
        mirror = start_proxy(tmp_path / "mirror", origin)
        try:
            yield origin, mirror
        finally:
            mirror.stop()
    finally:
        origin.stop()


def test_origin_down_the_mirror_still_serves_what_it_cached(
    origin_and_mirror: tuple[RegistryServer, RegistryServer], tmp_path: Path
) -> None:
    origin, mirror = origin_and_mirror
    files = _model(tmp_path / "model", big=MiB)
    ref = f"{origin.host}/m/offline:v1"
    with Client(Connection(plain_http=True), use_cache=False) as client:
        result = client.push(tmp_path / "model", ref)
    mirrors = {origin.host: [mirror.url]}
    _pull(_client(mirrors), ref, tmp_path / "first")
    for info in result.files:
        mirror.wait_cached(info.digest)
    origin.stop()
    by_digest = f"{origin.host}/m/offline@{result.digest}"
    assert _pull(_client(mirrors), by_digest, tmp_path / "by-digest") == result.digest
    assert _tree(tmp_path / "by-digest") == files
    # distribution's proxy also answers a cached tag when its remote is down.
    assert _pull(_client(mirrors), ref, tmp_path / "by-tag") == result.digest
    assert _tree(tmp_path / "by-tag") == files


def test_writes_never_go_to_the_mirror(
    registry: RegistryServer, proxy_registry: RegistryServer, docker_config: Path, tmp_path: Path
) -> None:
    _model(tmp_path / "model")
    seen = Requests()
    registry_client = _client({registry.host: [proxy_registry.url]}, seen)
    ref = f"{registry.host}/mirror/writes:v1"
    with Client(registry=registry_client, use_cache=False) as client:
        result = client.push(tmp_path / "model", ref)
        client.delete(f"{registry.host}/mirror/writes@{result.digest}")
    to_mirror = [r for r in seen.seen if r[0] == proxy_registry.host]
    assert all(method in ("GET", "HEAD") for _, method, _ in to_mirror), to_mirror
    assert seen.to(registry.host, "uploads", "POST") and seen.to(registry.host, "manifests", "PUT")
    assert seen.to(registry.host, "manifests", "DELETE")


def test_mirror_never_gets_the_registry_credentials(
    registry: RegistryServer, pushed: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OCIMODEL_USERNAME/PASSWORD are for the registry; a mirror gets only its own login."""
    ref, files, _ = pushed
    expected = "Basic " + base64.b64encode(b"mirror-user:mirror-pw").decode()

    def challenge(request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") == expected:
            return Reply(404)
        return Reply(401, {"WWW-Authenticate": 'Basic realm="mirror"'})

    monkeypatch.setenv("OCIMODEL_USERNAME", "origin-user")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "origin-pw")
    with LocalServer(challenge) as mirror:
        _pull(_client({registry.host: [mirror.url]}), ref, tmp_path / "anonymous")
        assert mirror.requests and not any("authorization" in r.headers for r in mirror.requests)

        mirror.requests.clear()
        CredentialStore().login(mirror.host, "mirror-user", "mirror-pw")
        _pull(_client({registry.host: [mirror.url]}), ref, tmp_path / "logged-in")
        sent = {r.headers.get("authorization") for r in mirror.requests}
    assert sent == {None, expected}
    assert _tree(tmp_path / "anonymous") == files == _tree(tmp_path / "logged-in")


def test_registry_answer_is_final_after_mirrors(registry: RegistryServer, proxy_registry: RegistryServer,
                                                docker_config: Path) -> None:
    client = _client({registry.host: [proxy_registry.url]})
    missing = registry.ref(f"mirror/{uuid.uuid4().hex[:8]}", "nope")
    assert client.head_manifest(missing) is None
    with pytest.raises(NotFoundError, match=f"on registry {registry.host}"):
        client.get_manifest(missing)


def test_cli_pull_through_mirror_env(registry, proxy_registry, repo, tmp_path, docker_config):
    """`OCIMODEL_MIRROR` (as an init container would set it) routes the CLI's reads."""
    import subprocess
    import sys

    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(50_000))
    with Client(Connection(plain_http=True)) as client:
        pushed = client.push(src, f"{registry.host}/{repo}:1", code=False)
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config),
           "OCIMODEL_MIRROR": f"{registry.host}=http://{proxy_registry.host}"}
    out = subprocess.run([sys.executable, "-m", "ocimodel", "pull", f"{registry.host}/{repo}@{pushed.digest}",
                          str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == src.read_bytes()
    assert proxy_registry.blob_path(pushed.files[0].digest).exists()  # the mirror served (and cached) it
    bad = subprocess.run([sys.executable, "-m", "ocimodel", "pull", f"{registry.host}/{repo}:1", str(tmp_path / "x")],
                         env={**env, "OCIMODEL_MIRROR": "not-a-mirror"}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and not (tmp_path / "x").exists()
