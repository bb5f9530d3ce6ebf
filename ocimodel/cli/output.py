"""Where the command line's stderr lines go, and at which verbosity they show.

Levels (README "Output"): errors always; warnings always (they are about safety: an unsafe
pickle, a loose policy); a command's one-line summary (``Pushed ...``, ``Signed ...``) unless
``-q``; step lines (pull's ``ocimodel: resolved ...``) on a terminal, or with ``-v`` when
piped, or with ``--log-format json`` (asked for explicitly); a step that changes what happens
(``repairing``, ``state-ignored``) like a summary. Progress bars only on a terminal, never with
``-q``.

While progress bars are drawn, every line goes through their console, so it is printed above
the bars instead of into them (a line written to stderr behind rich's back was glued to a
stale bar, and erased in part when the bars were cleared).
"""

from __future__ import annotations

import contextvars
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

QUIET, NORMAL, VERBOSE = -1, 0, 1


@dataclass
class Output:
    """One command's stderr: its verbosity, and the live progress console while one is shown."""

    verbosity: int = NORMAL
    tty: bool = field(default_factory=lambda: sys.stderr.isatty())
    live: Console | None = None

    @property
    def quiet(self) -> bool:
        return self.verbosity <= QUIET

    def error(self, line: str) -> None:
        self.write(line)

    def warning(self, line: str) -> None:
        self.write(line)

    def summary(self, line: str) -> None:
        """What the command did, in one line: hidden by ``-q``."""
        if not self.quiet:
            self.write(line)

    def step(self, line: str, *, notable: bool = False, requested: bool = False) -> None:
        """A step of a verb: shown on a terminal or with ``-v`` (always if ``notable`` or
        ``requested``, e.g. JSON log lines); hidden by ``-q``."""
        if self.quiet:
            return
        if notable or requested or self.tty or self.verbosity >= VERBOSE:
            self.write(line)

    def write(self, line: str) -> None:
        live = self.live
        if live is not None:
            # Printed above the bars by rich's live render hook.
            live.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)
        else:
            typer.echo(line, err=True)


_current: contextvars.ContextVar[Output] = contextvars.ContextVar("ocimodel_output")


def current() -> Output:
    """The running command's output (a default one outside a command, e.g. from tests)."""
    try:
        return _current.get()
    except LookupError:
        return Output()


class using:
    """``with using(Output(...)):`` makes it :func:`current` for one command's run."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._token: contextvars.Token[Output] | None = None

    def __enter__(self) -> Output:
        self._token = _current.set(self.output)
        return self.output

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)


