"""The local caches: file digests (no rehash of unchanged files), verified blobs (download a file
once per machine), and blob locations (mount instead of upload). Bytes are counted on the wire
by the fault fault_proxy (with no fault configured), never timed."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from faultproxy import FaultProxy
from test_cache_rules import HOUR_AGO
from transfer_helpers import pull_model, push_model, tree, write_random

import ocimodel.transfer.upload
from ocimodel.reference import Reference
from ocimodel.transfer.cache import BlobCache

KiB = 1024


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every file the push hashes."""
    calls: list[Path] = []
    real = ocimodel.transfer.upload.sha256_file

    def counting(path, progress=None):
        calls.append(Path(path))
        return real(path, progress)

    monkeypatch.setattr(ocimodel.transfer.upload, "sha256_file", counting)
    return calls


def _model(root: Path, count: int = 8, size: int = 256 * KiB) -> dict[str, bytes]:
    files = {f"shard-{i}.bin": write_random(root / f"shard-{i}.bin", size + i) for i in range(count)}
    for name in files:
        os.utime(root / name, (HOUR_AGO, HOUR_AGO))  # settled files, as a trained model's are
    return files


def _layer_bytes(fault_proxy: FaultProxy, digests: list[str]) -> int:
    return sum(fault_proxy.bytes_served(f"/blobs/{d}$") for d in digests)


# -- digest cache ---------------------------------------------------------------------------------


def test_unchanged_file_is_not_rehashed_and_a_modified_one_is(proxy_client, fault_proxy, repo, tmp_path, cache, hashed):
    model = tmp_path / "model"
    _model(model, count=3)
    ref = Reference(registry=fault_proxy.host, repository=repo, tag="a")
    push_model(proxy_client, model, ref, cache=cache)
    assert len(hashed) == 3
    hashed.clear()
    second = push_model(proxy_client, model, ref.with_tag("b"), cache=cache)
    assert hashed == []  # nothing read to hash
    assert (second.uploaded, second.skipped) == (0, 3)

    changed = model / "shard-1.bin"
    changed.write_bytes(os.urandom(100))
    os.utime(changed, (HOUR_AGO + 5, HOUR_AGO + 5))
    third = push_model(proxy_client, model, ref, cache=cache)
    assert hashed == [changed]
    assert third.uploaded == 1
    assert {layer.title: layer.digest for layer in third.manifest.layers}["shard-1.bin"] != {
        layer.title: layer.digest for layer in second.manifest.layers
    }["shard-1.bin"]


# -- blob cache -----------------------------------------------------------------------------------


def test_new_version_downloads_only_the_changed_file_and_repull_downloads_nothing(
    proxy_client, fault_proxy, repo, tmp_path, cache
):
    model = tmp_path / "model"
    files = _model(model)
    v1 = push_model(proxy_client, model, Reference(registry=fault_proxy.host, repository=repo, tag="v1"), cache=cache)
    pull_model(proxy_client, Reference(registry=fault_proxy.host, repository=repo, tag="v1"), tmp_path / "d1", cache=cache)
    total = sum(layer.size for layer in v1.manifest.layers)
    assert total <= _layer_bytes(fault_proxy, [layer.digest for layer in v1.manifest.layers]) < total + 8 * 4 * KiB

    files["shard-3.bin"] = write_random(model / "shard-3.bin", 256 * KiB + 3)
    v2 = push_model(proxy_client, model, Reference(registry=fault_proxy.host, repository=repo, tag="v2"), cache=cache)
    fault_proxy.clear()
    pull_model(proxy_client, Reference(registry=fault_proxy.host, repository=repo, tag="v2"), tmp_path / "d2", cache=cache)
    assert tree(tmp_path / "d2") == files
    one = len(files["shard-3.bin"])
    downloaded = _layer_bytes(fault_proxy, [layer.digest for layer in v2.manifest.layers])
    assert one <= downloaded < one + 4 * KiB  # ~1/8 of the model

    fault_proxy.clear()
    pull_model(proxy_client, Reference(registry=fault_proxy.host, repository=repo, tag="v2"), tmp_path / "d3", cache=cache)
    assert tree(tmp_path / "d3") == files
    assert _layer_bytes(fault_proxy, [layer.digest for layer in v2.manifest.layers]) == 0


