"""Content policies (ocimodel.licenses, ocimodel.scanner.refusals and .summary): SPDX allow-lists, refusing pickles that run code, the
scan record stored at push, and scanning a model straight from the registry.

Malicious pickles are generated here with ``__reduce__`` -> ``os.system``; nothing unpickles them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
from pickle_helpers import SYSTEM, Reduce

from ocimodel.config import ModelConfig
from ocimodel.errors import ExitCode, UsageError, VerificationError
from ocimodel.licenses import LicenseError, check_license, model_license
from ocimodel.scanner import ScanOptions, header_length, scan_bytes, scan_files
from ocimodel.scanner.refusals import UnsafeModelError, check_blobs_safe
from ocimodel.scanner.summary import check_config_scan, scan_summary


def evil_pickle(marker: Path | None = None) -> bytes:
    """Distinct bytes each call (the registry is shared: a blob must not be there already)."""
    command = f"touch {marker}" if marker else "true"
    return pickle.dumps({"nonce": os.urandom(8).hex(), "x": Reduce(os.system, command)})


def torch_zip(payload: bytes) -> bytes:
    """A PyTorch-style zip checkpoint whose ``archive/data.pkl`` is ``payload``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", os.urandom(64))
    return out.getvalue()


def safetensors(data_bytes: int = 8) -> bytes:
    header = json.dumps({"t": {"dtype": "U8", "shape": [data_bytes], "data_offsets": [0, data_bytes]}}).encode()
    return struct.pack("<Q", len(header)) + header + os.urandom(data_bytes)


# -- licenses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "license, allowed",
    [
        ("MIT", ["MIT"]),
        ("mit", ["MIT"]),
        ("MIT", ["apache-2.0", "mit"]),
        ("Apache-2.0 OR MIT", ["MIT"]),
        ("GPL-3.0-only OR (Apache-2.0 AND MIT)", ["mit", "Apache-2.0"]),
        ("(MIT)", ["MIT"]),
        ("MIT AND BSD-3-Clause", ["BSD-3-Clause", "MIT"]),
        ("Apache-2.0 and MIT", ["Apache-2.0", "MIT"]),  # lowercase operators (SPDX 2.x accepted them)
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["gpl-2.0-only with classpath-exception-2.0"]),
        ("MIT", ["Apache-2.0,MIT"]),  # comma-separated entries (one env var)
        ("LicenseRef-acme-1", ["LicenseRef-Acme-1"]),
        ("GPL-3.0", []),  # no allow-list: no policy
        (None, []),
    ],
)
def test_allowed_licenses(license, allowed):
    check_license(license, allowed)


@pytest.mark.parametrize(
    "license, allowed, fragment",
    [
        ("GPL-3.0-only", ["MIT"], "GPL-3.0-only"),
        ("MIT AND GPL-3.0-only", ["MIT"], "gpl-3.0-only not on the allow-list"),
        ("GPL-3.0-only OR AGPL-3.0-only", ["MIT"], "agpl-3.0-only"),
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["GPL-2.0-only"], "with classpath-exception-2.0"),
        ("MIT-0", ["MIT"], "MIT-0"),
        (None, ["MIT"], "declares no license"),
        ("  ", ["MIT"], "declares no license"),
        ("MIT OR", ["MIT"], "not a valid SPDX expression"),
        ("(MIT", ["MIT"], "not a valid SPDX expression"),
        ("MIT)", ["MIT"], "not a valid SPDX expression"),
        ("MIT Apache-2.0", ["MIT", "Apache-2.0"], "not a valid SPDX expression"),
        ("MIT WITH", ["MIT"], "not a valid SPDX expression"),
    ],
)
def test_refused_licenses(license, allowed, fragment):
    with pytest.raises(LicenseError) as info:
        check_license(license, allowed)
    assert fragment in str(info.value)
    assert isinstance(info.value, VerificationError) and info.value.exit_code == ExitCode.VERIFICATION == 5


@pytest.mark.parametrize("allowed", [[""], ["MIT OR Apache-2.0"], ["MIT,"]])
def test_bad_allow_list_is_a_usage_error(allowed):
    with pytest.raises(UsageError):
        check_license("MIT", allowed)


