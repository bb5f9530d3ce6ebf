"""Benchmark of the scanner itself: the corpus through ocimodel, picklescan, modelscan, fickling.

The corpus is the test suite's (tests/scan_corpus.py): malicious files built byte by byte
(never unpickled) and benign files made by the real libraries (tests/data/scan/benign).
Each file is written to a temp directory and given to each tool on its own:

- ocimodel (in-process, ``scan_file``): refused when the verdict is not ``safe``;
- ``picklescan --path FILE``: exit 1 = dangerous, 2 = scan error;
- ``modelscan -p FILE``: exit 1 = issues, 2 = scan error, 3 = no supported file (passed);
- ``fickling --check-safety FILE``: non-zero = unsafe (a traceback = an error).

A scan error counts as a refusal (a file the tool could not read is not passed by a careful
user), so "caught" is dangerous or error, and so is a false positive. Run with

    make bench-scan                      # installs the extra 'bench-scan' (picklescan, modelscan, fickling)
    python benchmarks/scan.py [--json] [--tools-bin DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import scan_corpus  # noqa: E402  (tests/ holds the corpus)


@dataclass
class Result:
    tool: str
    available: bool = True
    caught: dict[str, str] = field(default_factory=dict)  # malicious name -> "dangerous" | "error"
    missed: list[str] = field(default_factory=list)
    false_positives: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _tool(name: str, bin_dir: Path | None) -> str | None:
    for candidate in ([bin_dir / name] if bin_dir else []) + [Path(sys.executable).parent / name]:
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def _judge_cli(tool: str, exe: str, path: Path) -> str:
    """'dangerous', 'error' or 'clean' for one file."""
    args = {"picklescan": [exe, "--path", str(path)], "modelscan": [exe, "-p", str(path)],
            "fickling": [exe, "--check-safety", str(path)]}[tool]
    # In a scratch directory: fickling writes safety_results.json into its working directory.
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as scratch:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                                  cwd=scratch)
        except subprocess.TimeoutExpired:
            return "error"
    code = done.returncode
    if tool == "picklescan":
        return {0: "clean", 1: "dangerous"}.get(code, "error")
    if tool == "modelscan":
        return {0: "clean", 1: "dangerous", 3: "clean"}.get(code, "error")
    if code == 0:
        return "clean"
    return "error" if "Traceback" in done.stderr else "dangerous"


def _judge_ocimodel(path: Path) -> str:
    from ocimodel.scanner import scan_file

    verdict = scan_file(path).verdict
    return {"safe": "clean", "dangerous": "dangerous", "incomplete": "error"}[verdict]


def run(bin_dir: Path | None) -> tuple[list[Result], dict[str, str], int]:
    malicious = scan_corpus.malicious()
    benign = scan_corpus.benign()
    kinds = {s.name: s.kind for s in malicious}
    results = []
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as tmp:
        files: list[tuple[str, Path, bool]] = []
        for sample in malicious:
            path = Path(tmp, "malicious", sample.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sample.data)
            files.append((sample.name, path, True))
        for name, data in benign:
            path = Path(tmp, "benign", name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files.append((name, path, False))
        for tool in ("ocimodel", "picklescan", "modelscan", "fickling"):
            result = Result(tool)
            exe = None if tool == "ocimodel" else _tool(tool, bin_dir)
            if tool != "ocimodel" and exe is None:
                result.available = False
                results.append(result)
                continue
            start = time.perf_counter()
            for name, path, bad in files:
                print(f"{tool}: {name}", file=sys.stderr)
                judged = _judge_ocimodel(path) if exe is None else _judge_cli(tool, exe, path)
                if bad and judged != "clean":
                    result.caught[name] = judged
                elif bad:
                    result.missed.append(name)
                elif judged != "clean":
                    result.false_positives[name] = judged
            result.seconds = time.perf_counter() - start
            results.append(result)
    return results, kinds, len(benign)


def table(results: list[Result], kinds: dict[str, str], n_benign: int) -> str:
    n_bad = len(kinds)
    lines = [
        f"| tool | malicious caught (of {n_bad}) | as dangerous / as error | false positives (of {n_benign}) | time |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r.available:
            lines.append(f"| {r.tool} | not installed | | | |")
            continue
        how = Counter(r.caught.values())
        lines.append(f"| {r.tool} | {len(r.caught)} | {how['dangerous']} / {how['error']} | "
                     f"{len(r.false_positives)} | {r.seconds:.1f} s |")
    classes = sorted(set(kinds.values()))
    lines += ["", "Caught per class:", "", "| class | files | " + " | ".join(r.tool for r in results if r.available) + " |",
              "|---|---:|" + "---:|" * sum(r.available for r in results)]
    for kind in classes:
        names = [n for n, k in kinds.items() if k == kind]
        cells = [str(sum(n in r.caught for n in names)) for r in results if r.available]
        lines.append(f"| {kind} | {len(names)} | " + " | ".join(cells) + " |")
    for r in results:
        if r.available and (r.missed or r.false_positives):
            lines.append("")
            if r.missed:
                lines.append(f"{r.tool} missed: {', '.join(sorted(r.missed))}")
            if r.false_positives:
                lines.append(f"{r.tool} false positives: " + ", ".join(f"{n} ({v})" for n, v in sorted(r.false_positives.items())))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print raw results as JSON")
    parser.add_argument("--tools-bin", type=Path, help="directory holding picklescan, modelscan, fickling")
    args = parser.parse_args()
    results, kinds, n_benign = run(args.tools_bin)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2, sort_keys=True))
    else:
        print(table(results, kinds, n_benign))
    ours = results[0]
    others = {r.tool: r for r in results if r.available}
    if ours.missed or len(ours.false_positives) > 2:
        sys.exit(1)
    picklescan = others.get("picklescan")
    if picklescan and (len(ours.caught) < len(picklescan.caught) or len(ours.false_positives) > len(picklescan.false_positives)):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
