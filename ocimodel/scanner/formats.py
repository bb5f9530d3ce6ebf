"""Telling a file's format from its first bytes, and which formats a header alone decides.

Formats are told by content, never by name (a name only says whether a loader would unpickle
it): zip, tar, compressed streams, numpy, safetensors, GGUF, ONNX, text. For safetensors,
GGUF, plain numpy and ONNX the header decides the scan (:func:`header_length`), so a 10 GiB
blob in a registry is judged from its first bytes.
"""

from __future__ import annotations

import ast
import struct
import tarfile
from pathlib import PurePosixPath
from typing import Any

from .limits import Budget, ScanLimitError, ScanLimits
from .numpy_arrays import npy_holds_objects
from .pickle_values import Region
from .pickle_walk import walk_pickles
from .rules import AllowList

HEAD_BYTES = 4096  # what formats are told by (and what header_length needs at least)
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors loader refuses larger headers


def has_zip_end(region: Region) -> bool:
    """An end-of-central-directory record in the last 64 KiB: a zip, wherever it starts."""
    if region.size < 22:
        return False
    tail = region.pread(max(0, region.size - (1 << 16) - 22), (1 << 16) + 22)
    return b"PK\x05\x06" in tail


def is_tar(head: bytes) -> bool:
    """A first block tarfile accepts (valid checksum), magic or not (torch's legacy loader
    tries tarfile first, and v7 tar has no magic)."""
    if len(head) < 512 or not head[:512].strip(b"\0"):
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def compression(head: bytes) -> str | None:
    """The compression format whose magic bytes start ``head``, or None."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:2] == b"\x5d\x00":
        return "lzma"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:2] == b"ZF":
        return "joblib-zfile"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


def is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits the file, then a JSON object."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(_SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{"


def looks_like_protobuf(head: bytes) -> bool:
    """A first field whose tag is a small field number with a valid wire type."""
    if not head:
        return False
    tag = head[0]
    return tag & 0x80 == 0 and 1 <= tag >> 3 <= 15 and tag & 7 in (0, 1, 2, 5)


def is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a character cut at the end of the sample is allowed)."""
    if b"\x00" in head:
        return False
    for cut in range(4):  # a multi-byte character split by the end of the sample
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def npy_header(region: Region, limit: int) -> tuple[int, Any]:
    """``(data offset, descr)`` of an .npy file; ValueError if numpy could not read it either."""
    head = region.pread(0, 12)
    major = head[6] if len(head) > 6 else 0
    if major not in (1, 2, 3):
        raise ValueError(f"npy format version {major}")
    start, fmt = (10, "<H") if major == 1 else (12, "<I")
    (length,) = struct.unpack(fmt, head[8:start])
    if length > limit:
        raise ScanLimitError(f"npy header of {length} bytes: over the scan limit 'header'")
    text = region.pread(start, length).decode("utf-8" if major >= 3 else "latin-1")
    header = ast.literal_eval(text)
    if not isinstance(header, dict) or "descr" not in header:
        raise ValueError("npy header is not a dict with 'descr'")
    return start + length, header["descr"]


def header_length(head: bytes, name: str) -> int | None:
    """How many leading bytes of content starting with ``head`` (at least its first 4096
    bytes, or all of it if shorter) decide its scan, for formats judged from a header:
    safetensors, GGUF, plain numpy, ONNX. ``None`` when the whole content may be needed
    (pickles, containers, compressed streams, object arrays, a header that is also the start
    of a pickle, text...).

    When :func:`scan_bytes` of that prefix is safe, it is the scan of the whole content:
    a 10 GiB safetensors blob needs its header only.
    """
    region = BytesRegion(head)
    walk = walk_pickles(region, 0, allow=AllowList(), budget=Budget(ScanLimits()), first_only=True)
    if walk.imports or walk.error is None or walk.limit or "truncated" in walk.error or "exhausted" in walk.error:
        return None  # a pickle, or one that may go on past the header
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or is_tar(head) or compression(head):
        return None
    if head[:4] == b"GGUF":
        return len(head)
    if head[:6] == b"\x93NUMPY" and len(head) >= 12:
        try:
            offset, descr = npy_header(region, len(head))
        except Exception:  # noqa: BLE001 - undecided: read it all
            return None
        return offset if npy_holds_objects(descr) is False else None
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _SAFETENSORS_MAX_HEADER:
        return max(len(head), 8 + struct.unpack("<Q", head[:8])[0])
    if PurePosixPath(name).suffix.lower() == ".onnx" and looks_like_protobuf(head):
        return len(head)
    return None


class BytesRegion:
    """A region over bytes in memory (a member already read, a test input)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def pread(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n] if offset >= 0 else b""
