"""Content policies against a real registry: push records and refuses, pull refuses before writing, scan reads what it must."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
from pickle_helpers import SYSTEM
from test_safety import Net, evil_pickle, safetensors, torch_zip

from ocimodel.api import Client
from ocimodel.errors import DigestMismatchError, UsageError
from ocimodel.registry.connection import Connection
from ocimodel.scanner.refusals import UnsafeModelError


@pytest.fixture
def oc(registry, docker_config):
    with Client(Connection(plain_http=True)) as client:
        yield client


def test_push_records_scan_and_stays_reproducible(oc, registry, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    model = tmp_path / "m"
    model.mkdir()
    (model / "evil.pkl").write_bytes(evil_pickle())
    (model / "w.safetensors").write_bytes(safetensors())
    seen = []
    a = oc.push(model, f"{registry.host}/{repo}:a", version="1", code=False, on_scan=seen.append)
    b = oc.push(model, f"{registry.host}/{repo}:b", version="1", code=False)
    assert a.digest == b.digest
    assert len(seen) == 1 and seen[0].dangerous
    record = oc.inspect(f"{registry.host}/{repo}:a").config.scan
    assert record["dangerous"] is True
    assert [(f["file"], f["call"]) for f in record["findings"]] == [("evil.pkl", SYSTEM)]
    assert oc.push(model, f"{registry.host}/{repo}:c", scan=False).config.scan is None


def test_push_deny_unsafe_uploads_nothing(oc, registry, repo, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "evil.pkl").write_bytes(evil_pickle())
    with pytest.raises(UnsafeModelError, match="evil.pkl"):
        oc.push(model, f"{registry.host}/{repo}:1", deny_unsafe=True)
    digest = "sha256:" + hashlib.sha256((model / "evil.pkl").read_bytes()).hexdigest()
    assert not registry.blob_path(digest).exists()
    with pytest.raises(UsageError):
        oc.push(model, f"{registry.host}/{repo}:1", deny_unsafe=True, scan=False)


def test_scan_reference_verifies_what_it_reads_and_skips_what_it_need_not(oc, registry, repo, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "big.safetensors").write_bytes(safetensors(3 << 20))
    (model / "small.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    (model / "big.pkl").write_bytes(pickle.dumps(os.urandom(2 << 20)))
    (model / "ckpt.pt").write_bytes(torch_zip(evil_pickle()))
    (model / "same.pt").write_bytes((model / "ckpt.pt").read_bytes())
    ref = f"{registry.host}/{repo}:1"
    pushed = oc.push(model, ref, scan=False)

    report = oc.scan(ref, max_blob_bytes=1 << 20)

    assert report.subject == f"{ref}@{pushed.digest}"
    by = {f.path: f for f in report.files}
    assert sorted(by) == ["big.pkl", "big.safetensors", "ckpt.pt", "same.pt", "small.pkl"]
    big = by["big.safetensors"]
    assert (big.format, big.safe_by_construction, big.error, big.verified) == ("safetensors", True, None, False)
    assert (by["small.pkl"].format, by["small.pkl"].verified, by["small.pkl"].dangerous) == ("pickle", True, [])
    assert "not inspected" in by["big.pkl"].error and by["big.pkl"].verified is False
    assert report.dangerous and by["ckpt.pt"].verified is True
    assert {(g.location, g.call) for g in by["ckpt.pt"].dangerous} == {("archive/data.pkl", SYSTEM)}
    assert by["same.pt"].dangerous == by["ckpt.pt"].dangerous


def test_scan_reference_refuses_a_tampered_blob(oc, registry, repo, tmp_path):
    src = tmp_path / "model.pkl"
    src.write_bytes(pickle.dumps(list(range(2000))))
    ref = f"{registry.host}/{repo}:1"
    layer = oc.push(src, ref).files[0]
    registry.blob_path(layer.digest).write_bytes(b"\x80" * layer.size)
    with pytest.raises(DigestMismatchError):
        oc.scan(ref)


def test_scan_local_path_wins_and_bad_target_is_a_usage_error(oc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(evil_pickle())
    report = oc.scan("evil.pkl")
    assert report.dangerous and report.subject == "evil.pkl" and report.files[0].verified is None
    with pytest.raises(UsageError, match="no such file or directory"):
        oc.scan("./missing-model")


def test_pull_deny_unsafe_refuses_files_not_fully_inspected_also_when_already_installed(oc, registry, repo, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "clf.joblib").write_bytes(b"\x04\x22\x4d\x18" + os.urandom(64))  # lz4: ocimodel cannot decompress it
    ref = f"{registry.host}/{repo}:1"
    pushed = oc.push(model, ref, code=False)
    assert pushed.config.scan["verdict"] == "incomplete"
    with pytest.raises(UnsafeModelError, match="clf.joblib: lz4"):
        oc.push(model, f"{registry.host}/{repo}:2", deny_unsafe=True)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeModelError, match="push-time scan .* could not fully inspect files: clf.joblib"):
        oc.pull(ref, dest, deny_unsafe=True)
    assert not dest.exists()
    # pushed without a record: the downloaded bytes are scanned before anything is moved into DEST
    bare = f"{registry.host}/{repo}:bare"
    oc.push(model, bare, scan=False)
    with pytest.raises(UnsafeModelError, match="could not fully inspect.*clf.joblib"):
        oc.pull(bare, dest, deny_unsafe=True)
    assert not dest.exists()
    # installed without the option, then checked again with it: the fast path scans too
    oc.pull(bare, dest)
    with pytest.raises(UnsafeModelError, match="clf.joblib"):
        oc.pull(bare, dest, deny_unsafe=True)


def test_pull_allow_globals_reaches_every_check(oc, registry, repo, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "net.pkl").write_bytes(pickle.dumps({"net": Net(), "nonce": os.urandom(8).hex()}))
    ref = f"{registry.host}/{repo}:1"
    module = Net.__module__  # test_safety, where the class is defined
    assert oc.push(model, ref, code=False).config.scan["verdict"] == "dangerous"
    with pytest.raises(UnsafeModelError, match=f"imports {module}.Net"):
        oc.pull(ref, tmp_path / "refused", deny_unsafe=True)
    trusted = [f"{module}.Net"]
    oc.pull(ref, tmp_path / "out", deny_unsafe=True, allow_globals=trusted)  # config record and blobs
    oc.pull(ref, tmp_path / "out", deny_unsafe=True, allow_globals=trusted)  # already installed
    assert (tmp_path / "out" / "net.pkl").read_bytes() == (model / "net.pkl").read_bytes()
    pushed = oc.push(model, f"{registry.host}/{repo}:2", deny_unsafe=True, allow_globals=trusted)
    assert pushed.config.scan["verdict"] == "safe"
    assert oc.scan(ref, allow_globals=trusted).verdict == "safe"
    with pytest.raises(UsageError, match="wildcards"):
        oc.pull(ref, tmp_path / "x", deny_unsafe=True, allow_globals=[f"{module}.*"])
    with pytest.raises(UsageError, match="scan-limit"):
        oc.scan(ref, scan_limits=["opcodes=many"])
