"""Content policies built on the scanner: what a model's files could execute, and its license.

- :func:`scan_files` / :func:`scan_model` scan local files, or a model's blobs straight from
  the registry (in memory, never written to disk; see :data:`MAX_BLOB_SCAN_BYTES`).
- :func:`scan_summary` is the compact, deterministic record push stores in ``config.scan``.
- :func:`refuse_unsafe`, :func:`check_blobs_safe` and :func:`check_config_scan` refuse models
  whose pickles import globals that can run code; :func:`check_license` and
  :func:`check_model_license` refuse models whose SPDX license is not on an allow-list.

Both kinds of refusal are :class:`PolicyError`, a :class:`~ocimodel.errors.VerificationError`
(exit code 5, VERIFICATION): like a signature policy, the content is exactly what its
publisher pushed and a policy says no. INTEGRITY (6) stays for bytes that do not match their
digest or an artifact hostile to ocimodel itself (a path escaping DEST); retrying or another
mirror can fix those, never a policy refusal.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from . import __version__
from .errors import DigestMismatchError, UsageError, VerificationError
from .scan import HEAD_BYTES, FileScan, ScanReport, header_length, scan_bytes, scan_file, scan_stream

if TYPE_CHECKING:
    from .config import ModelConfig
    from .descriptor import Descriptor
    from .reference import Reference
    from .registry.client import RegistryClient
    from .transfer import ResolvedModel

#: Largest blob :func:`scan_model` reads into memory to scan. Larger blobs are judged from
#: their header when their format allows it (safetensors, GGUF, ONNX, numpy), else reported
#: as not inspected: pull them, then scan the directory.
MAX_BLOB_SCAN_BYTES = 64 << 30  # bounded by temp disk, not memory (see _scan_blob)
_SPOOL_IN_MEMORY = 32 << 20
_SHOWN = 5  # findings named in one refusal message


class PolicyError(VerificationError):
    """A model refused by a content policy (exit 5, VERIFICATION)."""


class UnsafeModelError(PolicyError):
    """The model's pickles import globals that can run code when loaded (exit 5)."""


class LicenseError(PolicyError):
    """The model's SPDX license is missing or not on the allow-list (exit 5)."""


# -- scanning -------------------------------------------------------------------------------


def scan_files(files: Iterable[tuple[str, Path]], subject: str | None = None) -> ScanReport:
    """Scan local files, each reported under its title; a path given twice is read once."""
    seen: dict[Path, FileScan] = {}
    scans = []
    for title, path in files:
        known = seen.get(path)
        if known is None:
            known = seen[path] = scan_file(path, title)
            scans.append(known)
        else:
            scans.append(_retitled(known, title))
    return ScanReport(scans, subject=subject)


def _retitled(scan: FileScan, title: str) -> FileScan:
    return FileScan(title, scan.format, scan.safe_by_construction, scan.globals, scan.dangerous, scan.error, scan.verified)


def scan_model(
    registry: RegistryClient, model: ResolvedModel, *, max_blob_bytes: int = MAX_BLOB_SCAN_BYTES
) -> ScanReport:
    """Scan every file of a resolved model from the registry, writing no model file anywhere.

    Each blob is streamed: its first bytes tell the format; a format judged from its header
    (safetensors, GGUF, ONNX, numpy) is scanned from that header and the rest not downloaded
    (``verified=False``); anything else up to ``max_blob_bytes`` is read (small blobs into
    memory, big ones into an anonymous temp file deleted on close), checked
    against its digest (:class:`DigestMismatchError` if it does not match) and scanned
    (``verified=True``); larger blobs are reported as not inspected. Titles are validated as
    for a pull, so a hostile artifact is refused whole.
    """
    from .transfer import plan_files  # not at import time: transfer may call into this module

    by_digest: dict[str, FileScan] = {}
    scans = []
    for item in plan_files(model):
        known = by_digest.get(item.layer.digest)
        if known is None:
            known = by_digest[item.layer.digest] = _scan_blob(registry, model.reference, item.layer, item.title, max_blob_bytes)
            scans.append(known)
        else:
            scans.append(_retitled(known, item.title))
    return ScanReport(scans, subject=str(model.reference))


class _Chunks:
    """Reads a blob's chunk iterator in pieces of a chosen size, hashing what it hands out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.hash = hashlib.sha256()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the blob)."""
        parts, have = [self._pending], len(self._pending)
        while have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        data, self._pending = data[:n], data[n:]
        self.hash.update(data)
        return data

    def read_into(self, out: IO[bytes]) -> None:
        """Everything left, appended to ``out``."""
        for chunk in (self._pending, *self._chunks):
            self.hash.update(chunk)
            out.write(chunk)
        self._pending = b""


