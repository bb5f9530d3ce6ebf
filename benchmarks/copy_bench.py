"""Registry -> registry copy of a model: ``ocimodel copy`` against ``skopeo copy`` and a pull + push.

    python benchmarks/copy_bench.py [--size 1GiB] [--rounds 5] [--json] [--keep-order]

Starts TWO distribution registries (the Debian ``docker-registry`` binary, plain http on
127.0.0.1, storage in a temp dir deleted afterwards). Untimed set-up: a random file of
``--size`` pushed to the source registry as a model, signed with a key, promoted to ``prod``
with a signed record (so the model has referrers two levels deep: its signature, the
promotion record, the record's signature). Then per round, in an order rotated per round:

- skopeo:    ``skopeo copy docker://SRC docker://DST`` (keeps the digest, drops the referrers);
- ocimodel:  ``ocimodel copy SRC DST`` (the referrers included: checked in its --json);
- pull+push: ``ocimodel pull SRC DIR`` then ``ocimodel push DIR DST`` (through the disk; a new
             manifest, no referrers), each with an empty cache dir; the two times summed.

The destination registry's storage is wiped after every command, so each copy writes every
byte anew. Wall time and the tool's peak RSS (wait4's ``ru_maxrss`` through the spawner of
``transfer.py``); medians in the table.
"""

from __future__ import annotations

import sys

