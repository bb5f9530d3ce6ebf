"""What a scan found: per-file verdicts, the whole report, and a rendering for people.

Pure data: no I/O. ``to_dict()`` gives the JSON form the CLI's ``--json`` prints.

A file's verdict is ``dangerous`` (it imports a global not on the allow-list, or holds a
gadget pattern, a hostile archive structure or a polyglot), else ``incomplete`` (it may be
unpickled and could not be scanned to the end: the reasons say why), else ``safe``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DANGEROUS, INCOMPLETE, SAFE = "dangerous", "incomplete", "safe"


@dataclass(frozen=True)
class GlobalRef:
    """One global (``module.name``, as the pickle spells it) that a pickle would import.

    ``dangerous``: not on the allow-list (``reason`` says why it matters); ``allowed`` is
    its opposite. ``known``: dangerous for a known reason (a listed gadget, or how the pickle
    uses it), not merely for being off the allow-list. ``loads``: the name the unpickler
    imports (Python 2 names mapped). ``location``: the member inside a container
    (``archive/data.pkl``), ``""`` at top level.
    """

    module: str
    name: str
    dangerous: bool
    reason: str
    allowed: bool = False
    location: str = ""
    loads: str = ""
    known: bool = False

    @property
    def call(self) -> str:
        """The dotted name as the pickle spells it: ``posix.system``."""
        return f"{self.module}.{self.name}"

    @property
    def verdict(self) -> str:
        return DANGEROUS if self.dangerous else SAFE


@dataclass(frozen=True)
class Finding:
    """A reason about a file, or about one member inside it (``location``)."""

    reason: str
    location: str = ""

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" if self.location else self.reason


@dataclass
class FileScan:
    """The scan of one file (or blob). A container's members are folded into it.

    ``hostile``: structures that make the file dangerous besides its globals (a call of a
    call's result, a polyglot, a zip member listed twice...).
    ``incomplete``: why the file was not fully inspected (empty when it was). ``pickle``: it
    holds a pickle a loader would run. ``verified``: for a blob scanned from a registry, True
    when all its bytes were read and matched its digest, False when only its header was read;
    ``None`` for local files.
    """

    path: str
    format: str
    globals: list[GlobalRef] = field(default_factory=list)
    dangerous: list[GlobalRef] = field(default_factory=list)
    hostile: list[Finding] = field(default_factory=list)
    incomplete: list[Finding] = field(default_factory=list)
    pickle: bool = False
    verified: bool | None = None

    @property
    def verdict(self) -> str:
        if self.dangerous or self.hostile:
            return DANGEROUS
        return INCOMPLETE if self.incomplete else SAFE

    @property
    def error(self) -> str | None:
        """Why the file was not fully inspected, in one line (``None`` when it was)."""
        shown = [str(f) for f in self.incomplete[:5]] + ([f"and {len(self.incomplete) - 5} more"] if len(self.incomplete) > 5 else [])
        return "; ".join(shown) or None

    @property
    def safe_by_construction(self) -> bool:
        """Safe and holding no pickle at all (safetensors, GGUF, plain numpy, text...)."""
        return self.verdict == SAFE and not self.pickle and not self.globals

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["globals"] = [dict(asdict(g), call=g.call, verdict=g.verdict) for g in self.globals]
        out["dangerous"] = [dict(asdict(g), call=g.call, verdict=g.verdict) for g in self.dangerous]
        out.update(verdict=self.verdict, error=self.error, safe_by_construction=self.safe_by_construction)
        return out


@dataclass
class ScanReport:
    """The scan of a path (file or directory) or of a remote model's blobs.

    ``subject``: what was scanned (the path, or ``reference@digest`` of a remote model).
    """

    files: list[FileScan] = field(default_factory=list)
    subject: str | None = None

    @property
    def dangerous(self) -> bool:
        """True when any file is dangerous."""
        return any(f.verdict == DANGEROUS for f in self.files)

    @property
    def errors(self) -> list[FileScan]:
        """The files that were not fully inspected (whatever else they hold)."""
        return [f for f in self.files if f.incomplete]

    @property
    def verdict(self) -> str:
        """``dangerous`` if any file is, else ``incomplete`` if any file is, else ``safe``."""
        verdicts = {f.verdict for f in self.files}
        return DANGEROUS if DANGEROUS in verdicts else INCOMPLETE if INCOMPLETE in verdicts else SAFE

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "verdict": self.verdict,
            "dangerous": self.dangerous,
            "files": [f.to_dict() for f in self.files],
        }

    def dangerous_lines(self) -> list[str]:
        """One line per dangerous global (``file[:member] imports module.name (why)``) or
        dangerous structure (``file[:member]: why``)."""
        lines = [f"{_where(f, g.location)} imports {g.call} ({g.reason})" for f in self.files for g in f.dangerous]
        lines += [f"{_where(f, h.location)}: {h.reason}" for f in self.files for h in f.hostile]
        return lines

    def incomplete_lines(self) -> list[str]:
        """One line per reason a file was not fully inspected: ``file[:member]: why``."""
        return [f"{_where(f, i.location)}: {i.reason}" for f in self.files for i in f.incomplete]

    def format(self) -> str:
        """Human-readable text (see :func:`format_report`)."""
        return format_report(self)


def _where(scan: FileScan, location: str) -> str:
    return f"{scan.path}:{location}" if location else scan.path


def format_report(report: ScanReport) -> str:
    """Human-readable text: one line per finding, one per file without any, then a summary."""
    lines: list[str] = []
    for scan in report.files:
        for ref in scan.dangerous:
            lines.append(f"{_where(scan, ref.location)}: DANGEROUS {ref.call} ({ref.reason})")
        for item in scan.hostile:
            lines.append(f"{_where(scan, item.location)}: DANGEROUS {item.reason}")
        for item in scan.incomplete:
            lines.append(f"{_where(scan, item.location)}: NOT FULLY INSPECTED {item.reason}")
        if scan.verdict == SAFE:
            if scan.safe_by_construction:
                lines.append(f"{scan.path}: SAFE {scan.format} (cannot carry code)")
            else:
                lines.append(f"{scan.path}: OK {scan.format} ({len(scan.globals)} global(s), all allowed)")
    counts = {v: sum(1 for f in report.files if f.verdict == v) for v in (DANGEROUS, INCOMPLETE, SAFE)}
    summary = (
        f"{len(report.files)} file(s) scanned: {counts[DANGEROUS]} dangerous, "
        f"{counts[INCOMPLETE]} not fully inspected, {counts[SAFE]} safe"
    )
    prefix = {DANGEROUS: "DANGEROUS: ", INCOMPLETE: "NOT FULLY INSPECTED: ", SAFE: ""}[report.verdict]
    lines.append(prefix + summary)
    return "\n".join(lines)
