"""Scanning local content: bytes, a stream, a file, the titled files of a model, a directory."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import IO, Callable, Iterable

from ..errors import UsageError
from .regions import FileRegion, spool
from .report import FileScan, Finding, ScanReport
from .scanner import DEFAULT_OPTIONS, ScanOptions, scan_region

_CHUNK = 1 << 20


def scan_stream(stream: IO[bytes], name: str, options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan a binary stream (a pulled blob) named ``name`` from its current position.
    Unseekable streams are spooled first (to a temp file past a few MiB)."""
    if hasattr(stream, "seekable") and stream.seekable():
        start = stream.tell()
        size = stream.seek(0, 2) - start
        return scan_region(FileRegion(stream, start, size), name, options)
    limit = options.limits.decompressed

    def fill(out: IO[bytes]) -> None:
        while chunk := stream.read(min(_CHUNK, limit + 1 - out.tell())):
            out.write(chunk)
            if out.tell() > limit:
                return

    out, region = spool(fill)
    with out:
        if region.size > limit:
            scan = scan_region(FileRegion(out, 0, limit), name, options)
            scan.incomplete.append(Finding(f"stream longer than {limit >> 20} MiB: the rest not inspected (scan limit 'decompressed')"))
            return scan
        return scan_region(region, name, options)


def scan_bytes(data: bytes, name: str = "<bytes>", options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan in-memory content named ``name`` (the name decides only whether it is pickle-named)."""
    import io

    return scan_region(FileRegion(io.BytesIO(data), 0, len(data)), name, options)


def scan_file(path: Path, relpath: str | None = None, options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan one file, reported under ``relpath`` (default: its name). Never raises."""
    path = Path(path)
    rel = relpath if relpath is not None else path.name
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return FileScan(rel, "special", incomplete=[Finding("not a regular file: not inspected")])
        with open(path, "rb") as f:
            return scan_region(FileRegion(f, 0, info.st_size), rel, options)
    except OSError as exc:
        return FileScan(rel, "unknown", incomplete=[Finding(f"cannot read: {exc.strerror or exc}")])


def scan_files(
    files: Iterable[tuple[str, Path]], subject: str | None = None, options: ScanOptions = DEFAULT_OPTIONS
) -> ScanReport:
    """Scan local files, each reported under its title; a path given twice is read once."""
    seen: dict[Path, FileScan] = {}
    scans = []
    for title, path in files:
        known = seen.get(path)
        if known is None:
            known = seen[path] = scan_file(path, title, options)
            scans.append(known)
        else:
            scans.append(dataclasses.replace(known, path=title))
    return ScanReport(scans, subject=subject)


def _outside(path: Path, root: Path) -> bool:
    try:
        return not path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return True


def scan_path(path: Path, options: ScanOptions = DEFAULT_OPTIONS, on_file: Callable[[str], None] | None = None) -> ScanReport:
    """Scan a file, or every file under a directory (``.git`` skipped, symlinks leading out of
    the directory not followed). Raises :class:`UsageError` if ``path`` does not exist."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"scanning {path}: no such file or directory")
    if not path.is_dir():
        return ScanReport([scan_file(path, path.name, options)])
    root = path.resolve()
    files: list[FileScan] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for entry in dirnames + filenames:
            full = here / entry
            rel = full.relative_to(path).as_posix()
            if full.is_symlink() and _outside(full, root):
                files.append(FileScan(rel, "symlink", incomplete=[Finding("symlink leading outside the directory: not followed")]))
            elif entry in filenames:
                if on_file is not None:
                    on_file(rel)
                files.append(scan_file(full, rel, options))
    files.sort(key=lambda f: f.path)
    return ScanReport(files)