def test_model_license_falls_back_to_the_manifest_annotation():
    annotations = {"org.opencontainers.image.licenses": "Apache-2.0"}
    assert model_license(ModelConfig(name="m", license="MIT"), annotations) == "MIT"
    assert model_license(ModelConfig(name="m"), annotations) == "Apache-2.0"
    assert model_license(None, {}) is None


# -- unsafe content ---------------------------------------------------------------------------


def test_check_blobs_safe_names_file_and_call_and_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    staged = tmp_path / "staging"
    staged.mkdir()
    (staged / "sha256-aaa").write_bytes(evil_pickle(marker))
    (staged / "sha256-bbb").write_bytes(safetensors())
    (staged / "sha256-ccc").write_bytes(torch_zip(evil_pickle(marker)))
    items = [("model.pkl", staged / "sha256-aaa"), ("w.safetensors", staged / "sha256-bbb"),
             ("copy.pkl", staged / "sha256-aaa"), ("ckpt.pt", staged / "sha256-ccc")]
    with pytest.raises(UnsafeModelError) as info:
        check_blobs_safe(items)
    message = str(info.value)
    assert f"model.pkl imports {SYSTEM}" in message and f"copy.pkl imports {SYSTEM}" in message
    assert f"ckpt.pt:archive/data.pkl imports {SYSTEM}" in message
    assert info.value.exit_code == 5 and not marker.exists()

    report = check_blobs_safe([("w.safetensors", staged / "sha256-bbb")])
    assert [(f.path, f.format, f.safe_by_construction) for f in report.files] == [("w.safetensors", "safetensors", True)]


def test_files_not_fully_inspected_are_refused(tmp_path):
    (tmp_path / "broken.pkl").write_bytes(b"\x80\x04\x95garbage")
    (tmp_path / "m.joblib").write_bytes(b"\x04\x22\x4d\x18" + os.urandom(32))  # lz4: cannot be decompressed
    for name, why in (("broken.pkl", "neither a valid pickle"), ("m.joblib", "lz4")):
        with pytest.raises(UnsafeModelError, match=f"could not fully inspect.*{name}: .*{why}") as info:
            check_blobs_safe([(name, tmp_path / name)])
        assert info.value.exit_code == 5


def test_allow_globals_let_a_trusted_class_through(tmp_path):
    (tmp_path / "net.pkl").write_bytes(pickle.dumps(Net()))
    items = [("net.pkl", tmp_path / "net.pkl")]
    with pytest.raises(UnsafeModelError, match=f"net.pkl imports {__name__}.Net .*not on the allow-list"):
        check_blobs_safe(items)
    report = check_blobs_safe(items, ScanOptions.make([f"{__name__}.Net"]))
    assert report.verdict == "safe"


class Net:
    pass


def test_scan_summary_is_compact_sorted_and_deterministic(tmp_path):
    (tmp_path / "b.pkl").write_bytes(evil_pickle())
    (tmp_path / "a.safetensors").write_bytes(safetensors())
    (tmp_path / "c.pt").write_bytes(torch_zip(evil_pickle()))
    items = [(p.name, p) for p in (tmp_path / "c.pt", tmp_path / "b.pkl", tmp_path / "a.safetensors")]
    (tmp_path / "d.joblib").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(16))  # zstd: not inspected
    items.append(("d.joblib", tmp_path / "d.joblib"))
    summary = scan_summary(scan_files(items))
    assert summary == scan_summary(scan_files(reversed(items)))
    assert summary["verdict"] == "dangerous" and summary["dangerous"] is True and summary["schema"] == 2
    assert summary["scanner"]["name"] == "ocimodel"
    assert [f["path"] for f in summary["files"]] == ["a.safetensors", "b.pkl", "c.pt", "d.joblib"]
    assert summary["files"][0] == {"path": "a.safetensors", "format": "safetensors", "verdict": "safe",
                                   "pickle": False, "inspected": True}
    assert [f["verdict"] for f in summary["files"]] == ["safe", "dangerous", "dangerous", "incomplete"]
    assert [(f["file"], f["location"], f["call"], f["loads"], f["known"]) for f in summary["findings"]] == [
        ("b.pkl", "", SYSTEM, SYSTEM, True), ("c.pt", "archive/data.pkl", SYSTEM, SYSTEM, True)]
    assert [i["file"] for i in summary["incomplete"]] == ["d.joblib"] and "zstd" in summary["incomplete"][0]["reason"]
    json.dumps(summary)  # JSON-ready as is


