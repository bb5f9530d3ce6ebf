"""Memory stays flat whatever the model size: push and pull a multi-GiB file in a child
process and read its peak RSS from the kernel (not a timer: sizes, not seconds)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

SIZE = 2 * 1024**3 + 12345  # multi-GiB, not a multiple of any chunk size
LIMIT_KIB = 150 * 1024
FAULT_LIMIT = SIZE // 4096 // 8  # 1 in 8 of the pages received; ~13 000 measured


# The child is forked from this tiny launcher, not from pytest: a forked child's peak RSS
# starts at its parent's size (the pages it shares before exec count), and pytest after a
# few hundred tests is itself hundreds of MiB.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\nMINFLT={usage.ru_minflt}\\nPEAK_RSS_KIB={usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_with_rusage(args: list[str], env: dict[str, str]) -> tuple[int, str, str, int, int]:
    """Run ``python -m ocimodel ARGS``; return exit code, stdout, stderr, its peak RSS (KiB)
    and its minor page faults."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "ocimodel", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )
    head, _, tail = done.stderr.rpartition("MINFLT=")
    faults, _, rss = tail.partition("PEAK_RSS_KIB=")
    return done.returncode, done.stdout, head, int(rss.strip()), int(faults.strip())


@pytest.mark.slow
def test_push_and_pull_multi_gib_in_flat_memory(registry, repo, tmp_path, docker_config):
    model = tmp_path / "big.bin"
    with open(model, "wb") as f:
        # Random head and tail around a sparse middle: real bytes where a bug would show,
        # cheap zeros elsewhere.
        f.write(os.urandom(4 * 1024 * 1024))
        f.seek(SIZE - 4 * 1024 * 1024)
        f.write(os.urandom(4 * 1024 * 1024))
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    ref = f"{registry.host}/{repo}:big"

    code, out, err, push_rss, _ = run_with_rusage(["push", str(model), ref, "--no-git"], env)
    assert code == 0, err
    print(f"push peak RSS {push_rss // 1024} MiB")
    assert push_rss < LIMIT_KIB, f"push peaked at {push_rss // 1024} MiB"

    dest = tmp_path / "out"
    code, out, err, pull_rss, pull_faults = run_with_rusage(["pull", ref, str(dest), "--no-cache"], env)
    assert code == 0, err
    print(f"pull peak RSS {pull_rss // 1024} MiB, {pull_faults} minor faults")
    assert pull_rss < LIMIT_KIB, f"pull peaked at {pull_rss // 1024} MiB"
    # Chunk buffers are reused, not faulted in afresh per chunk (ocimodel.transfer.allocator): with
    # glibc's adaptive defaults this pull took ~350 000 faults (a page per 4 KiB received).
    assert pull_faults < FAULT_LIMIT, f"pull took {pull_faults} minor page faults"

    def digest(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(4 * 1024 * 1024):
                h.update(chunk)
        return h.hexdigest()

    assert (dest / "big.bin").stat().st_size == SIZE
    assert digest(dest / "big.bin") == digest(model)
