"""Large files are uploaded while another thread hashes them: a streamed PATCH, committed by
``PUT ?digest=`` only once the digest is known and the registry lacks the blob.
Driven through :mod:`faultproxy` in front of the real registry, to see every request."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest
from faultproxy import Fault, FaultProxy
from registry_fixtures import fast_retry
from transfer_helpers import model_tree, pull_model, push_model, tree, write_random

import ocimodel.transfer.upload as transfer
from ocimodel.errors import DigestMismatchError, NotFoundError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.transfer.cache import BlobCache

MiB = 1024 * 1024
STREAM_MIN = MiB  # every test file here is streamed


def _ref(fault_proxy: FaultProxy, repo: str, tag: str = "v1") -> Reference:
    return Reference(registry=fault_proxy.host, repository=repo, tag=tag)


def _requests(fault_proxy: FaultProxy, method: str, contains: str = "/blobs/uploads/") -> list[str]:
    return [e.path for e in fault_proxy.exchanges if e.method == method and contains in e.path]


def _commits(fault_proxy: FaultProxy, digest: str) -> list[str]:
    """PUTs that committed an upload of ``digest`` (config blobs have their own)."""
    return [p for p in _requests(fault_proxy, "PUT") if p.endswith("digest=" + digest.replace(":", "%3A"))]


def test_large_file_goes_out_in_one_patch_committed_with_its_digest(fault_proxy, proxy_client, repo, tmp_path):
    data = write_random(tmp_path / "model" / "weights.bin", 3 * MiB + 5)
    os.utime(tmp_path / "model" / "weights.bin", (1, 1))  # not "racily clean": cacheable
    cache = BlobCache(tmp_path / "cache")
    pushed = push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo), cache=cache, stream_min=STREAM_MIN)

    assert (pushed.uploaded, pushed.skipped) == (1, 0)
    patches = [e for e in fault_proxy.exchanges if e.method == "PATCH"]
    assert len(patches) == 1 and patches[0].request_bytes >= len(data)  # the whole file, once
    digest = pushed.manifest.layers[0].digest
    assert len(_commits(fault_proxy, digest)) == 1
    # The hashing thread fed the digest cache: the next push of the unchanged file hashes nothing.
    assert cache.index.lookup_file(tmp_path / "model" / "weights.bin") == digest
    dest = tmp_path / "out"
    pull_model(proxy_client, _ref(fault_proxy, repo), dest)
    assert model_tree(dest) == {"weights.bin": data}


def test_blob_the_registry_has_is_not_committed_again(fault_proxy, proxy_client, repo, tmp_path):
    write_random(tmp_path / "model" / "weights.bin", 3 * MiB)
    first = push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo, "v1"), stream_min=STREAM_MIN)
    fault_proxy.clear()
    before = len(fault_proxy.exchanges)

    # Cold digest cache: the upload starts before the digest is known, then is abandoned.
    again = push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo, "v2"), stream_min=STREAM_MIN)
    assert (again.uploaded, again.skipped) == (0, 1)
    assert again.manifest.layers == first.manifest.layers
    later = fault_proxy.exchanges[before:]
    assert not [e for e in later if e.method == "PUT" and e.path.endswith(first.manifest.layers[0].digest.replace(":", "%3A"))]
    assert [e for e in later if e.method == "DELETE" and "/blobs/uploads/" in e.path]  # session cancelled


def test_identical_large_files_are_uploaded_once(fault_proxy, proxy_client, repo, tmp_path):
    data = write_random(tmp_path / "model" / "a.bin", 2 * MiB)
    (tmp_path / "model" / "b.bin").write_bytes(data)
    pushed = push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo), stream_min=STREAM_MIN)
    assert pushed.uploaded == 1
    assert len(_commits(fault_proxy, pushed.manifest.layers[0].digest)) == 1
    dest = tmp_path / "out"
    pull_model(proxy_client, _ref(fault_proxy, repo), dest)
    assert model_tree(dest) == {"a.bin": data, "b.bin": data}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(method="PATCH", status=413),  # GHCR-style: no whole blob in one PATCH
        Fault(method="PATCH", status=400),
        Fault(method="PATCH", cut_request_after=MiB),  # connection reset mid-body
        Fault(method="PUT", path="/blobs/uploads/", status=500, times=3),  # the commit fails
    ],
    ids=["413", "400", "reset", "commit-500"],
)
def test_refused_streamed_upload_falls_back_to_hash_then_put(fault_proxy, proxy_client, repo, tmp_path, fault):
    model = tmp_path / "model"
    one = write_random(model / "one.bin", 3 * MiB)
    two = write_random(model / "two.bin", 2 * MiB + 1)
    fault_proxy.add(fault)
    pushed = push_model(proxy_client, model, _ref(fault_proxy, repo), stream_min=STREAM_MIN, concurrency=1)

    assert pushed.uploaded == 2
    # One streamed attempt only: the client then stops streaming to this registry.
    assert len([e for e in fault_proxy.exchanges if e.method == "PATCH"]) == 1
    assert not proxy_client.streams_uploads(fault_proxy.host)
    dest = tmp_path / "out"
    pull_model(proxy_client, _ref(fault_proxy, repo), dest)
    assert model_tree(dest) == {"one.bin": one, "two.bin": two}


def test_file_changing_under_a_streamed_push_is_refused_and_nothing_tagged(fault_proxy, proxy_client, repo, tmp_path, monkeypatch):
    write_random(tmp_path / "model" / "weights.bin", 3 * MiB)
    real = transfer.file_chunks

    def changed(path: Path, size: int) -> Iterator[bytes]:
        # What the upload reads differs from what was hashed (same size, one byte flipped).
        for i, chunk in enumerate(real(path, size)):
            yield bytes([chunk[0] ^ 1]) + chunk[1:] if i == 0 else chunk

    monkeypatch.setattr(transfer, "file_chunks", changed)
    with pytest.raises(DigestMismatchError, match="changed while pushing"):
        push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo), stream_min=STREAM_MIN)
    with pytest.raises(NotFoundError):
        proxy_client.get_manifest(_ref(fault_proxy, repo))


def test_blob_in_another_repository_is_mounted_not_uploaded(fault_proxy, proxy_client, repo, tmp_path):
    data = write_random(tmp_path / "a" / "weights.bin", 3 * MiB)
    cache = BlobCache(tmp_path / "cache")
    push_model(proxy_client, tmp_path / "a", _ref(fault_proxy, repo), cache=cache, stream_min=STREAM_MIN)
    # A copy elsewhere: unknown to the digest cache (hashed again), known to the blob index.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    os.utime(tmp_path / "b" / "weights.bin", (1, 1))
    other = f"{repo}-other"
    fault_proxy.clear()
    before = len(fault_proxy.exchanges)
    pushed = push_model(proxy_client, tmp_path / "b", _ref(fault_proxy, other), cache=cache, stream_min=STREAM_MIN)

    assert pushed.uploaded == 1  # mounted counts as sent, like the hash-first path
    later = fault_proxy.exchanges[before:]
    assert [e for e in later if e.method == "POST" and "mount=" in e.path]
    assert not [e for e in later if e.method == "PUT" and e.path.endswith(pushed.manifest.layers[0].digest.replace(":", "%3A"))]
    dest = tmp_path / "out"
    pull_model(proxy_client, _ref(fault_proxy, other), dest)
    assert tree(dest)["weights.bin"] == data


@pytest.mark.parametrize("kind", ["tls_basic", "token"])
def test_streamed_push_and_direct_pull_with_tls_and_authentication(kind, request, repo, tmp_path, docker_config):
    server = request.getfixturevalue("tls_basic_registry" if kind == "tls_basic" else "token_registry")
    CredentialStore().login(server.host, server.username, server.password)
    # Over 4 MiB: the pull reads the body past h11 (registry.blobs._body_pieces), over TLS too.
    data = write_random(tmp_path / "model" / "weights.bin", 6 * MiB + 7)
    options = {"ca_file": server.ca_file} if kind == "tls_basic" else {"plain_http": True}
    with RegistryClient(Connection(**options), retry=fast_retry()) as client:
        ref = Reference(server.host, repo, "v1")
        pushed = push_model(client, tmp_path / "model", ref, stream_min=STREAM_MIN)
        assert pushed.uploaded == 1
        assert client.streams_uploads(server.host)  # no fallback was needed
        dest = tmp_path / "out"
        pull_model(client, ref, dest)
    assert model_tree(dest) == {"weights.bin": data}


def test_failed_streamed_upload_stops_the_hashing_thread(fault_proxy, proxy_client, repo, tmp_path, monkeypatch):
    """An upload that fails for good does not wait for the hash of a huge file to finish."""
    write_random(tmp_path / "model" / "weights.bin", 16 * MiB)
    hashed: list[int] = []

    class SlowHashObserver:  # 16 pieces of 1 MiB, 50 ms each: the hash would take 0.8 s
        def begin(self, name, total): pass
        def end(self, name): pass

        def advance(self, name, amount):
            if name.startswith("hash"):
                hashed.append(amount)
                time.sleep(0.05)

    def unreadable(path, size):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(transfer, "file_chunks", unreadable)
    with pytest.raises(PermissionError):
        push_model(proxy_client, tmp_path / "model", _ref(fault_proxy, repo), stream_min=STREAM_MIN,
                   observer=SlowHashObserver())
    assert sum(hashed) < 16 * MiB  # stopped part-way, not hashed to the end
