"""Push and pull at real-network latency: ocimodel vs oras-py vs a sequential floor, through a
delaying proxy in front of one local registry.

    python benchmarks/latency.py                      # RTT 0,20,80 ms x 3 models, 3 rounds (~30 min; --rounds 1 ~10 min)
    python benchmarks/latency.py --quick              # small models, 1 round (~3 min)
    python benchmarks/latency.py --rtt 80 --models st13 --rounds 5 --json

One ``docker-registry`` (plain http, 127.0.0.1, temp storage) behind ``delayproxy.DelayProxy``:
each direction delayed by RTT/2, the TCP handshake's round trip on each new connection, one
``--bandwidth`` (default 100 MB/s) token bucket per direction shared by all connections.

Models (synthetic random files; ``--quick`` shrinks the large ones):

- st13: 13 files of the sizes of sentence-transformers/all-MiniLM-L6-v2 (88 MiB; its
  ``1_Pooling/config.json`` is flattened to ``1_Pooling_config.json``: oras-py takes flat names);
- shards40: 40 files, 8 x 64 MiB shards + 32 small files (1-200 KiB);
- single1g: 1 file of 1 GiB.

Tools, in an order rotated each round, each pushing to a fresh repository (storage wiped after
each tool's push + pull, so every push uploads every blob):

- ocimodel: ``python -m ocimodel push DIR REF --no-git --json`` and ``pull REF DEST --json``,
  each with an EMPTY ``OCIMODEL_CACHE_DIR`` (cold: it hashes and downloads every byte);
- oras-py 0.2.43 (benchmarks/oras_tool.py);
- sequential: benchmarks/floor_client.py, the minimal requests one after another on one
  kept-alive connection, digests precomputed (untimed), nothing verified.

Every pulled file is checked against its sha256 after timing. Per command: wall time, peak RSS
of the tool process (``ru_maxrss`` via transfer.py's spawner) and the proxy's counts of TCP
connections and HTTP requests. Tables show medians.

The physical floor printed next to each cell:

    push floor = bytes / bandwidth + 4 x RTT      pull floor = bytes / bandwidth + 3 x RTT

bytes = the model's file bytes (headers, config and manifest are negligible). The round trips
no client can avoid against this registry, with every blob in flight at once on kept-alive
connections: push = the TCP handshake, the POST that opens an upload (distribution needs a
POST then a PUT), the PUT carrying the bytes, the manifest PUT after the last blob; pull = the
handshake, the manifest GET, the blob GETs (the config is not needed before the blobs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from delayproxy import DelayProxy  # noqa: E402
from transfer import MIB, OCIMODEL, Bench, clean_up_on_exit  # noqa: E402

TOOLS = ("ocimodel", "oras-py", "sequential")
OPS = ("push", "pull")
PUSH_RTTS, PULL_RTTS = 4, 3
TARGET_FLOOR_RATIO = 1.2
TARGET_RSS_MIB = 150.0
KIB = 1024
# sentence-transformers/all-MiniLM-L6-v2: 13 files, the weights 90.9 MB, 88 MiB in all.
ST13 = {
    "pytorch_model.bin": 90_888_945, "tokenizer.json": 466_247, "vocab.txt": 231_508, "data_config.json": 39_265,
    "train_script.py": 13_156, "README.md": 10_610, "config.json": 612, "tokenizer_config.json": 350,
    "modules.json": 349, "1_Pooling_config.json": 190, "config_sentence_transformers.json": 116,
    "special_tokens_map.json": 112, "sentence_bert_config.json": 53,
}


def model_files(name: str, quick: bool) -> dict[str, int]:
    """File name -> size for one model shape; ``quick`` shrinks only the large files."""
    if name == "st13":
        return {**ST13, "pytorch_model.bin": 8 * MIB} if quick else dict(ST13)
    if name == "shards40":
        shard = 4 * MIB if quick else 64 * MIB
        files = {f"model-{i:05d}-of-00008.safetensors": shard for i in range(1, 9)}
        files.update({f"extra-{i:02d}.json": (1 + (i * 37) % 200) * KIB for i in range(32)})
        return files
    if name == "single1g":
        return {"model.bin": 64 * MIB if quick else 1024 * MIB}
    raise ValueError(name)


MODELS = ("st13", "shards40", "single1g")


@dataclass
class Run:
    model: str
    rtt_ms: float
    tool: str
    op: str
    round: int
    seconds: float
    max_rss_kib: int
    requests: int
    connections: int


def floor_seconds(nbytes: int, bandwidth: float | None, rtt: float, op: str) -> float:
    """The physical floor (see the module doc)."""
    return (nbytes / bandwidth if bandwidth else 0.0) + (PUSH_RTTS if op == "push" else PULL_RTTS) * rtt


class Latency:
    def __init__(self, bench: Bench, bandwidth: float | None, quick: bool) -> None:
        self.bench = bench
        self.bandwidth = bandwidth
        self.quick = quick
        self.proxy: DelayProxy | None = None
        self.runs: list[Run] = []

    def start(self) -> None:
        assert self.bench.registry is not None
        self.proxy = DelayProxy("127.0.0.1", self.bench.registry.port, bandwidth=self.bandwidth).start()
        self.bench.log(f"proxy: {self.proxy.host} -> {self.bench.registry.host}, "
                       f"bandwidth {self.bandwidth / 1e6 if self.bandwidth else 'unlimited'} MB/s per direction")

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def write_model(self, name: str) -> tuple[Path, dict[str, str], Path]:
        """The model's files (random bytes), their digests, and the floor client's plan."""
        directory = self.bench.workdir / "models" / name
        directory.mkdir(parents=True)
        digests: dict[str, str] = {}
        plan = []
        for file_name, size in model_files(name, self.quick).items():
            h = hashlib.sha256()
            with open(directory / file_name, "wb") as f:
                left = size
                while left:
                    chunk = os.urandom(min(8 * MIB, left))
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            digests[file_name] = "sha256:" + h.hexdigest()
            plan.append({"path": str(directory / file_name), "name": file_name, "digest": digests[file_name],
                         "size": size})
        plan_path = self.bench.workdir / f"plan-{name}.json"
        plan_path.write_text(json.dumps({"files": plan}))
        return directory, digests, plan_path

    def command(self, tool: str, op: str, model_dir: Path, plan: Path, ref: str, dest: Path) -> tuple[list[str], Path | None]:
        """argv and cwd of one tool's push or pull."""
        assert self.proxy is not None
        host = self.proxy.host
        if tool == "ocimodel":
            if op == "push":
                return [*OCIMODEL, "push", str(model_dir), f"{host}/{ref}", "--no-git", "--json"], None
            return [*OCIMODEL, "pull", f"{host}/{ref}", str(dest), "--json"], None
        if tool == "oras-py":
            if op == "push":
                names = sorted(p.name for p in model_dir.iterdir())
                return [sys.executable, str(HERE / "oras_tool.py"), "push", host, ref, *names], model_dir
            return [sys.executable, str(HERE / "oras_tool.py"), "pull", host, ref, str(dest)], None
        floor = [sys.executable, str(HERE / "floor_client.py"), op, self.proxy.url, ref]
        return [*floor, str(plan) if op == "push" else str(dest)], None

    def run_tool(self, model: str, rtt: float, tool: str, round_no: int, model_dir: Path, plan: Path,
                 digests: dict[str, str]) -> None:
        assert self.proxy is not None
        ref = f"bench/{tool.replace('-', '')}-{uuid.uuid4().hex[:8]}:v1"
        dest = self.bench.workdir / "pulled" / f"{tool}-{round_no}"
        try:
            for op in OPS:
                argv, cwd = self.command(tool, op, model_dir, plan, ref, dest)
                env = self.bench.cold_cache_env() if tool == "ocimodel" else self.bench.env
                self.proxy.reset()
                got = self.bench.timed(argv, cwd=cwd, env=env)
                self.bench.check(got, f"{tool} {op} ({model}, RTT {rtt * 1000:g} ms)")
                counts = self.proxy.counts()
                self.runs.append(Run(model, rtt * 1000, tool, op, round_no, got.seconds, got.max_rss_kib,
                                     counts.requests, counts.connections))
                self.bench.log(f"  {model:8s} RTT {rtt * 1000:3g} ms round {round_no} {tool:10s} {op} "
                               f"{got.seconds:7.2f} s  {got.max_rss_kib / 1024:6.1f} MiB  "
                               f"{counts.requests} requests / {counts.connections} connections")
            self.verify(dest, digests, tool)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
            for cache in self.bench.workdir.glob("ocimodel-cache-*"):
                shutil.rmtree(cache, ignore_errors=True)
            self.bench.wipe_storage()

    def verify(self, dest: Path, digests: dict[str, str], tool: str) -> None:
        for name, digest in digests.items():
            path = dest / name
            if not path.is_file() or self.bench.sha256_of(path) != digest:
                raise RuntimeError(f"{tool} pulled {path} with bytes that differ from the original")

    def run(self, models: list[str], rtts: list[float], rounds: int) -> None:
        assert self.proxy is not None
        for model in models:
            model_dir, digests, plan = self.write_model(model)
            self.bench.log(f"== {model}: {len(digests)} files, {self.model_bytes(model) / MIB:.1f} MiB")
            for rtt in rtts:
                self.proxy.one_way_delay = rtt / 2
                for round_no in range(1, rounds + 1):
                    shift = (round_no - 1) % len(TOOLS)
                    for tool in TOOLS[shift:] + TOOLS[:shift]:
                        self.run_tool(model, rtt, tool, round_no, model_dir, plan, digests)
            shutil.rmtree(model_dir)

    def model_bytes(self, model: str) -> int:
        return sum(model_files(model, self.quick).values())

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        keys = sorted({(r.model, r.rtt_ms, r.op) for r in self.runs},
                      key=lambda k: (MODELS.index(k[0]), k[1], OPS.index(k[2])))
        for model, rtt_ms, op in keys:
            row: dict[str, Any] = {"model": model, "rtt_ms": rtt_ms, "op": op,
                                   "floor_s": floor_seconds(self.model_bytes(model), self.bandwidth, rtt_ms / 1000, op)}
            for tool in TOOLS:
                mine = [r for r in self.runs if (r.model, r.rtt_ms, r.op, r.tool) == (model, rtt_ms, op, tool)]
                if mine:
                    row[tool] = {
                        "median_s": statistics.median(r.seconds for r in mine),
                        "all_s": [r.seconds for r in mine],
                        "peak_rss_mib": max(r.max_rss_kib for r in mine) / 1024,
                        "requests": statistics.median(r.requests for r in mine),
                        "connections": statistics.median(r.connections for r in mine),
                    }
            rows.append(row)
        return rows


