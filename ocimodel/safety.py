"""Content policies built on the scanner: what a model's files could execute.

- :func:`scan_files` / :func:`scan_model` scan local files, or a model's blobs straight from
  the registry (in memory, never written to disk; see :data:`MAX_BLOB_SCAN_BYTES`).
- :func:`scan_summary` is the compact, deterministic record push stores in ``config.scan``.
- :func:`refuse_unsafe`, :func:`check_blobs_safe` and :func:`check_config_scan` refuse models
  with a file that is dangerous or was not fully inspected (a file that may be unpickled and
  could not be scanned to its end is never passed).

Refusals are :class:`PolicyError`, a :class:`~ocimodel.errors.VerificationError`
(exit code 5, VERIFICATION): like a signature policy, the content is exactly what its
publisher pushed and a policy says no. INTEGRITY (6) stays for bytes that do not match their
digest or an artifact hostile to ocimodel itself (a path escaping DEST); retrying or another
mirror can fix those, never a policy refusal.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable

from ._version import __version__
from .errors import PolicyError
from .model import ResolvedModel, plan_files
from .scan import (
    DANGEROUS,
    HEAD_BYTES,
    INCOMPLETE,
    SAFE,
    FileScan,
    Finding,
    ScanOptions,
    ScanReport,
    header_length,
    scan_bytes,
    scan_file,
    scan_stream,
)

if TYPE_CHECKING:
    from .config import ModelConfig
    from .descriptor import Descriptor
    from .storage import Target

#: Largest blob :func:`scan_model` reads to scan. Larger blobs are judged from their header
#: when their format allows it (safetensors, GGUF, ONNX, plain numpy), else reported as not
#: fully inspected: pull them, then scan the directory.
MAX_BLOB_SCAN_BYTES = 64 << 30  # bounded by temp disk, not memory (see _scan_blob)
_SPOOL_IN_MEMORY = 32 << 20
_SHOWN = 5  # findings named in one refusal message
SUMMARY_SCHEMA = 2  # the shape of config.scan this version writes (1: before verdicts)
_DEFAULT = ScanOptions()


class UnsafeModelError(PolicyError):
    """A model with a file that can run code when loaded, or that could not be fully
    inspected (exit 5)."""


# -- scanning -------------------------------------------------------------------------------


def scan_files(
    files: Iterable[tuple[str, Path]], subject: str | None = None, options: ScanOptions = _DEFAULT
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


def scan_model(
    model: ResolvedModel, *, max_blob_bytes: int = MAX_BLOB_SCAN_BYTES, options: ScanOptions = _DEFAULT
) -> ScanReport:
    """Scan every file of a resolved model where it is stored, writing no model file anywhere.

    Each blob is streamed: its first bytes tell the format; a format judged from its header
    (safetensors, GGUF, ONNX, plain numpy) is scanned from that header and the rest not
    downloaded (``verified=False``); anything else up to ``max_blob_bytes`` is read (small
    blobs into memory, big ones into an anonymous temp file deleted on close), checked
    against its digest (:class:`DigestMismatchError` if it does not match) and scanned
    (``verified=True``); larger blobs are reported as not fully inspected. Titles are
    validated as for a pull, so a hostile artifact is refused whole.
    """
    by_digest: dict[str, FileScan] = {}
    scans = []
    for item in plan_files(model):
        known = by_digest.get(item.layer.digest)
        if known is None:
            known = by_digest[item.layer.digest] = _scan_blob(
                model.reference.target, item.layer, item.title, max_blob_bytes, options)
            scans.append(known)
        else:
            scans.append(dataclasses.replace(known, path=item.title))
    return ScanReport(scans, subject=str(model.reference))


def _scan_blob(target: Target, layer: Descriptor, title: str, limit: int, options: ScanOptions) -> FileScan:
    with target.open_blob(layer, what=f"blob {layer.digest[:19]} ({title})") as reader:
        head = reader.read(min(layer.size, HEAD_BYTES))
        needed = header_length(head, title)
        if needed is not None and len(head) < layer.size:
            prefix = head + reader.read(min(needed, layer.size) - len(head)) if needed > len(head) else head
            if len(prefix) < layer.size:
                scan = scan_bytes(prefix, title, options)
                if scan.safe_by_construction:
                    scan.verified = False  # the rest was not downloaded: its digest is unchecked
                    return scan
            head = prefix
        if layer.size > limit:
            return FileScan(
                title, "unknown", verified=False,
                incomplete=[Finding(f"{layer.size} bytes, over the {limit >> 20} MiB scan limit: "
                                    "not inspected (pull it, then scan the directory)")],
            )
        # Small blobs stay in memory; big ones go to an anonymous temp file (gone when closed)
        # that the scanner can seek over (it steps over bulk payloads), so memory stays flat.
        spool: IO[bytes] = io.BytesIO() if layer.size <= _SPOOL_IN_MEMORY else tempfile.TemporaryFile()
        with spool as data:
            data.write(head)
            reader.read_into(data)
            reader.verify()
            data.seek(0)
            scan = scan_stream(data, title, options)
    scan.verified = True
    return scan


# -- the record stored at push ---------------------------------------------------------------


def scan_summary(report: ScanReport) -> dict[str, Any]:
    """The compact record push stores in the model config's ``scan`` field.

    Deterministic (no time, everything sorted) so that pushes with ``SOURCE_DATE_EPOCH`` stay
    reproducible: the overall verdict, per file its format and verdict, every dangerous
    global (with the name it loads as, so a pull that allows it can tell) or structure as a
    finding, and why each file not fully inspected was not. ``dangerous`` stays for readers
    of the first schema.
    """
    files = sorted(report.files, key=lambda f: f.path)
    findings = [
        {"file": f.path, "location": g.location, "kind": "global", "call": g.call, "loads": g.loads,
         "known": g.known, "reason": g.reason}
        for f in files for g in f.dangerous
    ] + [
        {"file": f.path, "location": h.location, "kind": "structure", "reason": h.reason}
        for f in files for h in f.hostile
    ]
    incomplete = [{"file": f.path, "location": i.location, "reason": i.reason} for f in files for i in f.incomplete]
    order = lambda d: (d["file"], d["location"], d.get("call", ""), d["reason"])  # noqa: E731
    return {
        "scanner": {"name": "ocimodel", "version": __version__},
        "schema": SUMMARY_SCHEMA,
        "verdict": report.verdict,
        "dangerous": report.dangerous,
        "files": [
            {"path": f.path, "format": f.format, "verdict": f.verdict, "pickle": f.pickle, "inspected": not f.incomplete}
            for f in files
        ],
        "findings": sorted(findings, key=order),
        "incomplete": sorted(incomplete, key=order),
    }


# -- unsafe content ---------------------------------------------------------------------------


def _named(findings: list[str], what: str) -> str:
    more = f"; and {len(findings) - _SHOWN} more" if len(findings) > _SHOWN else ""
    return f"{what}: " + "; ".join(findings[:_SHOWN]) + more


def _where(path: str, location: str) -> str:
    return f"{path}:{location}" if location else path


def dangerous_findings(report: ScanReport) -> list[str]:
    """One line per dangerous global (``file[:member] imports module.name (why)``) or
    dangerous structure (``file[:member]: why``)."""
    lines = [f"{_where(f.path, g.location)} imports {g.call} ({g.reason})" for f in report.files for g in f.dangerous]
    lines += [f"{_where(f.path, h.location)}: {h.reason}" for f in report.files for h in f.hostile]
    return lines


def incomplete_findings(report: ScanReport) -> list[str]:
    """One line per reason a file was not fully inspected: ``file[:member]: why``."""
    return [f"{_where(f.path, i.location)}: {i.reason}" for f in report.files for i in f.incomplete]


def refuse_unsafe(report: ScanReport) -> None:
    """Raise :class:`UnsafeModelError` (exit 5) if any file is dangerous (naming each file and
    call) or was not fully inspected (naming each file and why)."""
    dangerous, incomplete = dangerous_findings(report), incomplete_findings(report)
    if dangerous:
        message = _named(dangerous, "refusing a model whose files can run code when loaded")
        if incomplete:
            message += f"; also not fully inspected: {incomplete[0]}" + (f" (and {len(incomplete) - 1} more)" if len(incomplete) > 1 else "")
        raise UnsafeModelError(message)
    if incomplete:
        raise UnsafeModelError(_named(
            incomplete, "refusing a model with files ocimodel could not fully inspect (a file that may be unpickled "
            "must be scanned to its end; see docs/scanning.md)"))


def check_blobs_safe(files: Iterable[tuple[str, Path]], options: ScanOptions = _DEFAULT) -> ScanReport:
    """Scan ``(title, path)`` pairs (a pull's verified staged files) and raise
    :class:`UnsafeModelError` (exit 5) if any is dangerous or not fully inspected.

    Meant to run before the files are moved into the destination, so a refused model never
    reaches it. Returns the report when nothing is refused.
    """
    report = scan_files(files, options=options)
    refuse_unsafe(report)
    return report


def check_config_scan(config: ModelConfig | None, options: ScanOptions = _DEFAULT) -> None:
    """Refuse early (before any download) a model whose push-time scan, as recorded in its
    config, found a dangerous file or one it could not fully inspect. Only a shortcut: the
    record is the publisher's claim, so a missing or clean record proves nothing and the
    downloaded bytes must still be scanned. A record that cannot be interpreted is refused
    (fail closed); globals the pull allows (``--allow-global``) are not held against it."""
    record = config.scan if config is not None else None
    if record is None:
        return
    what = "refusing a model whose push-time scan (recorded in its config)"
    if not isinstance(record, dict):
        raise UnsafeModelError(f"{what} cannot be interpreted: not a JSON object")
    if "schema" in record or "verdict" in record:
        _check_summary_v2(record, options, what)
        return
    if not isinstance(record.get("dangerous"), bool):  # schema 1 always had it
        raise UnsafeModelError(f"{what} cannot be interpreted: no verdict")
    findings = [
        f"{f.get('file')} imports {f.get('call')}"
        for f in record.get("findings") or []
        if isinstance(f, dict) and isinstance(f.get("file"), str) and isinstance(f.get("call"), str)
    ]
    if record["dangerous"]:
        raise UnsafeModelError(_named(findings, f"{what} found pickles that can run code when loaded") if findings
                               else f"{what} found pickles that can run code when loaded")
    files = record.get("files")
    if not isinstance(files, list):
        raise UnsafeModelError(f"{what} cannot be interpreted: no file list")
    uninspected = [str(f.get("path")) for f in files if not (isinstance(f, dict) and f.get("inspected") is True)]
    if uninspected:
        raise UnsafeModelError(_named(uninspected, f"{what} could not fully inspect files"))


def _check_summary_v2(record: dict[str, Any], options: ScanOptions, what: str) -> None:
    verdict = record.get("verdict")
    if record.get("schema") != SUMMARY_SCHEMA or verdict not in (SAFE, INCOMPLETE, DANGEROUS):
        raise UnsafeModelError(f"{what} cannot be interpreted (schema {record.get('schema')!r}, verdict {verdict!r}): "
                               "refusing rather than guessing; pull with a newer ocimodel")
    findings, incomplete = record.get("findings"), record.get("incomplete")
    if not isinstance(findings, list) or not isinstance(incomplete, list):
        raise UnsafeModelError(f"{what} cannot be interpreted: findings missing")
    held: list[str] = []
    for f in findings:
        if not isinstance(f, dict):
            raise UnsafeModelError(f"{what} cannot be interpreted: a finding is not an object")
        where = _where(str(f.get("file")), str(f.get("location") or ""))
        if f.get("kind") == "global" and f.get("known") is False and f.get("loads") in options.allow.extra:
            continue  # off the allow-list at push, allowed by this pull
        held.append(f"{where} imports {f.get('call')}" if f.get("kind") == "global" else f"{where}: {f.get('reason')}")
    if held:
        raise UnsafeModelError(_named(held, f"{what} found files that can run code when loaded"))
    lines = [f"{_where(str(i.get('file')), str(i.get('location') or ''))}: {i.get('reason')}" if isinstance(i, dict) else str(i)
             for i in incomplete]
    if lines:
        raise UnsafeModelError(_named(lines, f"{what} could not fully inspect files"))
    if verdict != SAFE and not findings:
        raise UnsafeModelError(f"{what} says {verdict} without saying why: refusing")
