"""Model safety scanner: finds what loading a model file could execute, without loading it.

A file is judged by what ``pickle.load``, ``torch.load``, ``joblib.load`` or
``numpy.load(allow_pickle=True)`` would do with it: pickles (raw, joblib, PyTorch zip and
legacy checkpoints, object numpy arrays, pickles inside zip/tar and compressed streams) are
walked opcode by opcode, never unpickled, and every global they would import must be on a
reviewed allow-list (:mod:`.allowlist`). Verdicts: ``safe``, ``dangerous`` or ``incomplete``
(not fully inspected). Standard library only.

    report = scan_path(Path("model/"))
    print(format_report(report))
    sys.exit(0 if report.verdict == "safe" else 5)
"""

from .limits import ScanLimits
from .policy import AllowList, classify
from .report import DANGEROUS, INCOMPLETE, SAFE, FileScan, Finding, GlobalRef, ScanReport, format_report
from .scanner import (
    HEAD_BYTES,
    ScanOptions,
    header_length,
    pickle_named,
    scan_bytes,
    scan_file,
    scan_path,
    scan_stream,
)

__all__ = [
    "AllowList",
    "DANGEROUS",
    "FileScan",
    "Finding",
    "GlobalRef",
    "HEAD_BYTES",
    "INCOMPLETE",
    "SAFE",
    "ScanLimits",
    "ScanOptions",
    "ScanReport",
    "classify",
    "format_report",
    "header_length",
    "pickle_named",
    "scan_bytes",
    "scan_file",
    "scan_path",
    "scan_stream",
]
