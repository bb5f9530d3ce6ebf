"""Model safety scanner: finds what loading a model file could execute, without loading it.

Pickle-based formats (raw pickle, joblib, PyTorch zip and legacy checkpoints, object numpy
arrays, pickles inside zip/tar and compressed streams) are walked opcode by opcode, never
unpickled, and every global they would import is classified dangerous, allow-listed or unknown
(:mod:`.policy`). Formats that cannot carry code (safetensors, GGUF, ONNX, plain numpy, text)
are reported as safe by construction. Standard library only.

    report = scan_path(Path("model/"))
    print(format_report(report))
    sys.exit(1 if report.dangerous else 0)
"""

from .policy import classify
from .report import FileScan, GlobalRef, ScanReport, format_report
from .scanner import HEAD_BYTES, header_length, scan_bytes, scan_file, scan_path, scan_stream

__all__ = [
    "FileScan",
    "GlobalRef",
    "HEAD_BYTES",
    "ScanReport",
    "classify",
    "format_report",
    "header_length",
    "scan_bytes",
    "scan_file",
    "scan_path",
    "scan_stream",
]
