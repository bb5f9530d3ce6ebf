"""Blob transfer benchmark: ocimodel vs curl vs oras-py against one local registry.

    python benchmarks/transfer.py [--size 1GiB] [--rounds 3] [--json] [--keep-order]

Starts ONE distribution registry (the Debian ``docker-registry`` binary, plain http on
127.0.0.1, storage in a temp dir that is deleted afterwards), writes a random file of
``--size`` bytes, then for each round runs, in a rotated order per round:

- curl:     POST an upload session, ``curl -T FILE`` PUT ``?digest=`` (sha256 computed
            beforehand, not timed; must answer 201); pull is ``curl -o`` of the blob URL.
- oras-py:  ``OrasClient.push`` / ``.pull`` in their own process (benchmarks/oras_tool.py).
- ocimodel: ``python -m ocimodel push FILE REF --no-git --json`` (``uploadedBlobs`` must be 1)
            and ``python -m ocimodel pull REF DEST --json``.

Each tool pushes to a fresh repository, and the registry's storage is wiped after each tool's
push+pull so every push writes the blob anew. Each pull writes into a fresh directory that
is removed afterwards; every pulled file is checked against the original's sha256 (not timed).
Wall time and the tool process's peak RSS (``os.wait4``'s ``ru_maxrss``, taken in a tiny spawner:
see ``Bench.timed``) are recorded per command; the table shows medians. Only 127.0.0.1 is contacted.
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

TOOLS = ("curl", "oras-py", "ocimodel")
OPS = ("push", "pull")
TARGET_PUSH_RATIO = 1.05
TARGET_PULL_RATIO = 1.25
TARGET_RSS_MIB = 150.0
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
            PYTHONDONTWRITEBYTECODE="1",
            XDG_CACHE_HOME=str(self.workdir / "xdg-cache"),  # nothing leaks into ~/.cache
        )
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def start(self) -> None:
        self.docker_config.mkdir(parents=True)
        self.registry = RegistryServer(self.workdir / "registry").start()
        self.log(f"registry: {self.registry.url} (storage {self.registry.storage_dir})")
        self.file.parent.mkdir(parents=True)
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
        got = self.timed([sys.executable, "-m", "ocimodel", "push", str(self.file), f"{self.host}/{repo}:bench",
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
        got = self.timed([sys.executable, "-m", "ocimodel", "pull", f"{self.host}/{repo}:bench", str(dest), "--json"],
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
        for round_no in range(1, self.rounds + 1):
            shift = (round_no - 1) % len(TOOLS) if rotate else 0
            order = TOOLS[shift:] + TOOLS[:shift]
            self.log(f"round {round_no}/{self.rounds}: order {', '.join(order)}")
            for tool in order:
                self.run_tool(tool, round_no)


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


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="file size (default 1GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON on stdout")
    parser.add_argument("--keep-order", action="store_true", help="do not rotate the tool order between rounds")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir (default: system temp)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    for needed in ("curl", REGISTRY_BINARY):
        if not shutil.which(needed):
            parser.error(f"{needed} not found (docker-registry: apt-get install docker-registry)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="ocimodel-bench-", dir=args.workdir))
    bench = Bench(args.size, args.rounds, workdir, log)

    def cleanup() -> None:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(cleanup)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    started = time.monotonic()
    try:
        bench.start()
        bench.run(rotate=not args.keep_order)
    except KeyboardInterrupt:
        log("interrupted; stopping the registry and removing the temp dir")
        return 130
    finally:
        cleanup()
    rows = summarize(bench.runs, args.size)
    if args.json:
        print(json.dumps({
            "size": args.size,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "digest": bench.digest,
            "elapsed_s": time.monotonic() - started,
            "runs": [asdict(r) for r in bench.runs],
            "summary": rows,
            "targets": [{"target": n, "value": v, "pass": ok} for n, v, ok in targets(rows)],
        }, indent=2))
    else:
        print(render(rows, args.size, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
