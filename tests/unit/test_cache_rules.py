"""The caches without a registry: where they live, and when a file digest may be remembered."""

from __future__ import annotations

import os
import time

from ocimodel.transfer.cache import CACHE_DIR_ENV, default_cache_dir, open_cache
from ocimodel.transfer.digestcache import DigestCache

HOUR_AGO = time.time() - 3600


def test_same_size_rewrite_with_same_mtime_but_new_inode_is_rehashed(tmp_path, cache):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    cache.index.store_file(path, "sha256:" + "0" * 64, path.stat(), time.time_ns())
    assert cache.index.lookup_file(path) == "sha256:" + "0" * 64
    replacement = tmp_path / "g.bin"
    replacement.write_bytes(b"b" * 100)
    os.utime(replacement, (HOUR_AGO, HOUR_AGO))
    os.replace(replacement, path)  # same path, size and mtime: only the inode tells
    assert cache.index.lookup_file(path) is None


def test_recently_modified_file_is_not_remembered(tmp_path):
    index = DigestCache(tmp_path / "index.sqlite")
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    index.store_file(path, "sha256:" + "1" * 64, path.stat(), time.time_ns())
    assert index.lookup_file(path) is None  # a write in the same mtime tick could go unseen
    index.close()


def test_cache_location_and_switch(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    assert open_cache(enabled=False) is None
    assert open_cache().root == tmp_path / "envcache"
    assert open_cache(tmp_path / "explicit").root == tmp_path / "explicit"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir().name == "ocimodel"
