"""Progress bars for transfers (rich), shown only on an interactive terminal."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING, Any, ContextManager

if TYPE_CHECKING:
    from rich.console import Console


def progress(quiet: bool) -> ContextManager[RichObserver | None]:
    """Progress bars on an interactive stderr (unless ``quiet``), else nothing (None: the
    verbs then report progress nowhere)."""
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from .render import stderr

    return RichObserver(stderr())


class RichObserver:
    """A :class:`~ocimodel.transfer.observer.TransferObserver` drawing one rich bar per file."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "RichObserver":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def begin(self, name: str, total: int) -> None:
        with self._lock:
            self._tasks[name] = self._progress.add_task(name, total=total)

    def advance(self, name: str, amount: int) -> None:
        task = self._tasks.get(name)
        if task is not None:
            self._progress.advance(task, amount)

    def end(self, name: str) -> None:
        with self._lock:
            task = self._tasks.pop(name, None)
        if task is not None:
            self._progress.remove_task(task)
