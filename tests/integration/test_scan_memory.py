"""The scanner's memory stays flat on hostile inputs: a child process scans bombs and floods
with a peak RSS under 150 MiB (here rather than in tests/unit: it writes and reads GiBs)."""

from __future__ import annotations

import json
import os
import struct
import zlib

import scan_corpus as corpus


def test_memory_stays_flat_on_hostile_inputs(tmp_path):
    """Decompression bombs (gzip, overlapping zip entries), a giant string, memo, stack and
    opcode floods, a 3 GiB payload: scanned in a child process
    (launched from a tiny parent, see test_memory.py) whose peak RSS stays under 150 MiB."""
    bomb = tmp_path / "bomb.joblib"
    with open(bomb, "wb") as f:  # 600 MiB of zeros behind 0.6 MiB of gzip
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"\x80\x04" + b"\x00" * (1 << 20)
        for _ in range(600):
            f.write(z.compress(block))
        f.write(z.flush())
    (tmp_path / "giant_line.pkl").write_bytes(b"S'" + b"a" * (80 << 20) + b"'\n.")
    (tmp_path / "memo.pkl").write_bytes(b"\x80\x04" + b"".join(b"\x8c\x08a%07d\x94" % i for i in range(600_000)) + b"N.")
    (tmp_path / "opcodes.pkl").write_bytes(b"\x80\x04" + b"]" * 900_000 + b"N.")
    (tmp_path / "millions.pkl").write_bytes(b"\x80\x04" + b"N0" * 3_000_000 + b"N.")  # 6 million opcodes
    (tmp_path / "overlap.zip").write_bytes(corpus.overlap_bomb(8, 100 << 20))  # 800 MiB from 0.1 MiB
    big = tmp_path / "bulk.pkl"
    with open(big, "wb") as f:  # a 3 GiB BINBYTES8 payload (sparse): stepped over, never read
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", 3 << 30))
        f.seek(3 << 30, 1)
        f.write(b".")
    from process_helpers import run_with_rusage

    code, out, _, rss, _ = run_with_rusage(["scan", str(tmp_path), "--json", "--scan-limit", "decompressed=512MiB"],
                                           dict(os.environ))
    files = {f["path"]: f for f in json.loads(out)["files"]}
    assert files["bomb.joblib"]["verdict"] == "incomplete" and "decompressed" in files["bomb.joblib"]["error"]
    assert files["giant_line.pkl"]["verdict"] == "incomplete" and "line" in files["giant_line.pkl"]["error"]
    assert files["bulk.pkl"]["verdict"] == "safe"
    assert files["memo.pkl"]["verdict"] == files["opcodes.pkl"]["verdict"] == files["millions.pkl"]["verdict"] == "safe"
    overlap = files["overlap.zip"]
    assert overlap["verdict"] == "dangerous" and any("overlaps" in h["reason"] for h in overlap["hostile"])
    assert "decompressed" in overlap["error"]
    assert code == 5
    print(f"scan peak RSS {rss // 1024} MiB")
    assert rss < 150 * 1024, f"peak RSS {rss // 1024} MiB"
