"""Scan files, directories and blobs for model formats that can run code when loaded.

Formats are told by their content (magic bytes), the name only breaking ties. Nothing is ever
unpickled or imported: pickles are walked opcode by opcode (:mod:`._pickle`), containers (zip,
tar) and compressed streams are opened with the standard library under size caps, and every
failure to read becomes an ``error`` on the file's :class:`FileScan`, never an exception.
"""

from __future__ import annotations

import ast
import bz2
import io
import json
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from ..errors import UsageError
from ._pickle import PickleWalkError, Walk, walk_pickles
from .policy import classify
from .report import FileScan, GlobalRef, ScanReport

MAX_READ_BYTES = 4 << 30  # bytes read from one file or member while walking it
MAX_DECOMPRESSED = 1 << 30  # decompressed bytes kept from one compressed stream
MAX_MEMBER_BYTES = 1 << 30  # declared size above which a zip/tar member is not opened
MAX_MEMBERS = 10_000  # members inspected per archive
MAX_DEPTH = 4  # containers and compressed streams inside one another
MAX_HEADER_BYTES = 100 << 20  # safetensors JSON header / npy header
MAX_LINE = 64 << 20  # one text line of a protocol-0 pickle
SKIP_READS_OVER = 8 << 20  # reads larger than this (pickle payloads) are stepped over, not read
_CHUNK = 1 << 20
HEAD_BYTES = 4096  # what formats are told by (and what header_length needs at least)

_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".sav", ".p", ".dat"}
# Torch archive members that torch reads as raw bytes, never unpickles.
_TORCH_RAW_DIRS = ("data/", ".data/")
_LEGACY_TORCH_INTERLEAVED = {"storages", "tensors"}  # legacy tar: pickles between raw bytes
_PICKLE_OPCODES = frozenset(b"(]})cINFSVLKJGUTXpghqjeaisdbtlo.0120\x80\x8c\x95")


class _Skipped:
    """Stands for ``n`` bytes stepped over: it has their length and nothing else.

    Used as a bytes payload it is pushed like one; anything that needs its content (a
    string decode, a module name) fails, and the walk reports that rather than guess.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _Bounded:
    """A seekable read-only view of ``size`` bytes that refuses to read past ``limit``."""

    def __init__(self, raw: IO[bytes], size: int, limit: int = MAX_READ_BYTES, base: int = 0) -> None:
        self.raw, self.size, self.limit, self.base, self.pos = raw, size, limit, base, 0
        raw.seek(base)

    def _check(self, end: int) -> None:
        if end > self.limit:
            raise PickleWalkError(f"more than {self.limit >> 20} MiB to read: stopped at the scan limit")

    def read(self, n: int | None = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        if n > SKIP_READS_OVER and self.raw.seekable():
            # A pickle's bulk payload (BINBYTES8 of a tensor or array): the walk needs its
            # length, never its bytes, so step over it instead of holding GiBs in memory.
            self.pos += n
            self.raw.seek(self.base + self.pos)
            return _Skipped(n)  # type: ignore[return-value]
        self._check(self.pos + n)
        data = self.raw.read(n) if n > 0 else b""
        self.pos += len(data)
        return data

    def readline(self, n: int | None = -1) -> bytes:
        n = MAX_LINE if n is None or n < 0 else min(n, MAX_LINE)
        n = min(n, self.size - self.pos)
        self._check(self.pos + n)
        data = self.raw.readline(n) if n > 0 else b""
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, min(base + offset, self.size))
        self.raw.seek(self.base + self.pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def head(self, n: int = HEAD_BYTES) -> bytes:
        self.seek(0)
        data = self.read(n)
        self.seek(0)
        return data


class _Scan:
    """What one top-level file's scan accumulates, members and nested streams included."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.refs: dict[tuple[str, str, str], GlobalRef] = {}
        self.errors: list[str] = []
        self.safe = True  # every leaf seen so far is safe by construction

    def error(self, location: str, message: str) -> None:
        self.safe = False
        self.errors.append(f"{location}: {message}" if location else message)

    def add_refs(self, refs: list[tuple[str, str, str | None]], location: str) -> None:
        for module, name, forced in refs:
            key = (module, name, location)
            if key in self.refs:
                continue
            if forced:
                dangerous, allowed, reason = True, False, forced
            else:
                dangerous, allowed, reason = classify(module, name)
            self.refs[key] = GlobalRef(module, name, dangerous, reason, allowed, location)

    def result(self, fmt: str) -> FileScan:
        refs = list(self.refs.values())
        errors = self.errors[:5] + ([f"and {len(self.errors) - 5} more"] if len(self.errors) > 5 else [])
        return FileScan(
            path=self.path,
            format=fmt,
            safe_by_construction=self.safe and not refs,
            globals=refs,
            dangerous=[g for g in refs if g.dangerous],
            error="; ".join(errors) or None,
        )


