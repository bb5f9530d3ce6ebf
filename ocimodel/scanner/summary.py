"""The scan record push stores in a model config (``config.scan``), and a pull's reading of it.

The record is the publisher's claim: a pull with ``--deny-unsafe`` refuses early (before any
download) a model whose record says a file is dangerous or was not fully inspected, and
refuses a record it cannot interpret (fail closed); a missing or clean record proves nothing,
and the downloaded bytes are scanned anyway.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..config import ModelConfig
from .refusals import UnsafeModelError, named, where
from .report import DANGEROUS, INCOMPLETE, SAFE, ScanReport
from .scanner import DEFAULT_OPTIONS, ScanOptions

SUMMARY_SCHEMA = 2  # the shape of config.scan this version writes (1: before verdicts)


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


def check_config_scan(config: ModelConfig | None, options: ScanOptions = DEFAULT_OPTIONS) -> None:
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
        raise UnsafeModelError(named(findings, f"{what} found pickles that can run code when loaded") if findings
                               else f"{what} found pickles that can run code when loaded")
    files = record.get("files")
    if not isinstance(files, list):
        raise UnsafeModelError(f"{what} cannot be interpreted: no file list")
    uninspected = [str(f.get("path")) for f in files if not (isinstance(f, dict) and f.get("inspected") is True)]
    if uninspected:
        raise UnsafeModelError(named(uninspected, f"{what} could not fully inspect files"))


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
        at = where(str(f.get("file")), str(f.get("location") or ""))
        if f.get("kind") == "global" and f.get("known") is False and f.get("loads") in options.allow.extra:
            continue  # off the allow-list at push, allowed by this pull
        held.append(f"{at} imports {f.get('call')}" if f.get("kind") == "global" else f"{at}: {f.get('reason')}")
    if held:
        raise UnsafeModelError(named(held, f"{what} found files that can run code when loaded"))
    lines = [f"{where(str(i.get('file')), str(i.get('location') or ''))}: {i.get('reason')}" if isinstance(i, dict) else str(i)
             for i in incomplete]
    if lines:
        raise UnsafeModelError(named(lines, f"{what} could not fully inspect files"))
    if verdict != SAFE and not findings:
        raise UnsafeModelError(f"{what} says {verdict} without saying why: refusing")
