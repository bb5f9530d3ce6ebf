"""Progress bars for transfers (rich), shown only on an interactive terminal.

One overall bar counts every byte of every file; a file of at least :data:`OWN_BAR_BYTES`
also gets its own bar (at most :data:`MAX_FILE_BARS` at once), so a model of many small files
shows one bar, not a screenful. Names are cut from the left (``…/layer_3/weights.bin``) to
what the terminal leaves after the bar, size, rate and time left, which always stay visible.
Sizes and rates are binary (KiB, MiB, GiB), as everywhere in ocimodel's output.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, ContextManager

from .output import Output, current

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task
    from rich.text import Text

#: A file this large gets a bar of its own besides the overall one.
OWN_BAR_BYTES = 16 * 1024 * 1024
#: At most this many per-file bars at once; further files count in the overall bar only.
MAX_FILE_BARS = 4
#: Columns taken by everything but the name and the bar: "123.4/567.8 MiB 12.3 MiB/s 0:00:12".
_FIXED_COLUMNS = 38


def progress(hidden: bool) -> ContextManager[RichObserver | None]:
    """Progress bars on an interactive stderr (unless ``hidden``, e.g. JSON output, or ``-q``),
    else nothing (None: the verbs then report progress nowhere)."""
    output = current()
    if hidden or output.quiet or not output.tty:
        return contextlib.nullcontext(None)
    from .render import stderr

    return RichObserver(stderr(), output)


def truncate_left(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, its start replaced by "…" when too long
    (the end of a path says which file it is)."""
    if len(name) <= width:
        return name
    return "…" + name[len(name) - width + 1:] if width > 1 else name[-width:] if width > 0 else ""


class RichObserver:
    """A :class:`~ocimodel.transfer.observer.TransferObserver` drawing an overall bar and one per
    large file; while it is shown, ``output``'s lines go through its console (above the bars)."""

    def __init__(self, console: Console, output: Output) -> None:
        from rich.filesize import pick_unit_and_suffix
        from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TimeRemainingColumn
        from rich.text import Text

        width = console.width
        bar = max(6, min(30, width // 6))
        name_width = max(8, width - _FIXED_COLUMNS - bar)

        class NameColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                return Text(truncate_left(task.description, name_width), no_wrap=True, overflow="crop")

        class SpeedColumn(ProgressColumn):
            """Bytes per second in binary units (rich's own column is decimal)."""

            def render(self, task: Task) -> Text:
                speed = task.finished_speed or task.speed
                if speed is None:
                    return Text("?", style="progress.data.speed")
                unit, suffix = pick_unit_and_suffix(int(speed), ["B", "KiB", "MiB", "GiB", "TiB"], 1024)
                return Text(f"{speed / unit:.1f} {suffix}/s", style="progress.data.speed")

        self._progress = Progress(
            NameColumn(), BarColumn(bar_width=bar), DownloadColumn(binary_units=True), SpeedColumn(),
            TimeRemainingColumn(), console=console, transient=True, redirect_stderr=False, redirect_stdout=False,
        )
        self._output = output
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self._files = 0
        self._total = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "RichObserver":
        self._progress.start()
        self._output.live = self._progress.console
        return self

    def __exit__(self, *exc: object) -> None:
        self._output.live = None
        self._progress.stop()

    def begin(self, name: str, total: int) -> None:
        with self._lock:
            self._files += 1
            self._total += total
            label = name if self._files == 1 else f"{self._files} files"
            if self._overall is None:
                self._overall = self._progress.add_task(label, total=self._total)
            else:
                self._progress.update(self._overall, total=self._total, description=label)
            if total >= OWN_BAR_BYTES and len(self._tasks) < MAX_FILE_BARS and self._files > 1:
                self._tasks[name] = self._progress.add_task(name, total=total)

    def advance(self, name: str, amount: int) -> None:
        if self._overall is not None:
            self._progress.advance(self._overall, amount)
        task = self._tasks.get(name)
        if task is not None:
            self._progress.advance(task, amount)

    def end(self, name: str) -> None:
        with self._lock:
            task = self._tasks.pop(name, None)
        if task is not None:
            self._progress.remove_task(task)
