"""What a scan found: per-file results, the whole report, and a rendering for people.

Pure data: no I/O. ``to_dict()`` gives the JSON form the CLI's ``--json`` prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GlobalRef:
    """One global (``module.name``) that a pickle would import and may call.

    ``dangerous``: known to run code or touch the system. ``allowed``: on the allow-list of
    known-harmless globals. Neither: unknown (listed, not counted as dangerous).
    ``location``: the member inside a container (``archive/data.pkl``), ``""`` at top level.
    """

    module: str
    name: str
    dangerous: bool
    reason: str
    allowed: bool = False
    location: str = ""

    @property
    def call(self) -> str:
        """The dotted name as it would be called: ``os.system``."""
        return f"{self.module}.{self.name}"

    @property
    def verdict(self) -> str:
        """``"dangerous"``, ``"safe"`` or ``"unknown"``."""
        if self.dangerous:
            return "dangerous"
        return "safe" if self.allowed else "unknown"


@dataclass
class FileScan:
    """The scan of one file (or blob). A container's members are folded into it.

    ``safe_by_construction``: a format that cannot carry code (safetensors, GGUF, ONNX, plain
    numpy, text), or a container holding only such members. ``error``: what could not be
    inspected (truncated, too large, unsupported compression...), ``None`` when all was read.
    ``verified``: for a blob scanned from a registry, True when all its bytes were read and
    matched its digest, False when only its header was read (a format judged from its header
    alone, or a blob too large to inspect); ``None`` for local files.
    """

    path: str
    format: str
    safe_by_construction: bool = False
    globals: list[GlobalRef] = field(default_factory=list)
    dangerous: list[GlobalRef] = field(default_factory=list)
    error: str | None = None
    verified: bool | None = None

    @property
    def unknown(self) -> list[GlobalRef]:
        return [g for g in self.globals if g.verdict == "unknown"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("globals", "dangerous"):
            out[key] = [dict(asdict(g), call=g.call, verdict=g.verdict) for g in getattr(self, key)]
        return out


@dataclass
class ScanReport:
    """The scan of a path (file or directory) or of several blobs.

    ``subject``: what was scanned (the path, or ``reference@digest`` of a remote model).
    """

    files: list[FileScan] = field(default_factory=list)
    subject: str | None = None

    @property
    def dangerous(self) -> bool:
        """True when any file imports a dangerous global."""
        return any(f.dangerous for f in self.files)

    @property
    def errors(self) -> list[FileScan]:
        """The files that could not be inspected entirely."""
        return [f for f in self.files if f.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "dangerous": self.dangerous,
            "files": [f.to_dict() for f in self.files],
        }


def _where(scan: FileScan, ref: GlobalRef) -> str:
    return f"{scan.path}:{ref.location}" if ref.location else scan.path


def format_report(report: ScanReport) -> str:
    """Human-readable text: one line per finding (file and global), one per file with no
    finding (``SAFE`` format that cannot carry code, or ``OK``: only allow-listed globals),
    then a summary line."""
    lines: list[str] = []
    for scan in report.files:
        found = [ref for ref in scan.globals if ref.verdict != "safe"]
        for ref in found:
            lines.append(f"{_where(scan, ref)}: {ref.verdict.upper()} {ref.call} ({ref.reason})")
        if scan.error:
            lines.append(f"{scan.path}: ERROR {scan.error}")
        elif scan.safe_by_construction:
            lines.append(f"{scan.path}: SAFE {scan.format} (cannot carry code)")
        elif not found:
            lines.append(f"{scan.path}: OK {scan.format} ({len(scan.globals)} global(s), all allow-listed)")
    n_danger = sum(len(f.dangerous) for f in report.files)
    n_unknown = sum(len(f.unknown) for f in report.files)
    n_safe = sum(1 for f in report.files if f.safe_by_construction)
    summary = (
        f"{len(report.files)} file(s) scanned: {n_danger} dangerous global(s), "
        f"{n_unknown} unknown, {len(report.errors)} file(s) not fully inspected, "
        f"{n_safe} safe by construction"
    )
    lines.append(("DANGEROUS: " if report.dangerous else "") + summary)
    return "\n".join(lines)