def test_check_config_scan_reads_records_of_both_schemas_and_fails_closed(tmp_path):
    # schema 1 (before verdicts): dangerous, or a file the old scan could not finish, is refused
    record = {"dangerous": True, "findings": [{"file": "evil.pkl", "call": SYSTEM}]}
    with pytest.raises(UnsafeModelError, match=f"evil.pkl imports {SYSTEM}"):
        check_config_scan(ModelConfig(name="m", scan=record))
    with pytest.raises(UnsafeModelError):
        check_config_scan(ModelConfig(name="m", scan={"dangerous": True, "findings": "garbage"}))
    old_uninspected = {"dangerous": False, "files": [{"path": "m.pkl", "inspected": False}], "findings": []}
    with pytest.raises(UnsafeModelError, match="could not fully inspect files: m.pkl"):
        check_config_scan(ModelConfig(name="m", scan=old_uninspected))
    for config in (None, ModelConfig(name="m"),
                   ModelConfig(name="m", scan={"dangerous": False, "files": [{"path": "w", "inspected": True}]})):
        check_config_scan(config)
    # records that cannot be interpreted are refused, never read as clean
    for bad in ({}, {"dangerous": False}, {"schema": 3, "verdict": "safe"}, {"schema": 2, "verdict": "fine"},
                {"schema": 2, "verdict": "safe", "findings": "x", "incomplete": []},
                {"schema": 2, "verdict": "dangerous", "findings": [], "incomplete": []}):
        with pytest.raises(UnsafeModelError, match="cannot be interpreted|without saying why"):
            check_config_scan(ModelConfig(name="m", scan=bad))
    # schema 2, as push writes it
    (tmp_path / "net.pkl").write_bytes(pickle.dumps(Net()))
    (tmp_path / "w.safetensors").write_bytes(safetensors())
    files = [(p.name, p) for p in sorted(tmp_path.iterdir())]
    summary = scan_summary(scan_files(files))
    with pytest.raises(UnsafeModelError, match=f"net.pkl imports {__name__}.Net"):
        check_config_scan(ModelConfig(name="m", scan=summary))
    check_config_scan(ModelConfig(name="m", scan=summary), ScanOptions.make([f"{__name__}.Net"]))  # allowed by this pull
    check_config_scan(ModelConfig(name="m", scan=scan_summary(scan_files(files[1:]))))
    (tmp_path / "z.pkl").write_bytes(b"\x80\x04\x95garbage")
    incomplete = scan_summary(scan_files([("z.pkl", tmp_path / "z.pkl")]))
    with pytest.raises(UnsafeModelError, match="could not fully inspect files: z.pkl"):
        check_config_scan(ModelConfig(name="m", scan=incomplete), ScanOptions.make([f"{__name__}.Net"]))


# -- header_length: what a remote scan may skip -----------------------------------------------


def test_header_length_covers_exactly_what_the_scan_reads():
    blob = safetensors(1 << 20)
    n = header_length(blob[:4096], "w.safetensors")
    assert n is not None and n < len(blob)
    assert scan_bytes(blob[:n], "w.safetensors").safe_by_construction
    gguf = b"GGUF\x03\x00\x00\x00" + b"\x00" * 100
    assert header_length(gguf, "m.gguf") == len(gguf) and scan_bytes(gguf, "m.gguf").safe_by_construction
    from scan_corpus import _safetensors_polyglot

    polyglot = _safetensors_polyglot()
    assert header_length(polyglot[:4096], "w.safetensors") is None  # its header starts a pickle: read it all
    assert header_length(evil_pickle(), "m.pkl") is None
    assert header_length(torch_zip(b"x"), "m.safetensors") is None
    assert header_length(b"\x1f\x8b" + os.urandom(100), "m.safetensors") is None


# -- push records the scan; Client.scan of a reference ---------------------------------------


# -- pull --deny-unsafe: incomplete files, the already-installed fast path, allowed globals -------