def test_editing_a_pulled_file_never_reaches_a_later_pull(proxy_client, fault_proxy, repo, tmp_path, cache):
    """A cold pull links its verified file into the cache (one write, not two); the entry is
    re-verified on every use, so an in-place edit in DEST is caught, evicted and re-fetched."""
    model = tmp_path / "model"
    files = _model(model, count=1)
    ref = Reference(registry=fault_proxy.host, repository=repo, tag="v1")
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    pull_model(proxy_client, ref, tmp_path / "d1", cache=cache)
    entry = cache.blob_path(layer.digest)
    pulled = tmp_path / "d1" / "shard-0.bin"
    assert entry.stat().st_ino == pulled.stat().st_ino  # linked, not written twice
    with open(pulled, "r+b") as f:  # editing a pulled file in place...
        f.write(b"edited")
    fault_proxy.clear()
    pull_model(proxy_client, ref, tmp_path / "d2", cache=cache)
    assert tree(tmp_path / "d2") == files  # ...does not reach the next pull
    assert fault_proxy.bytes_served(f"/blobs/{layer.digest}$") >= layer.size  # the bad entry was fetched again
    second = tmp_path / "d2" / "shard-0.bin"
    assert second.stat().st_ino != pulled.stat().st_ino
    assert pulled.read_bytes()[:6] == b"edited"  # and the user's edit is left alone


def test_corrupt_or_truncated_cache_entry_is_evicted_and_downloaded_again(proxy_client, fault_proxy, repo, tmp_path, cache):
    model = tmp_path / "model"
    files = _model(model, count=1)
    ref = Reference(registry=fault_proxy.host, repository=repo, tag="v1")
    layer = push_model(proxy_client, model, ref).manifest.layers[0]
    pull_model(proxy_client, ref, tmp_path / "d1", cache=cache)
    entry = cache.blob_path(layer.digest)
    for damage in ("flip", "truncate"):
        entry.chmod(0o644)
        data = bytearray(entry.read_bytes())
        if damage == "flip":
            data[100] ^= 0xFF
        else:
            del data[-1]
        entry.write_bytes(bytes(data))
        fault_proxy.clear()
        dest = tmp_path / f"d-{damage}"
        pull_model(proxy_client, ref, dest, cache=cache)
        assert tree(dest) == files
        assert fault_proxy.count(f"/blobs/{layer.digest}$", "GET") == 1  # downloaded again
        assert entry.read_bytes() == files["shard-0.bin"]  # and the cache repaired


def test_unusable_cache_only_warns(proxy_client, fault_proxy, repo, tmp_path, caplog):
    model = tmp_path / "model"
    files = _model(model, count=2)
    ref = Reference(registry=fault_proxy.host, repository=repo, tag="v1")
    push_model(proxy_client, model, ref)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    broken = BlobCache(blocker)
    pull_model(proxy_client, ref, tmp_path / "out", cache=broken)
    assert tree(tmp_path / "out") == files
    assert "could not add" in caplog.text


# -- cross-repository mount -------------------------------------------------------------------------


def test_blob_in_another_repository_is_mounted_not_uploaded(proxy_client, fault_proxy, repo, tmp_path, cache):
    model = tmp_path / "model"
    _model(model, count=3)
    first = Reference(registry=fault_proxy.host, repository=f"{repo}/a", tag="v1")
    push_model(proxy_client, model, first, cache=cache)
    fault_proxy.clear()
    second = Reference(registry=fault_proxy.host, repository=f"{repo}/b", tag="v1")
    pushed = push_model(proxy_client, model, second, cache=cache)
    layer_digests = [layer.digest for layer in pushed.manifest.layers]
    mounts = [parse_qs(urlsplit(e.path).query) for e in fault_proxy.exchanges if e.method == "POST" and "mount=" in e.path]
    assert sorted(m["mount"][0] for m in mounts) == sorted(layer_digests)
    assert all(m["from"] == [f"{repo}/a"] for m in mounts)
    assert fault_proxy.count("/blobs/uploads/", "PUT") == 1  # only the (new) config blob was uploaded
    assert fault_proxy.count("/blobs/uploads/", "PATCH") == 0
    assert all(proxy_client.blob_exists(second, d) for d in layer_digests)


def test_pulled_blobs_are_remembered_for_mounting(proxy_client, fault_proxy, repo, tmp_path, cache):
    model = tmp_path / "model"
    _model(model, count=2)
    source = Reference(registry=fault_proxy.host, repository=f"{repo}/upstream", tag="v1")
    push_model(proxy_client, model, source)  # pushed by someone else: this cache knows nothing yet
    pull_model(proxy_client, source, tmp_path / "out", cache=cache)
    fault_proxy.clear()
    push_model(proxy_client, tmp_path / "out", Reference(registry=fault_proxy.host, repository=f"{repo}/fork", tag="v1"), cache=cache)
    assert fault_proxy.count("mount=", "POST") == 2
    assert fault_proxy.count("/blobs/uploads/", "PUT") == 1  # the config only


# -- where the cache lives ----------------------------------------------------------------------------


