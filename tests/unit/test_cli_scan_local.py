"""ocimodel scan on local files: verdicts, exit codes, options."""

from __future__ import annotations

import json
import os
import pickle
import struct

from process_helpers import run
from test_safety import SYSTEM, safetensors


def test_scan_local_dir_with_malicious_pickle_exits_5_naming_file_and_call(evil_model, tmp_path):
    out = run("scan", str(evil_model))
    assert out.returncode == 5, out.stderr
    assert f"sub/evil.pkl: DANGEROUS {SYSTEM}" in out.stdout
    assert "w.safetensors: SAFE safetensors" in out.stdout and out.stdout.splitlines()[-1].startswith("DANGEROUS: ")
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"sub/evil.pkl imports {SYSTEM}" in lines[0]
    assert "Traceback" not in out.stderr and not (tmp_path / "pwned").exists()

    data = json.loads(run("scan", str(evil_model), "--json").stdout)
    assert data["dangerous"] is True
    assert {(f["path"], g["call"]) for f in data["files"] for g in f["dangerous"]} == {("sub/evil.pkl", SYSTEM)}


def test_scan_safe_dir_exits_0_and_reports_safe_formats(tmp_path):
    root = tmp_path / "safe"
    root.mkdir()
    (root / "model.safetensors").write_bytes(safetensors(1024))
    (root / "tokenizer.json").write_text('{"vocab": {}}')
    # A real GGUF header (version 3, 2 tensors, 5 key/values): fixed bytes, so the verdict
    # cannot depend on what random bytes happen to spell when read as pickle opcodes.
    (root / "model.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2, 5) + bytes(range(64)))
    out = run("scan", str(root))
    assert out.returncode == 0, out.stderr
    for line in ("model.safetensors: SAFE safetensors", "tokenizer.json: SAFE json", "model.gguf: SAFE gguf"):
        assert line in out.stdout
    assert out.stdout.splitlines()[-1] == "3 file(s) scanned: 0 dangerous, 0 not fully inspected, 3 safe" and out.stderr == ""
    data = json.loads(run("scan", str(root / "model.safetensors"), "--json").stdout)
    assert data["dangerous"] is False and data["files"][0]["safe_by_construction"] is True


def test_scan_exits_5_on_files_not_fully_inspected(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "broken.pkl").write_bytes(b"\x80\x04\x95garbage")
    (root / "w.safetensors").write_bytes(safetensors())
    out = run("scan", str(root))
    assert out.returncode == 5
    assert "broken.pkl: NOT FULLY INSPECTED named like a pickle" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("NOT FULLY INSPECTED: 2 file(s) scanned")
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing a model with files ocimodel could not fully inspect")
    assert "broken.pkl" in lines[0] and "Traceback" not in out.stderr
    assert run("scan", str(root), "--strict").returncode == 5  # the old flag is still accepted
    data = json.loads(run("scan", str(root), "--json").stdout)
    assert data["verdict"] == "incomplete" and {f["path"]: f["verdict"] for f in data["files"]} == {
        "broken.pkl": "incomplete", "w.safetensors": "safe"}


def test_scan_allow_global_and_scan_limit_options(tmp_path):
    from test_safety import Net

    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps([Net()]))
    assert run("scan", str(path)).returncode == 5
    assert run("scan", str(path), "--allow-global", "test_safety.Net").returncode == 0
    assert run("scan", str(path), env={"OCIMODEL_ALLOW_GLOBAL": "test_safety.Net"}).returncode == 0
    for bad in (["--allow-global", "test_safety.*"], ["--allow-global", "os.system"], ["--scan-limit", "bogus=1"]):
        out = run("scan", str(path), *bad)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr, bad
    limited = run("scan", str(path), "--allow-global", "test_safety.Net", "--scan-limit", "opcodes=3")
    assert limited.returncode == 5 and "scan limit 'opcodes'" in limited.stdout


def test_scan_unknown_target_is_a_usage_error(tmp_path):
    out = run("scan", str(tmp_path / "nothing-here"))
    assert out.returncode == 2 and "no such file or directory" in out.stderr and "Traceback" not in out.stderr


def test_scan_of_raw_pickle_file_and_joblib_style_names(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps({"coef": [0.5]}))
    out = run("scan", str(path))
    assert out.returncode == 0 and "model.joblib: OK" in out.stdout