# -- detection and dispatch -----------------------------------------------------------------


def _scan(acc: _Scan, src: _Bounded, name: str, location: str, depth: int) -> str:
    """Scan ``src`` (named ``name``), record findings in ``acc``; return the format's name."""
    if depth > MAX_DEPTH:
        acc.error(location, f"nested more than {MAX_DEPTH} containers deep: not inspected")
        return "nested"
    head = src.head()
    suffix = PurePosixPath(name).suffix.lower()
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _scan_zip(acc, src, location, depth)
    if len(head) >= 262 and head[257:262] == b"ustar":
        return _scan_tar(acc, src, location, depth)
    kind = _compression(head)
    if kind == "lz4":
        acc.error(location, "lz4-compressed: cannot inspect with the standard library; treat as untrusted")
        return "lz4"
    if kind:
        inner = _inflate(acc, src, kind, location)
        if inner is not None:
            return f"{kind}+" + _scan(acc, _Bounded(io.BytesIO(inner), len(inner)), name, location, depth + 1)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:6] == b"\x93NUMPY":
        return _scan_npy(acc, src, location)
    if _is_safetensors(head):
        return _scan_safetensors(acc, src, location)
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return _scan_pickle(acc, src, name, location)
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        acc.safe = False  # Keras HDF5 may hold marshalled Lambda-layer code; not inspected
        return "hdf5"
    if suffix == ".onnx":
        if not _looks_like_protobuf(head):
            acc.error(location, "named .onnx but not a protobuf message")
        return "onnx"
    if head[:1] and head[0] in _PICKLE_OPCODES:  # protocol 0/1: try the walk, keep it if it ends
        walk = walk_pickles(src)
        if walk.error is None or suffix in _PICKLE_SUFFIXES:
            return _record_walk(acc, walk, name, location)
        src.seek(0)
    if head and _is_text(head):
        return "json" if suffix == ".json" else "text"
    if suffix in _PICKLE_SUFFIXES:
        return _scan_pickle(acc, src, name, location)
    acc.safe = False
    return "unknown"


def _scan_pickle(acc: _Scan, src: _Bounded, name: str, location: str) -> str:
    return _record_walk(acc, walk_pickles(src), name, location)


def _record_walk(acc: _Scan, walk: Walk, name: str, location: str) -> str:
    acc.safe = False
    acc.add_refs(walk.refs, location)
    if walk.error:
        acc.error(location, walk.error)
    elif walk.trailing and PurePosixPath(name).name in _LEGACY_TORCH_INTERLEAVED:
        acc.error(location, f"legacy torch {name}: {walk.trailing} bytes after the first records not inspected")
    modules = {m.split(".", 1)[0] for m, _, _ in walk.refs}
    if "joblib" in modules or name.endswith(".joblib"):
        return "joblib"
    return "pytorch-pickle" if "torch" in modules else "pickle"


def _compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


def _inflate(acc: _Scan, src: _Bounded, kind: str, location: str) -> bytes | None:
    """Decompress ``src`` under :data:`MAX_DECOMPRESSED`; ``None`` if it is not that format."""
    src.seek(0)
    out = bytearray()
    try:
        if kind in ("gzip", "zlib"):
            z = zlib.decompressobj(31 if kind == "gzip" else 15)
            while not z.eof and len(out) <= MAX_DECOMPRESSED:
                chunk = z.unconsumed_tail or src.read(_CHUNK)
                if not chunk:
                    break
                out += z.decompress(chunk, MAX_DECOMPRESSED + 1 - len(out))
            complete = z.eof
        else:
            d = bz2.BZ2Decompressor() if kind == "bz2" else lzma.LZMADecompressor()
            while not d.eof and len(out) <= MAX_DECOMPRESSED:
                chunk = src.read(_CHUNK) if d.needs_input else b""
                if d.needs_input and not chunk:
                    break
                out += d.decompress(chunk, MAX_DECOMPRESSED + 1 - len(out))
            complete = d.eof
    except (zlib.error, OSError, EOFError, lzma.LZMAError, PickleWalkError) as exc:
        if not out:
            return None  # magic bytes by chance: not that format after all
        acc.error(location, f"{kind} stream broken after {len(out)} bytes: {exc}")
        return bytes(out)
    if len(out) > MAX_DECOMPRESSED:
        acc.error(location, f"{kind} stream decompresses past {MAX_DECOMPRESSED >> 20} MiB: rest not inspected")
        del out[MAX_DECOMPRESSED:]
    elif not complete:
        if not out:
            return None
        acc.error(location, f"{kind} stream truncated after {len(out)} bytes")
    return bytes(out)


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return 2 <= size <= MAX_HEADER_BYTES and head[8:9] == b"{"


