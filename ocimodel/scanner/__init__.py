"""Model safety scanner: finds what loading a model file could execute, without loading it.

A file is judged by what ``pickle.load``, ``torch.load``, ``joblib.load`` or
``numpy.load(allow_pickle=True)`` would do with it: pickles (raw, joblib, PyTorch zip and
legacy checkpoints, object numpy arrays, pickles inside zip/tar and compressed streams) are
walked opcode by opcode, never unpickled, and every global they would import must be on a
reviewed allow-list (:mod:`.allowlist`, judged by :mod:`.rules`). Verdicts: ``safe``,
``dangerous`` or ``incomplete`` (not fully inspected). Standard library only.

The modules: :mod:`.scanner` (a file, its format and containers, walked recursively),
:mod:`.formats` (telling formats apart), the pickle walker (:mod:`.pickle_walk` over
:mod:`.pickle_opcodes`, :mod:`.pickle_stack`, :mod:`.pickle_input`, :mod:`.pickle_values`),
:mod:`.numpy_arrays`, :mod:`.zipcheck`, :mod:`.regions`, :mod:`.limits`, :mod:`.report`;
and the policies built on it: :mod:`.refusals` (refusing a model), :mod:`.summary` (the
record a push stores), :mod:`.remote` (scanning a model where it is stored).

    report = scan_path(Path("model/"))
    print(format_report(report))
    sys.exit(0 if report.verdict == "safe" else 5)
"""

from .formats import HEAD_BYTES, header_length
from .limits import ScanLimits
from .local import scan_bytes, scan_file, scan_files, scan_path, scan_stream
from .report import DANGEROUS, INCOMPLETE, SAFE, FileScan, Finding, GlobalRef, ScanReport, format_report
from .rules import AllowList, classify
from .scanner import ScanOptions, pickle_named

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
    "scan_files",
    "scan_path",
    "scan_stream",
]
