"""Progress of a transfer: what it reports, to whom, and how a part of it is stopped."""

from __future__ import annotations

import threading
from typing import Protocol

from .parallel import Cancelled


class TransferObserver(Protocol):
    """Receives progress events (thread-safe implementations only: blobs move concurrently)."""

    def begin(self, name: str, total: int) -> None: ...

    def advance(self, name: str, amount: int) -> None: ...

    def end(self, name: str) -> None: ...


class NullObserver:
    """Ignores progress (non-interactive use)."""

    def __enter__(self) -> "NullObserver":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def begin(self, name: str, total: int) -> None:
        pass

    def advance(self, name: str, amount: int) -> None:
        pass

    def end(self, name: str) -> None:
        pass


class StoppableObserver:
    """Passes progress on to ``inner``; raises :class:`~.parallel.Cancelled` once ``stop`` is
    set, which ends the loop that reports to it (hashing a file, say) at its next chunk."""

    def __init__(self, inner: TransferObserver, stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def begin(self, name: str, total: int) -> None:
        self._inner.begin(name, total)

    def advance(self, name: str, amount: int) -> None:
        if self._stop.is_set():
            raise Cancelled()
        self._inner.advance(name, amount)

    def end(self, name: str) -> None:
        self._inner.end(name)