def render(rows: list[dict[str, Any]], quick: bool, models: list[str], rounds: int, bandwidth: float | None) -> str:
    shapes = {}
    for m in models:
        files = model_files(m, quick)
        shapes[m] = f"{len(files)} file{'s' if len(files) > 1 else ''}, {sum(files.values()) / MIB:.0f} MiB"
    lines = [
        f"medians of {rounds} round(s); bandwidth {bandwidth / 1e6 if bandwidth else 'unlimited'} MB/s; "
        "× = time / physical floor; req/conn = HTTP requests / TCP connections; RSS = peak",
        "",
        "| model | RTT | op | floor | ocimodel | oras-py | sequential | ocimodel req/conn | oras-py req/conn "
        "| sequential req | RSS ocimodel / oras-py |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def cell(row: dict[str, Any], tool: str) -> str:
        got = row.get(tool)
        return f"{got['median_s']:.2f} s ({got['median_s'] / row['floor_s']:.2f}×)" if got else "-"

    def counts(row: dict[str, Any], tool: str) -> str:
        got = row.get(tool)
        return f"{got['requests']:g}/{got['connections']:g}" if got else "-"

    for row in rows:
        seq = row.get("sequential")
        rss = " / ".join(f"{row[t]['peak_rss_mib']:.0f}" if t in row else "-" for t in ("ocimodel", "oras-py"))
        lines.append(
            f"| {row['model']} ({shapes[row['model']]}) | {row['rtt_ms']:g} ms | {row['op']} | {row['floor_s']:.2f} s "
            f"| {cell(row, 'ocimodel')} | {cell(row, 'oras-py')} | {cell(row, 'sequential')} "
            f"| {counts(row, 'ocimodel')} | {counts(row, 'oras-py')} | {seq['requests'] if seq else '-':g} "
            f"| {rss} MiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small models (8 MiB weights, 8 x 4 MiB shards, 64 MiB file) and 1 round by default")
    parser.add_argument("--rtt", default="0,20,80", help="round-trip times in ms, comma-separated (default 0,20,80)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated of {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per cell (default 3; 1 with --quick)")
    parser.add_argument("--bandwidth", type=float, default=100.0, help="MB/s per direction, 0 = no cap (default 100)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON on stdout")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir (default: system temp)")
    args = parser.parse_args(argv)
    try:
        rtts = [float(x) / 1000 for x in args.rtt.split(",")]
    except ValueError:
        parser.error(f"--rtt: not a list of numbers: {args.rtt!r}")
    models = [m.strip() for m in args.models.split(",")]
    if any(m not in MODELS for m in models) or any(r < 0 for r in rtts):
        parser.error(f"--models must be among {', '.join(MODELS)}; --rtt must be >= 0")
    rounds = args.rounds or (1 if args.quick else 3)
    bandwidth = args.bandwidth * 1e6 if args.bandwidth > 0 else None

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="ocimodel-latency-", dir=args.workdir))
    bench = Bench(0, rounds, workdir, log)
    latency = Latency(bench, bandwidth, args.quick)

    def cleanup() -> None:
        latency.stop()
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    clean_up_on_exit(cleanup)
    started = time.monotonic()
    try:
        bench.start()
        bench.warm_up()
        latency.start()
        latency.run(models, rtts, rounds)
    except KeyboardInterrupt:
        log("interrupted; stopping the proxy and the registry, removing the temp dir")
        return 130
    finally:
        cleanup()
    rows = latency.summary()
    if args.json:
        print(json.dumps({"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "rounds": rounds,
                          "bandwidth": bandwidth, "rtt_ms": [r * 1000 for r in rtts], "cpus": os.cpu_count(),
                          "elapsed_s": time.monotonic() - started, "summary": rows,
                          "runs": [asdict(r) for r in latency.runs]}, indent=2))
    else:
        print(render(rows, args.quick, models, rounds, bandwidth))
        worst = max((row[t]["peak_rss_mib"] for row in rows for t in ("ocimodel",) if t in row), default=0.0)
        print(f"\nocimodel peak RSS {worst:.0f} MiB (target ≤ {TARGET_RSS_MIB:.0f}); "
              f"target ocimodel ≤ {TARGET_FLOOR_RATIO}× floor at RTT 20/80 ms; "
              f"elapsed {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
