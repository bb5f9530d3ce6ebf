"""The progress display at 80 columns: names cut from the left, size, rate and time left kept;
many small files make one bar."""

from __future__ import annotations

import io

from rich.console import Console

from ocimodel.cli.output import Output
from ocimodel.cli.progress import OWN_BAR_BYTES, RichObserver, truncate_left


def _screen(observer: RichObserver, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=True).print(observer._progress.get_renderable())
    return [line for line in out.getvalue().splitlines() if line.strip()]


def test_long_name_cut_from_the_left_keeps_size_rate_and_time():
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    observer = RichObserver(console, Output(tty=True))
    name = "very/deeply/nested/directory/of/checkpoints/epoch-0042/model-weights-final.safetensors"
    observer.begin(name, 64 * 1024 * 1024)
    observer.advance(name, 3 * 1024 * 1024)
    (line,) = _screen(observer, 80)
    assert len(line.rstrip()) <= 80
    assert line.startswith("…") and line.split()[0].endswith("weights-final.safetensors")
    assert "/64.0 MiB" in line and ("/s" in line or "?" in line) and ":" in line.split("MiB")[-1]


def test_many_small_files_one_bar():
    observer = RichObserver(Console(file=io.StringIO(), width=80, force_terminal=True), Output(tty=True))
    for i in range(200):
        observer.begin(f"f{i}", 1000)
    observer.begin("big.bin", OWN_BAR_BYTES)
    lines = _screen(observer, 80)
    assert len(lines) == 2 and lines[0].startswith("201 files") and lines[1].startswith("big.bin")


def test_truncate_left():
    assert truncate_left("a/b/c.bin", 20) == "a/b/c.bin"
    assert truncate_left("abcdefghij", 5) == "…ghij"