def _scan_safetensors(acc: _Scan, src: _Bounded, location: str) -> str:
    (size,) = struct.unpack("<Q", src.read(8))
    try:
        header = json.loads(src.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, RecursionError) as exc:
        acc.error(location, f"invalid safetensors header: {exc}")
    return "safetensors"


def _scan_npy(acc: _Scan, src: _Bounded, location: str) -> str:
    head = src.read(12)
    major = head[6] if len(head) > 6 else 0
    start, fmt = (10, "<H") if major == 1 else (12, "<I")
    try:
        (length,) = struct.unpack(fmt, head[8:start])
        if length > MAX_HEADER_BYTES:
            raise ValueError("header too large")
        src.seek(start)
        header = ast.literal_eval(src.read(length).decode("utf-8" if major >= 3 else "latin-1"))
        descr = header["descr"]
    except Exception as exc:  # literal_eval raises many kinds; it never executes code
        acc.error(location, f"invalid npy header: {exc}")
        return "npy"
    if not _has_object(descr):
        return "npy"
    _record_walk(acc, walk_pickles(src), "", location)  # object arrays are stored as a pickle
    return "npy+pickle"


def _has_object(descr: object) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, (list, tuple)):
        return any(_has_object(part) for part in descr)
    return False


def _looks_like_protobuf(head: bytes) -> bool:
    """A first field whose tag is a small field number with a valid wire type."""
    if not head:
        return False
    tag = head[0]
    return tag & 0x80 == 0 and 1 <= tag >> 3 <= 15 and tag & 7 in (0, 1, 2, 5)


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    for cut in range(4):  # a multi-byte character split by the end of the sample
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


# -- containers -----------------------------------------------------------------------------


def _member_location(location: str, member: str) -> str:
    return f"{location}/{member}" if location else member


def _scan_zip(acc: _Scan, src: _Bounded, location: str, depth: int) -> str:
    try:
        archive = zipfile.ZipFile(src)  # type: ignore[arg-type]
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, PickleWalkError) as exc:
        acc.error(location, f"unreadable zip: {exc}")
        return "zip"
    names = [i.filename for i in infos]
    torch = any(PurePosixPath(n).name == "data.pkl" for n in names)
    fmt = "zip"
    if torch:
        fmt = "torchscript-zip" if any("/code/" in n for n in names) else "pytorch-zip"
    if len(infos) > MAX_MEMBERS:
        acc.error(location, f"{len(infos)} members: only the first {MAX_MEMBERS} inspected")
    for info in infos[:MAX_MEMBERS]:
        inner = info.filename.split("/", 1)[-1] if "/" in info.filename else info.filename
        if torch and inner.startswith(_TORCH_RAW_DIRS) and not inner.endswith(".pkl"):
            continue  # raw tensor storage: read as bytes, never unpickled
        where = _member_location(location, info.filename)
        if info.file_size > MAX_MEMBER_BYTES:
            acc.error(where, f"{info.file_size} bytes uncompressed: too large to inspect")
            continue
        try:
            with archive.open(info) as member:
                _scan(acc, _Bounded(member, info.file_size, MAX_MEMBER_BYTES), info.filename, where, depth + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, zlib.error) as exc:
            acc.error(where, f"unreadable zip member: {exc}")
    return fmt


def _scan_tar(acc: _Scan, src: _Bounded, location: str, depth: int) -> str:
    try:
        archive = tarfile.open(fileobj=src, mode="r:")  # type: ignore[call-overload]
        members: list[tarfile.TarInfo] = []
        for member in archive:
            if len(members) >= MAX_MEMBERS:
                acc.error(location, f"more than {MAX_MEMBERS} members: the rest not inspected")
                break
            members.append(member)
    except (tarfile.TarError, OSError, PickleWalkError) as exc:
        acc.error(location, f"unreadable tar: {exc}")
        return "tar"
    names = {PurePosixPath(m.name).name for m in members}
    fmt = "pytorch-legacy-tar" if {"pickle", "storages"} <= names else "tar"
    for member in members:
        if not member.isfile():
            continue  # links and devices: never extracted, nothing to load
        where = _member_location(location, member.name)
        if member.size > MAX_MEMBER_BYTES:
            acc.error(where, f"{member.size} bytes: too large to inspect")
            continue
        try:
            fileobj = archive.extractfile(member)
            if fileobj is not None:
                _scan(acc, _Bounded(fileobj, member.size, MAX_MEMBER_BYTES), member.name, where, depth + 1)
        except (tarfile.TarError, OSError) as exc:
            acc.error(where, f"unreadable tar member: {exc}")
    return fmt