# This file's name is the stdlib's ``copy``: with its directory first on sys.path (as for any
# script) ``import dataclasses`` would import this file instead. Drop it before anything else.
_HERE = __file__.rsplit("/", 1)[0] or "."
sys.path[:] = [p for p in sys.path if p not in ("", _HERE) and not _HERE.endswith(p.rstrip("/") or "/")]

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load_transfer() -> Any:
    """benchmarks/transfer.py (its Bench, spawner and helpers), loaded by path: this
    directory is kept off sys.path (see above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ocimodel_bench_transfer", HERE / "transfer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses needs the module registered
    spec.loader.exec_module(module)
    return module


_transfer = _load_transfer()
OCIMODEL, Bench, human_size, parse_size = _transfer.OCIMODEL, _transfer.Bench, _transfer.human_size, _transfer.parse_size
from registry_fixtures import RegistryServer  # noqa: E402  (transfer.py put tests/ on the path)

TOOLS = ("skopeo", "ocimodel", "pull+push")
TARGET_RATIO = 1.1
KEY_PASSWORD = "benchmark"


class CopyBench:
    def __init__(self, size: int, rounds: int, workdir: Path, keep_order: bool) -> None:
        self.bench = Bench(size, rounds, workdir, log=lambda line: print(line, file=sys.stderr, flush=True))
        self.size, self.rounds, self.workdir, self.keep_order = size, rounds, workdir, keep_order
        self.env = {**self.bench.env, "OCIMODEL_KEY_PASSWORD": KEY_PASSWORD}
        self.src: RegistryServer | None = None
        self.dst: RegistryServer | None = None
        self.runs: list[dict[str, Any]] = []

    def log(self, line: str) -> None:
        self.bench.log(line)

    def run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> Any:
        got = self.bench.timed(argv, env=env or self.env)
        self.bench.check(got, what)
        return got

    def start(self) -> None:
        self.bench.docker_config.mkdir(parents=True)
        self.src = RegistryServer(self.workdir / "source").start()
        self.dst = RegistryServer(self.workdir / "destination").start()
        self.log(f"registries: {self.src.url} -> {self.dst.url}")

    def stop(self) -> None:
        for server in (self.src, self.dst):
            if server is not None:
                server.stop()

    def cold(self) -> dict[str, str]:
        return {**self.env, "OCIMODEL_CACHE_DIR": str(self.workdir / f"cache-{uuid.uuid4().hex[:8]}")}

    def prepare(self) -> str:
        assert self.src is not None
        self.bench.prepare_transfer_file()
        model = self.bench.file
        ref = f"{self.src.host}/bench/model:1.0"
        prefix = self.workdir / "signer"
        self.run([*OCIMODEL, "keygen", "--output-prefix", str(prefix)], "keygen")
        self.run([*OCIMODEL, "push", str(model), ref, "--no-git", "--json"], "push", self.cold())
        self.run([*OCIMODEL, "sign", ref, "--key", f"{prefix}.key"], "sign")
        self.run([*OCIMODEL, "promote", ref, "prod", "--reason", "benchmark", "--sign-key", f"{prefix}.key"], "promote")
        # Warm-up, untimed: bytecode compiled, skopeo and the page cache warm.
        self.copy_once("ocimodel", 0)
        self.copy_once("skopeo", 0)
        self.wipe()
        self.runs.clear()
        return ref

    def wipe(self) -> None:
        assert self.dst is not None
        shutil.rmtree(self.dst.storage_dir / "docker", ignore_errors=True)

    def copy_once(self, tool: str, round_no: int) -> None:
        assert self.src is not None and self.dst is not None
        src = f"{self.src.host}/bench/model:1.0"
        dst = f"{self.dst.host}/bench/{tool.replace('+', '')}-{round_no}-{uuid.uuid4().hex[:6]}:1.0"
        detail: dict[str, Any] = {}
        if tool == "skopeo":
            got = self.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                            f"docker://{src}", f"docker://{dst}"], "skopeo copy")
            seconds, rss = got.seconds, got.max_rss_kib
        elif tool == "ocimodel":
            got = self.run([*OCIMODEL, "copy", src, dst, "--json"], "ocimodel copy")
            report = json.loads(got.stdout)
            detail = {"referrers": len(report["referrers"]), "copiedBlobs": report["blobs"]["copied"]}
            if detail["referrers"] < 3:
                raise RuntimeError(f"ocimodel copy carried {detail['referrers']} referrers, expected 3")
            seconds, rss = got.seconds, got.max_rss_kib
        else:
            out = self.workdir / f"pulled-{uuid.uuid4().hex[:6]}"
            pulled = self.run([*OCIMODEL, "pull", src, str(out), "--json"], "ocimodel pull", self.cold())
            pushed = self.run([*OCIMODEL, "push", str(out / self.bench.file.name), dst, "--no-git", "--json"],
                              "ocimodel push", self.cold())
            seconds, rss = pulled.seconds + pushed.seconds, max(pulled.max_rss_kib, pushed.max_rss_kib)
            detail = {"pull": round(pulled.seconds, 2), "push": round(pushed.seconds, 2)}
            shutil.rmtree(out)
        self.wipe()
        self.runs.append({"tool": tool, "round": round_no, "seconds": seconds, "maxRssKib": rss, **detail})
        self.log(f"round {round_no} {tool}: {seconds:.2f} s, {rss / 1024:.0f} MiB {detail or ''}")

    def measure(self) -> None:
        for round_no in range(1, self.rounds + 1):
            shift = 0 if self.keep_order else (round_no - 1) % len(TOOLS)
            for tool in TOOLS[shift:] + TOOLS[:shift]:
                self.copy_once(tool, round_no)

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for tool in TOOLS:
            runs = [r for r in self.runs if r["tool"] == tool]
            rows.append({
                "tool": tool,
                "median": statistics.median(r["seconds"] for r in runs),
                "rssMib": max(r["maxRssKib"] for r in runs) / 1024,
                "runs": [round(r["seconds"], 2) for r in runs],
            })
        base = rows[0]["median"]
        for row in rows:
            row["ratio"] = row["median"] / base
        return rows


def render(rows: list[dict[str, Any]], size: int, rounds: int) -> str:
    lines = [
        f"Registry -> registry copy of a {human_size(size)} model (two registries on 127.0.0.1), {rounds} rounds",
        "",
        "| tool      | median | MB/s | × skopeo | peak RSS | referrers | runs (s) |",
        "|-----------|-------:|-----:|---------:|---------:|-----------|----------|",
    ]
    carried = {"skopeo": "dropped", "ocimodel": "copied", "pull+push": "dropped (new digest)"}
    for row in rows:
        rate = size / row["median"] / 1e6
        lines.append(
            f"| {row['tool']:<9} | {row['median']:.2f} s | {rate:4.0f} | {row['ratio']:8.2f} | {row['rssMib']:5.0f} MiB "
            f"| {carried[row['tool']]} | {' '.join(f'{s:.2f}' for s in row['runs'])} |"
        )
    ours = next(r for r in rows if r["tool"] == "ocimodel")
    verdict = "met" if ours["ratio"] <= TARGET_RATIO else "NOT met"
    lines += ["", f"target: ocimodel copy ≤ {TARGET_RATIO}× skopeo with referrers: {ours['ratio']:.2f}× ({verdict})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-order", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("skopeo") is None:
        print("skopeo is not installed (apt-get install skopeo)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ocimodel-copy-bench-"))
    bench = CopyBench(args.size, args.rounds, workdir, args.keep_order)
    try:
        bench.start()
        bench.prepare()
        bench.measure()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = bench.summary()
    print(json.dumps({"rows": rows, "runs": bench.runs}, indent=2) if args.json else render(rows, args.size, args.rounds))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
