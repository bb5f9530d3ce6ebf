"""Scanning a model where it is stored, writing no model file anywhere.

Each blob is read through the Target's verifying reader: a format judged from its header is
scanned from that header alone (the rest not downloaded, so ``verified=False``); anything else
up to :data:`MAX_BLOB_SCAN_BYTES` is read (small blobs into memory, big ones into an anonymous
temp file deleted on close), checked against its digest and scanned.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from typing import IO

from ..descriptor import Descriptor
from ..model import ResolvedModel, plan_files
from ..storage import Target
from .formats import HEAD_BYTES, header_length
from .local import scan_bytes, scan_stream
from .report import FileScan, Finding, ScanReport
from .scanner import DEFAULT_OPTIONS, ScanOptions

#: Largest blob :func:`scan_model` reads to scan. Larger blobs are judged from their header
#: when their format allows it (safetensors, GGUF, ONNX, plain numpy), else reported as not
#: fully inspected: pull them, then scan the directory.
MAX_BLOB_SCAN_BYTES = 64 << 30  # bounded by temp disk, not memory (see _scan_blob)
_SPOOL_IN_MEMORY = 32 << 20


def scan_model(
    model: ResolvedModel, *, max_blob_bytes: int = MAX_BLOB_SCAN_BYTES, options: ScanOptions = DEFAULT_OPTIONS
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
