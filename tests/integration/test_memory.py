"""Memory stays flat whatever the model size: push and pull a multi-GiB file in a child
process and read its peak RSS from the kernel (not a timer: sizes, not seconds)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from process_helpers import run_with_rusage

SIZE = 2 * 1024**3 + 12345  # multi-GiB, not a multiple of any chunk size
LIMIT_KIB = 150 * 1024
FAULT_LIMIT = SIZE // 4096 // 8  # 1 in 8 of the pages received; ~13 000 measured


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


@pytest.mark.slow
def test_push_of_sixteen_large_files_at_concurrency_16_in_flat_memory(registry, repo, tmp_path, docker_config):
    # 16 streams at once (each file over the streamed-upload threshold): memory is per stream
    # (a few MiB of pieces), so even N=16 stays under the cap. (Pull at N=16 is the pull side's.)
    model = tmp_path / "shards"
    model.mkdir()
    size = 72 * 1024 * 1024 + 7
    for i in range(16):
        with open(model / f"shard-{i:02d}.bin", "wb") as f:
            f.write(os.urandom(1024 * 1024))
            f.seek(size - 1024 * 1024)
            f.write(os.urandom(1024 * 1024))
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_CONCURRENCY": "16"}
    ref = f"{registry.host}/{repo}:shards"

    code, _, err, push_rss, _ = run_with_rusage(["push", str(model), ref, "--no-git"], env)
    assert code == 0, err
    assert push_rss < LIMIT_KIB, f"push at N=16 peaked at {push_rss // 1024} MiB"
    print(f"push at N=16 peak RSS {push_rss // 1024} MiB")