# -- public entry points --------------------------------------------------------------------


def _scan_top(raw: IO[bytes], size: int, name: str, base: int = 0) -> FileScan:
    acc = _Scan(name)
    try:
        fmt = _scan(acc, _Bounded(raw, size, base=base), name, "", 0)
    except Exception as exc:  # noqa: BLE001 - hostile input must never crash a scan
        acc.error("", f"could not be inspected ({type(exc).__name__}: {exc})")
        fmt = "unknown"
    return acc.result(fmt)


def scan_stream(stream: IO[bytes], name: str) -> FileScan:
    """Scan a binary stream (a pulled blob) named ``name``. Unseekable streams are read into
    memory up to :data:`MAX_DECOMPRESSED` bytes."""
    if not (hasattr(stream, "seekable") and stream.seekable()):
        data = stream.read(MAX_DECOMPRESSED + 1)
        scan = scan_bytes(data[:MAX_DECOMPRESSED], name)
        if len(data) > MAX_DECOMPRESSED:
            rest = "stream longer than the scan limit: rest not inspected"
            scan.error = f"{scan.error}; {rest}" if scan.error else rest
        return scan
    start = stream.tell()
    size = stream.seek(0, 2) - start
    return _scan_top(stream, size, name, base=start)


def header_length(head: bytes, name: str) -> int | None:
    """How many leading bytes a scan reads of content starting with ``head`` (at least the
    first 4096 bytes, or all of it if shorter) when its format is judged from a header alone:
    safetensors, GGUF, numpy, ONNX. ``None`` when the whole content may be needed (pickles,
    containers, compressed streams, text...).

    When :func:`scan_bytes` of just that prefix comes back safe by construction and without
    error, it is the scan of the whole content: a 10 GiB safetensors blob needs its header only.
    """
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or head[257:262] == b"ustar" or _compression(head):
        return None
    if head[:4] == b"GGUF":
        return 4
    if head[:6] == b"\x93NUMPY" and len(head) >= 12:
        start, fmt = (10, "<H") if head[6] == 1 else (12, "<I")
        (length,) = struct.unpack(fmt, head[8:start])
        return start + length if length <= MAX_HEADER_BYTES else None
    if _is_safetensors(head):
        return 8 + struct.unpack("<Q", head[:8])[0]
    if PurePosixPath(name).suffix.lower() == ".onnx" and _looks_like_protobuf(head):
        return len(head)
    return None


def scan_bytes(data: bytes, name: str = "<bytes>") -> FileScan:
    """Scan in-memory content named ``name`` (the name only breaks ties between formats)."""
    return _scan_top(io.BytesIO(data), len(data), name)


def scan_file(path: Path, relpath: str | None = None) -> FileScan:
    """Scan one file, reported under ``relpath`` (default: its name). Never raises."""
    path = Path(path)
    rel = relpath if relpath is not None else path.name
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return FileScan(rel, "special", error="not a regular file: skipped")
        with open(path, "rb") as f:
            return _scan_top(f, info.st_size, rel)
    except OSError as exc:
        return FileScan(rel, "unknown", error=f"cannot read: {exc.strerror or exc}")


def _outside(path: Path, root: Path) -> bool:
    try:
        return not path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return True


def scan_path(path: Path) -> ScanReport:
    """Scan a file, or every file under a directory (``.git`` skipped, symlinks leading out of
    the directory not followed). Raises :class:`UsageError` if ``path`` does not exist."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"scanning {path}: no such file or directory")
    if not path.is_dir():
        return ScanReport([scan_file(path, path.name)])
    root = path.resolve()
    files: list[FileScan] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for entry in dirnames + filenames:
            full = here / entry
            rel = full.relative_to(path).as_posix()
            if full.is_symlink() and _outside(full, root):
                files.append(FileScan(rel, "symlink", error="symlink leading outside the directory: not followed"))
            elif entry in filenames:
                files.append(scan_file(full, rel))
    files.sort(key=lambda f: f.path)
    return ScanReport(files)
