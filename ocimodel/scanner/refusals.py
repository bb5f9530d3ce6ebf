"""Refusing a model for what its files could run: the refusal, and the lines that say why.

A file is refused when it is dangerous (a global off the allow-list, a gadget structure, a
hostile archive, a polyglot) or was not fully inspected (a file that may be unpickled and
could not be scanned to its end is never passed). The refusal is
:class:`UnsafeModelError`, a :class:`~ocimodel.errors.PolicyError` (exit 5): the content is
exactly what its publisher pushed and a policy says no; INTEGRITY (6) stays for bytes that
do not match their digest or content hostile to ocimodel itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import PolicyError
from .local import scan_files
from .report import ScanReport
from .scanner import DEFAULT_OPTIONS, ScanOptions

SHOWN = 5  # findings named in one refusal message


class UnsafeModelError(PolicyError):
    """A model with a file that can run code when loaded, or that could not be fully
    inspected (exit 5)."""


def named(findings: list[str], what: str) -> str:
    """``what: f1; f2; ...`` naming the first :data:`SHOWN` findings, and how many more."""
    more = f"; and {len(findings) - SHOWN} more" if len(findings) > SHOWN else ""
    return f"{what}: " + "; ".join(findings[:SHOWN]) + more


def where(path: str, location: str) -> str:
    """``file[:member]``."""
    return f"{path}:{location}" if location else path


def refuse_unsafe(report: ScanReport) -> None:
    """Raise :class:`UnsafeModelError` (exit 5) if any file is dangerous (naming each file and
    call) or was not fully inspected (naming each file and why)."""
    dangerous, incomplete = report.dangerous_lines(), report.incomplete_lines()
    if dangerous:
        message = named(dangerous, "refusing a model whose files can run code when loaded")
        if incomplete:
            message += f"; also not fully inspected: {incomplete[0]}" + (f" (and {len(incomplete) - 1} more)" if len(incomplete) > 1 else "")
        raise UnsafeModelError(message)
    if incomplete:
        raise UnsafeModelError(named(
            incomplete, "refusing a model with files ocimodel could not fully inspect (a file that may be unpickled "
            "must be scanned to its end; see docs/scanning.md)"))


def check_blobs_safe(files: Iterable[tuple[str, Path]], options: ScanOptions = DEFAULT_OPTIONS) -> ScanReport:
    """Scan ``(title, path)`` pairs (a pull's verified staged files) and raise
    :class:`UnsafeModelError` (exit 5) if any is dangerous or not fully inspected.

    Meant to run before the files are moved into the destination, so a refused model never
    reaches it. Returns the report when nothing is refused.
    """
    report = scan_files(files, options=options)
    refuse_unsafe(report)
    return report
