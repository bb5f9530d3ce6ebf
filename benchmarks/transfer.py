"""ocimodel benchmarks against one local registry: transfer vs curl/oras-py, re-push, delta, start-up.

    python benchmarks/transfer.py [--scenario transfer,repush,delta,startup] [--size 1GiB] [--rounds 3]
                                  [--repush-size 10GiB] [--delta-size 1GiB] [--json] [--keep-order]

Starts ONE distribution registry (the Debian ``docker-registry`` binary, plain http on
127.0.0.1, storage in a temp dir that is deleted afterwards) and runs the chosen scenarios
(all by default, in the order given). Only 127.0.0.1 is contacted.

transfer: writes a random file of ``--size`` bytes, then for each round runs, in a rotated
order per round:

- curl:     POST an upload session, ``curl -T FILE`` PUT ``?digest=`` (sha256 computed
            beforehand, not timed; must answer 201); pull is ``curl -o`` of the blob URL.
- oras-py:  ``OrasClient.push`` / ``.pull`` in their own process (benchmarks/oras_tool.py).
- ocimodel: ``python -m ocimodel push FILE REF --no-git --json`` (``uploadedBlobs`` must be 1)
            and ``python -m ocimodel pull REF DEST --json``, each with an EMPTY
            ``OCIMODEL_CACHE_DIR`` (cold: it hashes and downloads every byte, like curl).

Each tool pushes to a fresh repository, and the registry's storage is wiped after each tool's
push+pull so every push writes the blob anew. Each pull writes into a fresh directory that
is removed afterwards; every pulled file is checked against the original's sha256 (not timed).

repush: 8 files summing to ``--repush-size`` (random MiB at head and tail around a sparse hole,
so creating them is cheap), pushed once (fills the registry), then pushed again unchanged to
new tags with the same ``OCIMODEL_CACHE_DIR`` (digest cache warm): wall time, uploadedBlobs.

delta: 8 equal random files (``--delta-size`` in all); push v1, pull v1 (consumer cache), rewrite
1 file, push v2, pull v2 into a fresh dir with the consumer cache, re-pull v2 into another
fresh dir. Bytes served by the registry per pull come from its own log
(``http.response.written`` of every request, summed).

startup: median of 10 runs each of ``ocimodel --help`` and ``ocimodel --version`` (the console
script next to ``sys.executable``), and of ``python -m ocimodel --version`` for comparison.

Wall time and the tool process's peak RSS (``os.wait4``'s ``ru_maxrss``, taken in a tiny spawner:
see ``Bench.timed``) are recorded per command; tables show medians.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # RegistryServer lives with the test fixtures

from registry_fixtures import REGISTRY_BINARY, RegistryServer  # noqa: E402

SCENARIOS = ("transfer", "repush", "delta", "startup")
TOOLS = ("curl", "oras-py", "ocimodel")
OPS = ("push", "pull")
TARGET_PUSH_RATIO = 1.05
TARGET_PULL_RATIO = 1.25
TARGET_RSS_MIB = 150.0
TARGET_REPUSH_S = 1.0
TARGET_DELTA_SLACK = 1.02  # v2 pull may download the changed file's bytes plus 2% (manifest, config)
TARGET_STARTUP_S = 0.3
SHARDS = 8
MIB = 1024 * 1024
STARTUP_RUNS = 10
OCIMODEL = [sys.executable, "-m", "ocimodel"]
WRITE_CHUNK = 8 * 1024 * 1024
FILE_NAME = "model.bin"
# Run as ``python -I -S -c SPAWNER REPORT ARGV...``: fork, exec ARGV, wait4, write the rusage.
SPAWNER = r"""
import json, os, signal, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as f:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "returncode": code}, f)
sys.exit(0 if code == 0 else 1)
"""
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KI": 1024, "MI": 1024**2, "GI": 1024**3}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64MiB, 1GiB, 500MB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def human_size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


@dataclass
class Run:
    """One timed command (or two, for curl push: POST + PUT)."""

    tool: str
    op: str
    round: int
    seconds: float
    max_rss_kib: int
    verified: bool | None = None  # pulled bytes == original (checked after timing)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timed:
    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


class Bench:
    def __init__(self, size: int, rounds: int, workdir: Path, log: Callable[[str], None]) -> None:
        self.results: dict[str, Any] = {}  # scenario name -> its summary (transfer: see summarize)
        self.size = size
        self.rounds = rounds
        self.workdir = workdir
        self.log = log
        self.registry: RegistryServer | None = None
        self.file = workdir / "src" / FILE_NAME
        self.digest = ""
        self.docker_config = workdir / "docker-config"
        self.runs: list[Run] = []
        self.env = self._child_env()

    # -- setup ----------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_") and "proxy" not in k.lower()}
        env.update(
            OCIMODEL_PLAIN_HTTP="1",
            DOCKER_CONFIG=str(self.docker_config),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            # Bytecode goes to a temp prefix (never into the tree); the first run of each tool
            # compiles, later runs use it, as an installed package would.
            PYTHONPYCACHEPREFIX=str(self.workdir / "pycache"),
            XDG_CACHE_HOME=str(self.workdir / "xdg-cache"),  # nothing leaks into ~/.cache
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def start(self) -> None:
        self.docker_config.mkdir(parents=True)
        self.registry = RegistryServer(self.workdir / "registry").start()
        self.log(f"registry: {self.registry.url} (storage {self.registry.storage_dir})")

    def warm_up(self) -> None:
        """Untimed push+pull of 1 MiB by ocimodel and oras-py: compiles their bytecode into the
        temp ``PYTHONPYCACHEPREFIX`` (as an installed package has it) and warms the page cache,
        so no first measured run pays for it."""
        small = self.workdir / "warm-up" / "warm.bin"
        small.parent.mkdir()
        small.write_bytes(os.urandom(MIB))
        repo = f"bench/warm-up-{uuid.uuid4().hex[:8]}"
        ocimodel_env = self.cold_cache_env()
        for argv, env in (
            ([*OCIMODEL, "push", str(small), f"{self.host}/{repo}:a", "--no-git", "--json"], ocimodel_env),
            ([*OCIMODEL, "pull", f"{self.host}/{repo}:a", str(small.parent / "o"), "--json"], ocimodel_env),
            ([sys.executable, str(HERE / "oras_tool.py"), "push", self.host, f"{repo}-oras:a", str(small)], self.env),
            ([sys.executable, str(HERE / "oras_tool.py"), "pull", self.host, f"{repo}-oras:a", str(small.parent / "p")],
             self.env),
        ):
            self.check(self.timed(argv, env=env), f"warm-up {argv[1:3]}")
        shutil.rmtree(small.parent)
        shutil.rmtree(ocimodel_env["OCIMODEL_CACHE_DIR"], ignore_errors=True)
        self.wipe_storage()

    def prepare_transfer_file(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.log(f"writing {human_size(self.size)} of random bytes to {self.file}")
        h = hashlib.sha256()
        with open(self.file, "wb") as f:
            left = self.size
            while left:
                chunk = os.urandom(min(WRITE_CHUNK, left))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        self.digest = "sha256:" + h.hexdigest()
        self.log(f"digest {self.digest}")

    def stop(self) -> None:
        if self.registry is not None:
            self.registry.stop()
            self.registry = None

    # -- measuring ------------------------------------------------------------------------

    def timed(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Timed:
        """Run ``argv`` through the tiny spawner; wall time from fork to reap, and its peak RSS.

        Why a spawner: ``ru_maxrss`` from wait4 includes the RSS high-water mark of the memory
        image the child had before exec. Python's subprocess uses vfork, so a child spawned
        from this (large) process would report at least *our* peak RSS. The spawner is a bare
        ``python -I -S`` (about 8 MiB) that forks, execs ``argv`` and reports wait4's rusage.
        """
        # Untimed: write back what earlier commands left dirty (the last push's blob in the
        # registry's storage, the last pull's files), so no command pays for its predecessor's
        # writes. Without it, pull times here swung 1-3.5 s with the kernel's writeback.
        os.sync()
        out = tempfile.TemporaryFile(dir=self.workdir)
        err = tempfile.TemporaryFile(dir=self.workdir)
        report = self.workdir / f"rusage-{uuid.uuid4().hex[:8]}.json"
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", SPAWNER, str(report), *argv], stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL, env=env or self.env, cwd=cwd)
            try:
                proc.wait()
            except BaseException:
                proc.terminate()  # the spawner forwards it to the tool and reaps it
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
            if proc.returncode != 0 and not report.exists():
                err.seek(0)
                raise RuntimeError(f"spawner failed for {argv[0]}: {err.read().decode(errors='replace')[-2000:]}")
            usage = json.loads(report.read_text())
            out.seek(0)
            err.seek(0)
            return Timed(usage["seconds"], usage["maxrss_kib"], usage["returncode"],
                         out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        finally:
            out.close()
            err.close()
            report.unlink(missing_ok=True)

    def check(self, result: Timed, what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    # -- tools ----------------------------------------------------------------------------

    @property
    def base(self) -> str:
        assert self.registry is not None
        return self.registry.url

    @property
    def host(self) -> str:
        assert self.registry is not None
        return self.registry.host

    def curl(self, *args: str) -> list[str]:
        return ["curl", "--noproxy", "*", "-sS", *args]

    def curl_push(self, repo: str) -> tuple[float, int, dict[str, Any]]:
        headers = self.workdir / "post-headers.txt"
        post = self.timed(self.curl("-X", "POST", "-o", "/dev/null", "-D", str(headers), "-w", "%{http_code}",
                                    f"{self.base}/v2/{repo}/blobs/uploads/"))
        self.check(post, "curl POST")
        text = headers.read_text(errors="replace")
        headers.unlink()
        location = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                         if line.lower().startswith("location:")), "")
        if post.stdout.strip() != "202" or not location:
            raise RuntimeError(f"curl POST answered {post.stdout.strip()} without a Location:\n{text}")
        if location.startswith("/"):
            location = self.base + location
        if not location.startswith(self.base + "/"):
            raise RuntimeError(f"upload Location {location!r} is not on 127.0.0.1; refusing to follow it")
        url = location + ("&" if "?" in location else "?") + "digest=" + self.digest
        put = self.timed(self.curl("-T", str(self.file), "-H", "Content-Type: application/octet-stream",
                                   "-o", "/dev/null", "-w", "%{http_code}", url))
        self.check(put, "curl PUT")
        if put.stdout.strip() != "201":
            raise RuntimeError(f"curl PUT answered {put.stdout.strip()}, not 201")
        return post.seconds + put.seconds, max(post.max_rss_kib, put.max_rss_kib), {"putStatus": 201}

    def curl_pull(self, repo: str, dest: Path) -> tuple[float, int, dict[str, Any], Path]:
        dest.mkdir(parents=True)
        target = dest / FILE_NAME
        got = self.timed(self.curl("-o", str(target), "-w", "%{http_code}", f"{self.base}/v2/{repo}/blobs/{self.digest}"))
        self.check(got, "curl GET")
        if got.stdout.strip() != "200":
            raise RuntimeError(f"curl GET answered {got.stdout.strip()}, not 200")
        return got.seconds, got.max_rss_kib, {"status": 200}, target

    def oras_push(self, repo: str) -> tuple[float, int, dict[str, Any]]:
        got = self.timed([sys.executable, str(HERE / "oras_tool.py"), "push", self.host, f"{repo}:bench", str(self.file)])
        self.check(got, "oras-py push")
        detail = json.loads(got.stdout.strip().splitlines()[-1])
        if not detail["uploadStatuses"] or detail["uploadStatuses"][0] != 201:
            raise RuntimeError(f"oras-py did not upload the blob (statuses {detail['uploadStatuses']})")
        return got.seconds, got.max_rss_kib, detail

    def oras_pull(self, repo: str, dest: Path) -> tuple[float, int, dict[str, Any], Path]:
        dest.mkdir(parents=True)
        got = self.timed([sys.executable, str(HERE / "oras_tool.py"), "pull", self.host, f"{repo}:bench", str(dest)])
        self.check(got, "oras-py pull")
        detail = json.loads(got.stdout.strip().splitlines()[-1])
        return got.seconds, got.max_rss_kib, detail, dest / FILE_NAME

    def cold_cache_env(self) -> dict[str, str]:
        """ocimodel with an empty cache: no remembered digest (push hashes), no cached blob (pull downloads)."""
        cache = self.workdir / f"ocimodel-cache-{uuid.uuid4().hex[:8]}"
        return {**self.env, "OCIMODEL_CACHE_DIR": str(cache)}

    def ocimodel_push(self, repo: str) -> tuple[float, int, dict[str, Any]]:
        got = self.timed([*OCIMODEL, "push", str(self.file), f"{self.host}/{repo}:bench",
                          "--no-git", "--json"], env=self.cold_cache_env())
        self.check(got, "ocimodel push")
        result = json.loads(got.stdout)
        if result.get("uploadedBlobs") != 1:
            raise RuntimeError(f"ocimodel push uploaded {result.get('uploadedBlobs')} blobs, expected 1: {result}")
        if result["files"][0]["digest"] != self.digest:
            raise RuntimeError(f"ocimodel computed {result['files'][0]['digest']}, expected {self.digest}")
        return got.seconds, got.max_rss_kib, {"uploadedBlobs": result["uploadedBlobs"], "manifest": result["digest"]}

    def ocimodel_pull(self, repo: str, dest: Path) -> tuple[float, int, dict[str, Any], Path]:
        # DEST does not exist yet: ocimodel creates it (and its staging dir inside it).
        got = self.timed([*OCIMODEL, "pull", f"{self.host}/{repo}:bench", str(dest), "--json"],
                         env=self.cold_cache_env())
        self.check(got, "ocimodel pull")
        result = json.loads(got.stdout)
        return got.seconds, got.max_rss_kib, {"manifest": result["digest"]}, dest / FILE_NAME

    # -- the rounds -----------------------------------------------------------------------

    def wipe_storage(self) -> None:
        """Forget every blob and repository so the next push really writes the blob."""
        assert self.registry is not None
        shutil.rmtree(self.registry.storage_dir / "docker", ignore_errors=True)

    def sha256_of(self, path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1024 * 1024):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    def run_tool(self, tool: str, round_no: int) -> None:
        repo = f"bench/{tool.replace('-', '')}-{round_no}-{uuid.uuid4().hex[:8]}"
        push = {"curl": self.curl_push, "oras-py": self.oras_push, "ocimodel": self.ocimodel_push}[tool]
        pull = {"curl": self.curl_pull, "oras-py": self.oras_pull, "ocimodel": self.ocimodel_pull}[tool]
        seconds, rss, detail = push(repo)
        self.runs.append(Run(tool, "push", round_no, seconds, rss, None, detail))
        self.log(f"  round {round_no} {tool:9s} push {seconds:7.2f} s  {self.size / seconds / 1e6:7.1f} MB/s  "
                 f"{rss / 1024:7.1f} MiB")
        dest = self.workdir / "pulled" / f"{tool}-{round_no}"
        try:
            seconds, rss, detail, target = pull(repo, dest)
            verified = target.is_file() and target.stat().st_size == self.size and self.sha256_of(target) == self.digest
            self.runs.append(Run(tool, "pull", round_no, seconds, rss, verified, detail))
            self.log(f"  round {round_no} {tool:9s} pull {seconds:7.2f} s  {self.size / seconds / 1e6:7.1f} MB/s  "
                     f"{rss / 1024:7.1f} MiB  bytes {'OK' if verified else 'DIFFER'}")
            if not verified:
                raise RuntimeError(f"{tool} pull wrote bytes that differ from the original ({target})")
        finally:
            shutil.rmtree(dest, ignore_errors=True)
            for cache in self.workdir.glob("ocimodel-cache-*"):
                shutil.rmtree(cache, ignore_errors=True)
            self.wipe_storage()

    def run(self, rotate: bool = True) -> None:
        """The transfer scenario."""
        self.log(f"== transfer: {human_size(self.size)}, {self.rounds} round(s); ocimodel gets an EMPTY "
                 "OCIMODEL_CACHE_DIR per command (cold: hashes and downloads every byte, like curl)")
        self.prepare_transfer_file()
        for round_no in range(1, self.rounds + 1):
            shift = (round_no - 1) % len(TOOLS) if rotate else 0
            order = TOOLS[shift:] + TOOLS[:shift]
            self.log(f"round {round_no}/{self.rounds}: order {', '.join(order)}")
            for tool in order:
                self.run_tool(tool, round_no)
        self.file.unlink(missing_ok=True)
        self.results["transfer"] = summarize(self.runs, self.size)

    # -- helpers for the model scenarios --------------------------------------------------

    def ocimodel_json(self, args: list[str], cache: Path, what: str) -> tuple[Timed, dict[str, Any]]:
        """``python -m ocimodel ARGS --json`` with ``OCIMODEL_CACHE_DIR=cache``, timed; its JSON."""
        got = self.timed([*OCIMODEL, *args, "--json"], env={**self.env, "OCIMODEL_CACHE_DIR": str(cache)})
        self.check(got, what)
        return got, json.loads(got.stdout)

    def log_mark(self) -> int:
        assert self.registry is not None
        return self.registry.log_path.stat().st_size

    def served_since(self, mark: int, file_digests: set[str]) -> dict[str, int]:
        """Response-body bytes the registry sent since ``mark``, from its own log.

        distribution logs ``http.response.written`` for every request when the response is
        complete; the client has all bytes before that, so wait until the log stops growing.
        """
        assert self.registry is not None
        size, deadline = -1, time.monotonic() + 5.0
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.log_mark()
            if now == size:
                break
            size = now
        with open(self.registry.log_path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        served = {"fileBlobBytes": 0, "fileBlobGets": 0, "otherBlobBytes": 0, "manifestBytes": 0,
                  "otherBytes": 0, "requests": 0}
        for line in text.splitlines():
            if 'msg="response completed' not in line:
                continue
            written = re.search(r"http\.response\.written=(\d+)", line)
            method = re.search(r"http\.request\.method=(\S+)", line)
            uri = re.search(r'http\.request\.uri=("(?:[^"\\]|\\.)*"|\S+)', line)
            if not (written and method and uri):
                continue
            n, path = int(written.group(1)), uri.group(1).strip('"')
            served["requests"] += 1
            blob = re.search(r"/blobs/(sha256:[0-9a-f]{64})", path)
            if method.group(1) == "GET" and blob and blob.group(1) in file_digests:
                served["fileBlobBytes"] += n
                served["fileBlobGets"] += 1
            elif blob:
                served["otherBlobBytes"] += n
            elif "/manifests/" in path:
                served["manifestBytes"] += n
            else:
                served["otherBytes"] += n
        served["totalBytes"] = served["fileBlobBytes"] + served["otherBlobBytes"] + served["manifestBytes"] \
            + served["otherBytes"]
        return served

    def write_shards(self, directory: Path, total: int, sparse: bool) -> list[tuple[Path, str]]:
        """SHARDS files of ``total // SHARDS`` bytes; their sha256 (empty for sparse ones: not needed)."""
        directory.mkdir(parents=True)
        per = total // SHARDS
        return [(path, self.write_shard(path, per, sparse))
                for path in (directory / f"model-{i:05d}-of-{SHARDS:05d}.bin" for i in range(1, SHARDS + 1))]

    def write_shard(self, path: Path, size: int, sparse: bool) -> str:
        h = hashlib.sha256()
        with open(path, "wb") as f:
            if sparse:  # random head and tail around a hole: cheap to create, unique digest
                edge = min(4 * MIB, size // 2)
                f.write(os.urandom(edge))
                f.seek(size - edge)
                f.write(os.urandom(edge))
                return ""
            left = size
            while left:
                chunk = os.urandom(min(WRITE_CHUNK, left))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        return "sha256:" + h.hexdigest()

    def settle(self, directory: Path) -> None:
        """Wait until every file is older than ocimodel's racy-clean window (2 s).

        A file modified within 2 s of being hashed is deliberately not remembered by the
        digest cache (a same-tick write could go unnoticed); a real model is older than that.
        """
        newest = max(f.stat().st_mtime for f in directory.iterdir())
        wait = newest + 2.5 - time.time()
        if wait > 0:
            time.sleep(wait)

    def verify_pulled(self, dest: Path, expected: dict[str, str]) -> bool:
        return all(self.sha256_of(dest / name) == digest for name, digest in expected.items())

    # -- repush ---------------------------------------------------------------------------

    def run_repush(self, total: int, rounds: int) -> None:
        self.log(f"== repush: {SHARDS} files, {human_size(total)} in all, sparse")
        free = shutil.disk_usage(self.workdir).free
        note = ""
        if free < 3 * total:
            scaled = max(SHARDS * MIB, (free // 3) // (SHARDS * MIB) * SHARDS * MIB)
            note = (f"only {free / 1024**3:.1f} GiB free (< 3x {human_size(total)}): "
                    f"scaled down to {human_size(scaled)}")
            self.log(f"NOTE: {note}")
            total = scaled
        per = total // SHARDS
        total = per * SHARDS
        src, cache = self.workdir / "repush-model", self.workdir / "repush-cache"
        repo = f"bench/repush-{uuid.uuid4().hex[:8]}"
        try:
            started = time.monotonic()
            self.write_shards(src, total, sparse=True)
            self.log(f"  created {SHARDS} x {human_size(per)} in {time.monotonic() - started:.2f} s")
            self.settle(src)
            first, pushed = self.ocimodel_json(["push", str(src), f"{self.host}/{repo}:v1", "--no-git"], cache,
                                               "repush: first push")
            if pushed["uploadedBlobs"] != SHARDS:
                raise RuntimeError(f"first push uploaded {pushed['uploadedBlobs']} blobs, expected {SHARDS}")
            self.log(f"  first push (cold cache, fills the registry) {first.seconds:7.2f} s "
                     f"{total / first.seconds / 1e6:7.1f} MB/s {first.max_rss_kib / 1024:7.1f} MiB")
            digests = sorted(f["digest"] for f in pushed["files"])
            runs = []
            for n in range(1, rounds + 1):
                got, again = self.ocimodel_json(["push", str(src), f"{self.host}/{repo}:v{n + 1}", "--no-git"], cache,
                                                "repush: re-push")
                if sorted(f["digest"] for f in again["files"]) != digests:
                    raise RuntimeError("re-push reported other file digests than the first push")
                runs.append({"seconds": got.seconds, "max_rss_kib": got.max_rss_kib,
                             "uploadedBlobs": again["uploadedBlobs"], "skippedBlobs": again["skippedBlobs"]})
                self.log(f"  re-push {n} to :v{n + 1} {got.seconds:7.2f} s  {got.max_rss_kib / 1024:7.1f} MiB  "
                         f"uploadedBlobs={again['uploadedBlobs']} skippedBlobs={again['skippedBlobs']}")
        finally:
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            self.wipe_storage()
        self.results["repush"] = {
            "total_bytes": total, "files": SHARDS, "note": note,
            "first_push_s": first.seconds, "first_push_rss_mib": first.max_rss_kib / 1024,
            "runs": runs, "median_s": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mib": max(r["max_rss_kib"] for r in runs) / 1024,
            "uploaded_blobs": max(r["uploadedBlobs"] for r in runs),
        }

    # -- delta ----------------------------------------------------------------------------

    def run_delta(self, total: int) -> None:
        per = total // SHARDS
        total = per * SHARDS
        self.log(f"== delta: {SHARDS} x {human_size(per)} random files; v2 changes 1 file")
        src = self.workdir / "delta-model"
        producer, consumer = self.workdir / "delta-producer-cache", self.workdir / "delta-consumer-cache"
        repo = f"bench/delta-{uuid.uuid4().hex[:8]}"
        ref = f"{self.host}/{repo}"
        out: dict[str, Any] = {"total_bytes": total, "files": SHARDS, "changed_file_bytes": per}
        dests = [self.workdir / f"delta-pull-{n}" for n in range(1, 4)]
        try:
            shards = self.write_shards(src, total, sparse=False)
            v1 = {path.name: digest for path, digest in shards}
            self.settle(src)
            got, pushed = self.ocimodel_json(["push", str(src), f"{ref}:v1", "--no-git"], producer, "delta: push v1")
            if pushed["uploadedBlobs"] != SHARDS:
                raise RuntimeError(f"push v1 uploaded {pushed['uploadedBlobs']} blobs, expected {SHARDS}")
            out["push_v1"] = {"seconds": got.seconds, "max_rss_kib": got.max_rss_kib}
            self.log(f"  push v1 (cold)             {got.seconds:7.2f} s  {got.max_rss_kib / 1024:7.1f} MiB")

            def pull(tag: str, dest: Path, expected: dict[str, str], label: str) -> dict[str, Any]:
                mark = self.log_mark()
                got, _ = self.ocimodel_json(["pull", f"{ref}:{tag}", str(dest)], consumer, f"delta: {label}")
                served = self.served_since(mark, set(expected.values()))
                ok = self.verify_pulled(dest, expected)
                if not ok:
                    raise RuntimeError(f"delta: {label} wrote bytes that differ from the source")
                self.log(f"  {label:26s} {got.seconds:7.2f} s  {got.max_rss_kib / 1024:7.1f} MiB  "
                         f"file blob bytes {served['fileBlobBytes']:,} ({served['fileBlobBytes'] / total:.3f} "
                         f"of the model), all bytes {served['totalBytes']:,}, bytes OK")
                return {"seconds": got.seconds, "max_rss_kib": got.max_rss_kib, "verified": ok, **served}

            out["pull_v1"] = pull("v1", dests[0], v1, "pull v1 (cold cache)")
            changed = shards[SHARDS // 2][0]
            v2 = dict(v1)
            v2[changed.name] = self.write_shard(changed, per, sparse=False)
            got, pushed = self.ocimodel_json(["push", str(src), f"{ref}:v2", "--no-git"], producer, "delta: push v2")
            out["push_v2"] = {"seconds": got.seconds, "max_rss_kib": got.max_rss_kib,
                              "uploadedBlobs": pushed["uploadedBlobs"], "skippedBlobs": pushed["skippedBlobs"]}
            self.log(f"  push v2 (1 file changed)   {got.seconds:7.2f} s  {got.max_rss_kib / 1024:7.1f} MiB  "
                     f"uploadedBlobs={pushed['uploadedBlobs']} skippedBlobs={pushed['skippedBlobs']}")
            if pushed["uploadedBlobs"] != 1:
                raise RuntimeError(f"push v2 uploaded {pushed['uploadedBlobs']} blobs, expected 1")
            out["pull_v2"] = pull("v2", dests[1], v2, "pull v2 (fresh dir, cache)")
            out["repull_v2"] = pull("v2", dests[2], v2, "re-pull v2 (fresh dir)")
        finally:
            for d in (src, producer, consumer, *dests):
                shutil.rmtree(d, ignore_errors=True)
            self.wipe_storage()
        self.results["delta"] = out

    # -- startup --------------------------------------------------------------------------

    def run_startup(self, runs: int) -> None:
        script = Path(sys.executable).parent / "ocimodel"
        how = f"console script {script} (next to sys.executable)"
        if not script.is_file():
            found = shutil.which("ocimodel")
            if not found:
                raise RuntimeError("no ocimodel console script found: pip install -e .")
            script, how = Path(found), f"console script {found} (from PATH)"
        self.log(f"== startup: {runs} runs each after 1 untimed warm-up; {how}")
        commands = {
            "ocimodel --help": [str(script), "--help"],
            "ocimodel --version": [str(script), "--version"],
            "python -m ocimodel --version": [*OCIMODEL, "--version"],
        }
        out: dict[str, Any] = {"how": how, "runs": runs, "commands": {}}
        for name, argv in commands.items():
            self.check(self.timed(argv), name)  # warm-up: fills the bytecode prefix and the page cache
            times, rss = [], []
            for _ in range(runs):
                got = self.timed(argv)
                self.check(got, name)
                times.append(got.seconds)
                rss.append(got.max_rss_kib)
            out["commands"][name] = {"median_s": statistics.median(times), "all_s": times,
                                     "peak_rss_mib": max(rss) / 1024}
            self.log(f"  {name:30s} median {statistics.median(times):6.3f} s  (min {min(times):.3f}, "
                     f"max {max(times):.3f})  {max(rss) / 1024:6.1f} MiB")
        self.results["startup"] = out


# -- reporting ------------------------------------------------------------------------------


def summarize(runs: list[Run], size: int) -> list[dict[str, Any]]:
    rows = []
    medians: dict[tuple[str, str], float] = {}
    for tool in TOOLS:
        for op in OPS:
            mine = [r for r in runs if r.tool == tool and r.op == op]
            if mine:
                medians[(tool, op)] = statistics.median(r.seconds for r in mine)
    for tool in TOOLS:
        for op in OPS:
            mine = [r for r in runs if r.tool == tool and r.op == op]
            if not mine:
                continue
            med = medians[(tool, op)]
            curl = medians.get(("curl", op))
            rows.append({
                "tool": tool,
                "op": op,
                "median_s": med,
                "all_s": [r.seconds for r in mine],
                "mb_per_s": size / med / 1e6,
                "ratio_to_curl": med / curl if curl else None,
                "peak_rss_mib": max(r.max_rss_kib for r in mine) / 1024,
                "verified": all(r.verified for r in mine) if op == "pull" else None,
            })
    return rows


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    by = {(r["tool"], r["op"]): r for r in rows}
    out = []
    push, pull = by.get(("ocimodel", "push")), by.get(("ocimodel", "pull"))
    if push and push["ratio_to_curl"] is not None:
        out.append((f"ocimodel push <= {TARGET_PUSH_RATIO:.2f}x curl", f"{push['ratio_to_curl']:.2f}x",
                    push["ratio_to_curl"] <= TARGET_PUSH_RATIO))
    if pull and pull["ratio_to_curl"] is not None:
        out.append((f"ocimodel pull (verify+write) <= {TARGET_PULL_RATIO:.2f}x curl", f"{pull['ratio_to_curl']:.2f}x",
                    pull["ratio_to_curl"] <= TARGET_PULL_RATIO))
    for row in (push, pull):
        if row:
            out.append((f"ocimodel {row['op']} peak RSS <= {TARGET_RSS_MIB:.0f} MiB", f"{row['peak_rss_mib']:.1f} MiB",
                        row["peak_rss_mib"] <= TARGET_RSS_MIB))
    return out


def render(rows: list[dict[str, Any]], size: int, rounds: int) -> str:
    lines = [f"Blob transfer, {human_size(size)} random file, {rounds} round(s), one local registry "
             f"(docker-registry, plain http, 127.0.0.1), {os.cpu_count()} CPUs; medians, order rotated per round", ""]
    header = f"{'tool':9s} {'op':4s} {'median s':>9s} {'MB/s':>7s} {'x curl':>7s} {'peak RSS MiB':>13s}  {'runs (s)':s}"
    lines += [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r['ratio_to_curl']:.2f}" if r["ratio_to_curl"] is not None else "-"
        runs = " ".join(f"{s:.2f}" for s in r["all_s"])
        lines.append(f"{r['tool']:9s} {r['op']:4s} {r['median_s']:9.2f} {r['mb_per_s']:7.1f} {ratio:>7s} "
                     f"{r['peak_rss_mib']:13.1f}  {runs}")
    lines.append("")
    lines.append("Targets:")
    for name, value, ok in targets(rows):
        lines.append(f"  {'PASS' if ok else 'MISS'}  {name}: {value}")
    lines.append("")
    lines.append("Notes: curl push = POST + PUT (sha256 computed beforehand, untimed); ocimodel push includes hashing")
    lines.append("the file and process start-up, with an empty OCIMODEL_CACHE_DIR per command (cold: every byte is")
    lines.append("hashed and downloaded). Pulled bytes of every tool were compared with the original's sha256")
    lines.append("after timing. ocimodel pull verifies size and digest while streaming; oras-py pull does NOT")
    lines.append("verify digests (it writes whatever the registry sends); curl -o verifies nothing either.")
    return "\n".join(lines)


# -- the other scenarios' reports ---------------------------------------------------------


def model_targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out = []
    repush = results.get("repush")
    if repush:
        out.append((f"re-push of an unchanged {human_size(repush['total_bytes'])} model <= {TARGET_REPUSH_S:.1f} s "
                    "(median)", f"{repush['median_s']:.2f} s", repush["median_s"] <= TARGET_REPUSH_S))
        out.append(("re-push uploads no blob", f"uploadedBlobs={repush['uploaded_blobs']}", repush["uploaded_blobs"] == 0))
    delta = results.get("delta")
    if delta:
        got, per, total = delta["pull_v2"]["fileBlobBytes"], delta["changed_file_bytes"], delta["total_bytes"]
        out.append((f"pull v2 downloads only the changed file (1/{SHARDS} of the model)",
                    f"{got / total:.3f} of the model ({got:,} B)", got <= per * TARGET_DELTA_SLACK))
        again = delta["repull_v2"]["fileBlobBytes"]
        out.append(("re-pull v2 into a fresh dir downloads no file blob", f"{again:,} B", again == 0))
    startup = results.get("startup")
    if startup:
        for name in ("ocimodel --help", "ocimodel --version"):
            med = startup["commands"][name]["median_s"]
            out.append((f"{name} <= {TARGET_STARTUP_S:.1f} s (median)", f"{med:.3f} s", med <= TARGET_STARTUP_S))
    return out


def render_models(results: dict[str, Any]) -> str:
    lines = []
    repush = results.get("repush")
    if repush:
        runs = " ".join(f"{r['seconds']:.2f}" for r in repush["runs"])
        lines += [f"Re-push of an unchanged model: {repush['files']} files, {human_size(repush['total_bytes'])}, "
                  "same OCIMODEL_CACHE_DIR, new tag each time",
                  f"  first push (cold, fills the registry) {repush['first_push_s']:.2f} s, "
                  f"{repush['first_push_rss_mib']:.1f} MiB",
                  f"  re-push median {repush['median_s']:.2f} s (runs {runs}), peak RSS {repush['peak_rss_mib']:.1f} MiB, "
                  f"uploadedBlobs {repush['uploaded_blobs']}"]
        if repush["note"]:
            lines.append(f"  NOTE: {repush['note']}")
        lines.append("")
    delta = results.get("delta")
    if delta:
        total = delta["total_bytes"]
        lines.append(f"Delta: {delta['files']} x {human_size(delta['changed_file_bytes'])}, v2 changes 1 file; bytes "
                     "from the registry's log (response bodies)")
        lines.append(f"  {'step':28s} {'s':>7s} {'RSS MiB':>8s} {'file blob bytes':>16s} {'of model':>9s} {'all bytes':>14s}")
        for key, label in (("push_v1", "push v1 (cold)"), ("pull_v1", "pull v1 (cold cache)"),
                           ("push_v2", "push v2 (1 file changed)"), ("pull_v2", "pull v2 (fresh dir, cache)"),
                           ("repull_v2", "re-pull v2 (fresh dir)")):
            step = delta[key]
            if "fileBlobBytes" in step:
                lines.append(f"  {label:28s} {step['seconds']:7.2f} {step['max_rss_kib'] / 1024:8.1f} "
                             f"{step['fileBlobBytes']:16,d} {step['fileBlobBytes'] / total:9.3f} {step['totalBytes']:14,d}")
            else:
                extra = f"  uploadedBlobs {step['uploadedBlobs']}" if "uploadedBlobs" in step else ""
                lines.append(f"  {label:28s} {step['seconds']:7.2f} {step['max_rss_kib'] / 1024:8.1f}{extra}")
        lines.append("")
    startup = results.get("startup")
    if startup:
        lines.append(f"Start-up: median of {startup['runs']} runs after a warm-up; {startup['how']}")
        for name, row in startup["commands"].items():
            lines.append(f"  {name:30s} {row['median_s']:6.3f} s  (min {min(row['all_s']):.3f}, max "
                         f"{max(row['all_s']):.3f})  {row['peak_rss_mib']:6.1f} MiB")
        lines.append("")
    targets_ = model_targets(results)
    if targets_:
        lines.append("Targets:")
        lines += [f"  {'PASS' if ok else 'MISS'}  {name}: {value}" for name, value, ok in targets_]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def parse_scenarios(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}: choose from {','.join(SCENARIOS)}")
    return list(dict.fromkeys(chosen))


def clean_up_on_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` at exit; SIGTERM and SIGHUP become KeyboardInterrupt so it runs then too."""
    atexit.register(cleanup)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=parse_scenarios, default=list(SCENARIOS),
                        help=f"comma-separated, run in this order (default {','.join(SCENARIOS)})")
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="transfer: file size (default 1GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="transfer: rounds (default 3)")
    parser.add_argument("--repush-size", type=parse_size, default=parse_size("10GiB"),
                        help=f"repush: total of the {SHARDS} sparse files (default 10GiB)")
    parser.add_argument("--repush-rounds", type=int, default=3, help="repush: timed re-pushes (default 3)")
    parser.add_argument("--delta-size", type=parse_size, default=parse_size("1GiB"),
                        help=f"delta: total of the {SHARDS} random files (default 1GiB)")
    parser.add_argument("--startup-runs", type=int, default=STARTUP_RUNS, help="startup: runs per command (default 10)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON on stdout")
    parser.add_argument("--keep-order", action="store_true", help="transfer: do not rotate the tool order between rounds")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir (default: system temp)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.repush_rounds, args.startup_runs) < 1:
        parser.error("--rounds, --repush-rounds and --startup-runs must be >= 1")
    for name in ("repush_size", "delta_size"):
        if getattr(args, name) < SHARDS * MIB:
            parser.error(f"--{name.replace('_', '-')} must be at least {SHARDS} MiB")
    for needed in ("curl", REGISTRY_BINARY) if "transfer" in args.scenario else (REGISTRY_BINARY,):
        if not shutil.which(needed):
            parser.error(f"{needed} not found (docker-registry: apt-get install docker-registry)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="ocimodel-bench-", dir=args.workdir))
    bench = Bench(args.size, args.rounds, workdir, log)

    def cleanup() -> None:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    clean_up_on_exit(cleanup)
    started = time.monotonic()
    try:
        bench.start()
        bench.warm_up()
        for scenario in args.scenario:
            if scenario == "transfer":
                bench.run(rotate=not args.keep_order)
            elif scenario == "repush":
                bench.run_repush(args.repush_size, args.repush_rounds)
            elif scenario == "delta":
                bench.run_delta(args.delta_size)
            elif scenario == "startup":
                bench.run_startup(args.startup_runs)
    except KeyboardInterrupt:
        log("interrupted; stopping the registry and removing the temp dir")
        return 130
    finally:
        cleanup()
    rows = bench.results.get("transfer", [])
    every_target = ([("transfer", *t) for t in targets(rows)] if rows else []) + \
        [("models", *t) for t in model_targets(bench.results)]
    if args.json:
        print(json.dumps({
            "scenarios": args.scenario,
            "date": time.strftime("%Y-%m-%d"),
            "cpus": os.cpu_count(),
            "registry": "docker-registry (distribution 2.8.2), plain http, 127.0.0.1",
            "size": args.size,
            "rounds": args.rounds,
            "digest": bench.digest,
            "elapsed_s": time.monotonic() - started,
            "runs": [asdict(r) for r in bench.runs],
            "summary": rows,
            "repush": bench.results.get("repush"),
            "delta": bench.results.get("delta"),
            "startup": bench.results.get("startup"),
            "targets": [{"scenario": sc, "target": n, "value": v, "pass": ok} for sc, n, v, ok in every_target],
        }, indent=2))
    else:
        parts = []
        if rows:
            parts.append(render(rows, args.size, args.rounds))
        models = render_models(bench.results)
        if models:
            parts.append(models)
        print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