def _scan_blob(registry: RegistryClient, ref: Reference, layer: Descriptor, title: str, limit: int) -> FileScan:
    with registry.open_blob(ref, layer) as blob:
        reader = _Chunks(blob.chunks())
        head = reader.read(min(layer.size, HEAD_BYTES))
        needed = header_length(head, title)
        if needed is not None and len(head) < layer.size:
            prefix = head + reader.read(min(needed, layer.size) - len(head)) if needed > len(head) else head
            if len(prefix) < layer.size:
                scan = scan_bytes(prefix, title)
                if scan.safe_by_construction and scan.error is None:
                    scan.verified = False  # the rest was not downloaded: its digest is unchecked
                    return scan
            head = prefix
        if layer.size > limit:
            return FileScan(
                title, "unknown", verified=False,
                error=f"{layer.size} bytes, over the {limit >> 20} MiB scan limit: "
                "not inspected (pull it, then scan the directory)",
            )
        # Small blobs stay in memory; big ones go to an anonymous temp file (gone when closed)
        # that the scanner can seek over (it steps over bulk payloads), so memory stays flat.
        spool: IO[bytes] = io.BytesIO() if layer.size <= _SPOOL_IN_MEMORY else tempfile.TemporaryFile()
        with spool as data:
            data.write(head)
            reader.read_into(data)
            actual = "sha256:" + reader.hash.hexdigest()
            if actual != layer.digest:
                raise DigestMismatchError(
                    f"blob {layer.digest[:19]} ({title}): digest mismatch (expected {layer.digest}, got {actual}); "
                    "refusing it"
                )
            data.seek(0)
            scan = scan_stream(data, title)
    scan.verified = True
    return scan


# -- the record stored at push ---------------------------------------------------------------


def scan_summary(report: ScanReport) -> dict[str, Any]:
    """The compact record push stores in the model config's ``scan`` field.

    Deterministic (no time, everything sorted) so that pushes with ``SOURCE_DATE_EPOCH`` stay
    reproducible: per file its format, whether it is safe by construction and was fully
    inspected, and how many globals are unknown; every dangerous global as a finding.
    """
    files = sorted(report.files, key=lambda f: f.path)
    findings = sorted(
        ({"file": f.path, "location": g.location, "call": g.call, "reason": g.reason} for f in files for g in f.dangerous),
        key=lambda d: (d["file"], d["location"], d["call"]),
    )
    return {
        "scanner": {"name": "ocimodel", "version": __version__},
        "dangerous": report.dangerous,
        "files": [
            {"path": f.path, "format": f.format, "safe": f.safe_by_construction, "inspected": f.error is None,
             "unknown": len(f.unknown)}
            for f in files
        ],
        "findings": findings,
    }


# -- unsafe content ---------------------------------------------------------------------------


def _named(findings: list[str], what: str) -> str:
    more = f"; and {len(findings) - _SHOWN} more" if len(findings) > _SHOWN else ""
    return f"{what}: " + "; ".join(findings[:_SHOWN]) + more


def dangerous_findings(report: ScanReport) -> list[str]:
    """One line per dangerous global: ``file[:member] imports module.name (why)``."""
    return [
        f"{f.path}{':' + g.location if g.location else ''} imports {g.call} ({g.reason})"
        for f in report.files
        for g in f.dangerous
    ]


def refuse_unsafe(report: ScanReport, *, strict: bool = False) -> None:
    """Raise :class:`UnsafeModelError` (exit 5) naming each file and call if ``report`` found
    a dangerous global; with ``strict``, also if a file could not be fully inspected."""
    findings = dangerous_findings(report)
    if findings:
        raise UnsafeModelError(_named(findings, "refusing a model whose pickles can run code when loaded"))
    if strict and report.errors:
        lines = [f"{f.path}: {f.error}" for f in report.errors]
        raise UnsafeModelError(_named(lines, "refusing a model with files that could not be inspected (strict)"))


def check_blobs_safe(files: Iterable[tuple[str, Path]], *, strict: bool = False) -> ScanReport:
    """Scan ``(title, path)`` pairs (a pull's verified staged files) and raise
    :class:`UnsafeModelError` (exit 5) naming file and call if any can run code when loaded.

    Meant to run before the files are moved into the destination, so a refused model never
    reaches it. Returns the report when nothing is refused.
    """
    report = scan_files(files)
    refuse_unsafe(report, strict=strict)
    return report


def check_config_scan(config: ModelConfig | None) -> None:
    """Refuse early (before any download) a model whose push-time scan, as recorded in its
    config, found dangerous globals. Only a shortcut: the record is the publisher's claim, so
    a missing or clean record proves nothing and the downloaded bytes must still be scanned."""
    record = config.scan if config is not None else None
    if not (isinstance(record, dict) and record.get("dangerous") is True):
        return
    findings = [
        f"{f.get('file')} imports {f.get('call')}"
        for f in record.get("findings") or []
        if isinstance(f, dict) and isinstance(f.get("file"), str) and isinstance(f.get("call"), str)
    ]
    what = "refusing a model whose push-time scan found pickles that can run code when loaded"
    raise UnsafeModelError(_named(findings, what) if findings else what)


# -- licenses ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_OPERATORS = {"AND", "OR", "WITH"}


def _tokens(expression: str) -> list[str]:
    out, pos = [], 0
    expression = expression.rstrip()
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:  # pragma: no cover - the pattern matches any non-space text
            break
        token = match.group(1)
        out.append(token.upper() if token.upper() in _OPERATORS else token)
        pos = match.end()
    return out


class _Parser:
    """SPDX license expressions: ``id [WITH exception]``, AND (binds tighter), OR, parentheses.

    A node is ``("id", "gpl-2.0-only with classpath-exception-2.0")`` (lowercase; an exception
    is part of the id), ``("and", [nodes])`` or ``("or", [nodes])``.
    """

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.pos = 0

    def parse(self) -> tuple[str, Any]:
        if not self.tokens:
            raise ValueError("empty expression")
        node = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]!r}")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("ends too early")
        self.pos += 1
        return token

    def _joined(self, operator: str, part: Any) -> tuple[str, Any]:
        nodes = [part()]
        while self._peek() == operator:
            self.pos += 1
            nodes.append(part())
        return nodes[0] if len(nodes) == 1 else (operator.lower(), nodes)

    def _or(self) -> tuple[str, Any]:
        return self._joined("OR", self._and)

    def _and(self) -> tuple[str, Any]:
        return self._joined("AND", self._simple)

    def _simple(self) -> tuple[str, Any]:
        token = self._take()
        if token == "(":
            node = self._or()
            if self._take() != ")":
                raise ValueError("unbalanced parentheses")
            return node
        if token in _OPERATORS or token == ")":
            raise ValueError(f"unexpected {token!r}")
        if self._peek() == "WITH":
            self.pos += 1
            exception = self._take()
            if exception in _OPERATORS or exception in "()":
                raise ValueError(f"WITH followed by {exception!r}")
            token = f"{token} with {exception}"
        return ("id", token.lower())


def _allowed(node: tuple[str, Any], allowed: set[str]) -> bool:
    kind, value = node
    if kind == "id":
        return value in allowed
    test = any if kind == "or" else all
    return test(_allowed(n, allowed) for n in value)


def _ids(node: tuple[str, Any]) -> list[str]:
    kind, value = node
    return [value] if kind == "id" else [i for n in value for i in _ids(n)]


def _normalised(entries: Sequence[str]) -> list[str]:
    out = []
    for entry in entries:
        for part in entry.split(","):
            words = _tokens(part)
            if not words:
                raise UsageError(f"empty license in the allow-list {list(entries)!r}")
            if any(w in ("AND", "OR", "(", ")") for w in words):
                raise UsageError(f"allow-list entry {part.strip()!r} must be one license id (optionally 'ID WITH EXCEPTION'), not an expression")
            out.append(" ".join(w.lower() for w in words))
    return out


def check_license(license: str | None, allowed: Sequence[str]) -> None:
    """Raise :class:`LicenseError` (exit 5) unless the SPDX expression ``license`` is allowed.

    An empty ``allowed`` means no policy. Otherwise: ids compare case-insensitively; ``A OR B``
    is allowed if any branch is; ``A AND B`` only if every part is; ``ID WITH EXCEPTION`` is one
    id (list it whole: ``--allow-license 'GPL-2.0-only WITH Classpath-exception-2.0'``);
    parentheses group. A missing license, or one that cannot be parsed, is refused.
    Allow-list entries may also be comma-separated (``MIT,Apache-2.0``).
    """
    if not allowed:
        return
    accepted = _normalised(allowed)
    shown = ", ".join(dict.fromkeys(allowed))
    if license is None or not license.strip():
        raise LicenseError(f"the model declares no license; the allow-list requires one of: {shown}")
    try:
        tree = _Parser(license).parse()
    except ValueError as exc:
        raise LicenseError(f"the model's license {license!r} is not a valid SPDX expression ({exc}); allowed: {shown}") from None
    if _allowed(tree, set(accepted)):
        return
    missing = [i for i in dict.fromkeys(_ids(tree)) if i not in accepted]
    raise LicenseError(
        f"the model's license {license!r} is not allowed ({', '.join(missing)} not on the allow-list: {shown})"
    )


def model_license(config: ModelConfig | None, annotations: Mapping[str, str]) -> str | None:
    """The model's SPDX license: from its config, else the manifest's ``licenses`` annotation
    (artifacts not pushed by ocimodel)."""
    from .descriptor import ANNOTATION_LICENSES

    if config is not None and config.license:
        return config.license
    return annotations.get(ANNOTATION_LICENSES) or None


def check_model_license(model: ResolvedModel, allowed: Sequence[str]) -> None:
    """:func:`check_license` on a resolved model (nothing downloaded yet)."""
    check_license(model_license(model.config, model.manifest.annotations), allowed)
