"""Scan files, directories and blobs for what loading them could execute.

A file is judged by what a loader would do with it. Every file is first walked as a pickle
from its first byte (``pickle.load``, legacy ``torch.load``, ``joblib.load`` and
``numpy.load(allow_pickle=True)`` all start there, whatever the name); then its format is
told from its content and scanned as such (zip and tar members, compressed streams, the
pickle inside an object ``.npy``). A file whose first bytes are a valid header of another
format *and* a pickle that imports anything is a polyglot: dangerous.

Verdicts (:class:`~.report.FileScan`): ``dangerous`` (a global not on the allow-list, a gadget
pattern, a hostile archive or a polyglot), ``incomplete`` (a file that may be unpickled and
could not be scanned to the end: a limit, an unknown compression, an encrypted member, a
broken stream, or a pickle-named file that is no valid pickle and no known format), else
``safe``. Nothing is ever unpickled or imported; failures become findings, never exceptions.
"""

from __future__ import annotations

import ast
import bz2
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterable

from ..errors import UsageError
from ._numpy import npy_holds_objects
from ._pickle import Region, Walk, walk_pickles
from .limits import Budget, ScanLimitError, ScanLimits
from .policy import AllowList, loaded_name
from .regions import FileRegion, spool
from .report import FileScan, Finding, GlobalRef, ScanReport
from .zipcheck import check_zip

HEAD_BYTES = 4096  # what formats are told by (and what header_length needs at least)
_CHUNK = 1 << 20
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors loader refuses larger headers

#: Names that pickle.load, torch.load, joblib.load or numpy.load would be used on.
PICKLE_SUFFIXES = frozenset({
    ".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz", ".sav", ".p", ".dat",
    ".pkl3", ".pck", ".pcl", ".mar", ".tar", ".data", ".model", ".dill",
})
_TORCH_STORAGE = "data/"  # members torch reads as raw bytes, never unpickles
_POLYGLOT = "polyglot: a valid {fmt} that is also a pickle which imports {what} when pickle.load or torch.load reads it"


@dataclass(frozen=True)
class ScanOptions:
    """What a scan allows beyond the built-in allow-list, and its limits."""

    allow: AllowList = field(default_factory=AllowList)
    limits: ScanLimits = field(default_factory=ScanLimits)

    @classmethod
    def make(cls, allow_globals: Iterable[str] = (), scan_limits: Iterable[str] = ()) -> "ScanOptions":
        """Validate ``--allow-global`` and ``--scan-limit`` values (UsageError if wrong)."""
        return cls(AllowList.with_extra(allow_globals), ScanLimits.parse(scan_limits))


DEFAULT_OPTIONS = ScanOptions()


def pickle_named(name: str, top_level: bool = True) -> bool:
    """True for names a pickle loader is used on: a known suffix anywhere in the name
    (``model.pth.tar``, ``x.pkl.gz``), or no suffix at all for a file (not an archive member:
    torch archives hold ``version``, ``byteorder``... that torch reads as text)."""
    parts = PurePosixPath(name).name.lower().split(".")
    return (top_level and len(parts) == 1) or any(f".{p}" in PICKLE_SUFFIXES for p in parts[1:])


class _Acc:
    """What one top-level file's scan accumulates, members and nested streams included."""

    def __init__(self, path: str, options: ScanOptions) -> None:
        self.path = path
        self.options = options
        self.budget = Budget(options.limits)
        self.refs: dict[tuple[str, str, str], GlobalRef] = {}
        self.hostile: list[Finding] = []
        self.incomplete: list[Finding] = []
        self.pickle = False

    def note(self, bucket: list[Finding], location: str, message: str) -> None:
        finding = Finding(message, location)
        if finding not in bucket:
            bucket.append(finding)

    def add_walk(self, walk: Walk, location: str) -> None:
        for ref in walk.refs:
            key = (ref.module, ref.name, location)
            loads = ".".join(loaded_name(ref.module, ref.name, ref.proto))
            if ref.danger:
                judged = GlobalRef(ref.module, ref.name, True, ref.danger, False, location, loads, known=True)
            elif ref.exempt:
                judged = GlobalRef(ref.module, ref.name, False, ref.exempt, True, location, loads)
            else:
                j = self.options.allow.judge(ref.module, ref.name, ref.proto)
                judged = GlobalRef(ref.module, ref.name, j.dangerous, j.reason, j.allowed, location, loads, j.known)
            known = self.refs.get(key)
            if known is None or (judged.dangerous and not known.dangerous):
                self.refs[key] = judged
        for why in walk.hazards:
            self.note(self.hostile, location, why)

    def result(self, fmt: str) -> FileScan:
        refs = list(self.refs.values())
        return FileScan(
            path=self.path, format=fmt, globals=refs, dangerous=[g for g in refs if g.dangerous],
            hostile=self.hostile, incomplete=self.incomplete, pickle=self.pickle,
        )


# -- one piece of content -----------------------------------------------------------------------


def _describe(walk: Walk) -> str:
    names = sorted({f"{r.module}.{r.name}" for r in walk.refs})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") if names else "nothing"


def _walk_content(acc: _Acc, region: FileRegion, start: int, location: str, first_only: bool = False) -> tuple[Walk, bool]:
    """Walk the pickle(s) at ``start`` as pickle.load reads them and, if joblib's array wrapper
    shows up, as joblib.load reads them too. Returns the walk and whether the content is a
    malformed pickle by every reading (what ran before the error is recorded either way)."""
    allow, budget = acc.options.allow, acc.budget
    walk = walk_pickles(region, start, allow=allow, budget=budget, first_only=first_only)
    acc.add_walk(walk, location)
    if walk.limit:
        acc.note(acc.incomplete, location, walk.error or "scan limit")
    malformed = walk.error is not None and not walk.limit
    if walk.wrapper_global:
        jwalk = walk_pickles(region, start, allow=allow, budget=budget, joblib=True, first_only=True)
        acc.add_walk(jwalk, location)
        if jwalk.limit:
            acc.note(acc.incomplete, location, f"as joblib reads it: {jwalk.error}")
        malformed = malformed and (jwalk.error is not None and not jwalk.limit)
        walk.wrappers = max(walk.wrappers, jwalk.wrappers)
    return walk, malformed


def _scan(acc: _Acc, region: FileRegion, name: str, location: str, depth: int) -> str:
    """Scan ``region`` (content named ``name``) into ``acc``; return its format's name."""
    acc.budget.check_time()
    walk, malformed = _walk_content(acc, region, 0, location)
    try:
        fmt, recognised = _scan_format(acc, region, name, location, depth)
    except ScanLimitError as exc:
        acc.note(acc.incomplete, location, str(exc))
        fmt, recognised = "unknown", False
    is_pickle = walk.imports or walk.pickles > 0
    if recognised and walk.imports:
        acc.note(acc.hostile, location, _POLYGLOT.format(fmt=fmt, what=_describe(walk)))
    if walk.imports and malformed:
        acc.note(acc.incomplete, location, f"malformed pickle, stopped at: {walk.error} (what came before is reported)")
    elif malformed and not recognised and (
        (pickle_named(name, top_level=False) and walk.error_at > 1)  # a pickle suffix, and it started like one
        or (pickle_named(name, top_level=not location) and fmt == "unknown")  # or no suffix, and binary
    ):
        acc.note(acc.incomplete, location, f"named like a pickle but neither a valid pickle ({walk.error}) nor a format ocimodel knows")
    if is_pickle and not recognised:
        acc.pickle = True
        modules = {r.module.split(".", 1)[0] for r in walk.refs}
        if walk.wrapper_global or name.lower().endswith(".joblib"):
            return "joblib"
        return "pytorch-pickle" if "torch" in modules else "pickle"
    return fmt


def _scan_format(acc: _Acc, region: FileRegion, name: str, location: str, depth: int) -> tuple[str, bool]:
    """Tell the format from the content and scan it as such: ``(format, recognised)``.
    ``recognised`` is True for formats checked by their structure (not plain text)."""
    head = region.pread(0, HEAD_BYTES)
    suffix = PurePosixPath(name).suffix.lower()
    container = None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or _has_zip_end(region):
        fmt = _scan_zip(acc, region, location, depth)
        if fmt is not None and head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return fmt, True
        # zipfile finds a zip by its end, but numpy, joblib and torch go by the first bytes:
        # whatever comes before the zip is scanned as what it is too.
        container = fmt
    if _is_tar(head):
        # A tar header is mostly free-form bytes: the same file may also be a gzip stream
        # (joblib) or an .npy (numpy), so the formats below are checked too.
        container = _scan_tar(acc, region, location, depth)
    kind = _compression(head)
    if kind in ("lz4", "zstd"):
        acc.pickle = True
        acc.note(acc.incomplete, location, f"{kind}-compressed: ocimodel cannot decompress it (decompress it, then scan the content)")
        return kind, True
    if kind:
        inner = _scan_compressed(acc, region, kind, name, location, depth)
        if inner is not None:
            return f"{kind}+{inner}", True
    if head[:6] == b"\x93NUMPY":
        return _scan_npy(acc, region, location), True
    if _is_safetensors(head, region.size):
        return "safetensors", True
    if head[:4] == b"GGUF" and len(head) >= 8 and struct.unpack("<I", head[4:8])[0] in (1, 2, 3):
        return "gguf", True
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5", True
    if suffix == ".onnx" and _looks_like_protobuf(head):
        return "onnx", True
    if container is not None:
        return container, True
    if head and _is_text(head):
        return ("json", True) if suffix == ".json" and head.lstrip()[:1] in (b"{", b"[") else ("text", False)
    return ("unknown" if head else "empty"), False


# -- format tests -------------------------------------------------------------------------------


def _has_zip_end(region: FileRegion) -> bool:
    if region.size < 22:
        return False
    tail = region.pread(max(0, region.size - (1 << 16) - 22), (1 << 16) + 22)
    return b"PK\x05\x06" in tail


def _is_tar(head: bytes) -> bool:
    """A first block tarfile accepts (valid checksum), magic or not (torch's legacy loader
    tries tarfile first, and v7 tar has no magic)."""
    if len(head) < 512 or not head[:512].strip(b"\0"):
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _compression(head: bytes) -> str | None:
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


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(_SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{"


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


# -- numpy ----------------------------------------------------------------------------------


def _npy_header(region: Region, limit: int) -> tuple[int, Any]:
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


def _scan_npy(acc: _Acc, region: FileRegion, location: str) -> str:
    try:
        offset, descr = _npy_header(region, acc.options.limits.header)
    except ScanLimitError as exc:
        acc.note(acc.incomplete, location, str(exc))
        return "npy"
    except Exception as exc:  # literal_eval raises many kinds; it never executes code
        acc.pickle = True
        acc.note(acc.incomplete, location, f"npy header ocimodel cannot read ({type(exc).__name__}): numpy may still load it")
        return "npy"
    objects = npy_holds_objects(descr)
    if objects is False:
        return "npy"
    acc.pickle = True  # numpy.load(allow_pickle=True) unpickles the rest of the file
    walk, malformed = _walk_content(acc, region, offset, location, first_only=True)
    if malformed:
        why = "of a dtype ocimodel does not know" if objects is None else "holding Python objects"
        acc.note(acc.incomplete, location, f"npy {why} whose data is not a valid pickle ({walk.error})")
    return "npy+pickle"


# -- compressed streams -------------------------------------------------------------------------


def _decompressor(kind: str) -> Any:
    if kind in ("gzip", "zlib", "joblib-zfile"):
        return zlib.decompressobj(31 if kind == "gzip" else 15)
    return bz2.BZ2Decompressor() if kind == "bz2" else lzma.LZMADecompressor()


def _zfile_start(region: FileRegion) -> int:
    """joblib < 0.10 'ZF' files: the prefix and a hex length field before the zlib stream."""
    head = region.pread(0, 64)
    i = head.find(b"x", 2)
    return i if 2 < i <= 2 + 19 else 2 + 19


def _not_an_lzma_header(head: bytes) -> bool:
    """True when ``head`` (the first 13 bytes of what follows a stream) cannot start an xz or
    LZMA-alone stream: lzma.LZMAFile then treats it as trailing garbage and stops."""
    try:
        lzma.LZMADecompressor().decompress(head)
    except lzma.LZMAError:
        return True
    return False


def _after_zeros(region: FileRegion, pos: int, budget: Budget) -> int:
    """The position of the first non-zero byte at or after ``pos`` (or the end)."""
    while pos < region.size:
        budget.check_time()
        chunk = region.pread(pos, _CHUNK)
        rest = chunk.lstrip(b"\0")
        if rest or not chunk:
            return pos + len(chunk) - len(rest)
        pos += len(chunk)
    return pos


def _scan_compressed(acc: _Acc, region: FileRegion, kind: str, name: str, location: str, depth: int) -> str | None:
    """Decompress into a spool file (under the 'decompressed' limit) and scan the content as
    the loader would see it. ``None`` when it is not that format after all."""
    if depth >= acc.options.limits.depth:
        acc.note(acc.incomplete, location, f"{kind} stream nested more than {acc.options.limits.depth} deep (scan limit 'depth')")
        return "nested"
    problems: list[str] = []

    def fill(out: IO[bytes]) -> None:
        pos = _zfile_start(region) if kind == "joblib-zfile" else 0
        d = _decompressor(kind)
        streaming = hasattr(d, "unconsumed_tail")  # zlib; bz2 and lzma buffer internally
        while True:
            acc.budget.check_time()
            if streaming and d.unconsumed_tail:
                chunk = d.unconsumed_tail
            elif streaming or d.needs_input:
                chunk = region.pread(pos, _CHUNK)
                pos += len(chunk)
                if not chunk:
                    break
            else:
                chunk = b""
            try:
                data = d.decompress(chunk, _CHUNK)
            except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
                problems.append(f"{kind} stream broken after {out.tell()} bytes: {exc}" if out.tell() else "not-that-format")
                return
            acc.budget.take_decompressed(len(data))
            out.write(data)
            if d.eof:
                pos -= len(d.unused_data)
                if kind == "gzip":
                    pos = _after_zeros(region, pos, acc.budget)  # gzip skips zero padding between members
                if kind in ("xz", "lzma"):
                    # lzma.LZMAFile (joblib) decodes what follows as another xz or LZMA-alone
                    # stream, any properties byte; it stops only where no stream header starts.
                    if pos >= region.size or _not_an_lzma_header(region.pread(pos, 13)):
                        return
                elif _compression(region.pread(pos, 16)) not in (kind, "zlib" if kind == "joblib-zfile" else kind):
                    return  # what follows is not another stream: loaders stop here too
                d = _decompressor(kind)
        if not d.eof:
            problems.append(f"{kind} stream truncated after {out.tell()} bytes" if out.tell() else "not-that-format")

    try:
        out, inner = spool(fill)
    except ScanLimitError as exc:
        acc.pickle = True
        acc.note(acc.incomplete, location, f"{kind}: {exc}")
        return "nested"
    with out:
        if problems == ["not-that-format"]:
            return None
        for problem in problems:
            acc.pickle = True
            acc.note(acc.incomplete, location, problem)
        return _scan(acc, inner, name, location, depth + 1)


# -- archives -----------------------------------------------------------------------------------


def _member_location(location: str, member: str) -> str:
    return f"{location}/{member}" if location else member


def _scan_zip(acc: _Acc, region: FileRegion, location: str, depth: int) -> str | None:
    try:
        archive = zipfile.ZipFile(region.file())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if region.pread(0, 4) in (b"PK\x03\x04", b"PK\x05\x06"):
            acc.note(acc.incomplete, location, f"unreadable zip: {exc}")
            return "zip"
        return None  # an end-of-archive signature by chance
    if depth >= acc.options.limits.depth:
        acc.note(acc.incomplete, location, f"zip nested more than {acc.options.limits.depth} deep (scan limit 'depth')")
        return "zip"
    with archive:
        layout = check_zip(region, archive, acc.options.limits.members)
        for why in layout.hostile:
            acc.note(acc.hostile, location, why)
        for where, why in layout.incomplete:
            acc.note(acc.incomplete, _member_location(location, where) if where else location, why)
        names = [m.info.filename for m in layout.members]
        torch = any(PurePosixPath(n).name == "data.pkl" for n in names)
        fmt = "zip"
        if torch:
            fmt = "pytorch-zip"
            if any("/code/" in f"/{n}" for n in names):
                fmt = "torchscript-zip"
                acc.note(acc.incomplete, location, "TorchScript code (code/): torch.jit.load and torch.load run it; ocimodel does not inspect TorchScript")
        for member in layout.members:
            info = member.info
            if (info.is_dir() and not info.file_size and not info.compress_size) or not member.readable:
                continue  # (a "directory" holding data is read like any member by numpy.load of an npz)
            inner = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            if (torch and inner.startswith(_TORCH_STORAGE) and "/" not in inner[len(_TORCH_STORAGE):]
                    and not pickle_named(inner, top_level=False) and info.compress_type == zipfile.ZIP_STORED
                    and region.pread(member.data_start, 6) != b"\x93NUMPY"):
                continue  # raw tensor storage: torch reads it as bytes, never unpickles it (numpy.load
                # of the same zip would read an npy-looking member as an array, whatever its name)
            where = _member_location(location, info.filename)
            try:
                _scan_member(acc, region, archive, member, where, depth)
            except ScanLimitError as exc:
                acc.note(acc.incomplete, where, str(exc))
    return fmt


def _scan_member(acc: _Acc, region: FileRegion, archive: zipfile.ZipFile, member: Any, where: str, depth: int) -> None:
    info = member.info
    if info.compress_type == zipfile.ZIP_STORED:
        part = region.part(member.data_start, info.compress_size)
        crc, pos = 0, 0
        while pos < part.size:
            acc.budget.check_time()
            chunk = part.pread(pos, _CHUNK)
            crc, pos = zlib.crc32(chunk, crc), pos + len(chunk)
        if crc != info.CRC:
            acc.note(acc.hostile, where, "CRC-32 does not match its data (readers that check it refuse the member, others read it)")
        _scan(acc, part, info.filename, where, depth + 1)
        return

    def fill(out: IO[bytes]) -> None:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                acc.budget.take_decompressed(len(chunk))
                acc.budget.check_time()
                out.write(chunk)

    try:
        out, part = spool(fill)
    except zipfile.BadZipFile as exc:
        acc.note(acc.hostile if "CRC" in str(exc) else acc.incomplete, where, f"zip member unreadable: {exc}")
        return
    except (OSError, EOFError, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError) as exc:
        acc.note(acc.incomplete, where, f"zip member unreadable: {exc}")
        return
    with out:
        _scan(acc, part, info.filename, where, depth + 1)


def _scan_tar(acc: _Acc, region: FileRegion, location: str, depth: int) -> str:
    if depth >= acc.options.limits.depth:
        acc.note(acc.incomplete, location, f"tar nested more than {acc.options.limits.depth} deep (scan limit 'depth')")
        return "tar"
    members: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(fileobj=region.file(), mode="r:") as archive:  # type: ignore[call-overload]
            for member in archive:
                if len(members) >= acc.options.limits.members:
                    acc.note(acc.incomplete, location, f"more than {acc.options.limits.members} members: the rest not inspected (scan limit 'members')")
                    break
                members.append(member)
    except (tarfile.TarError, OSError, ValueError) as exc:
        acc.note(acc.incomplete, location, f"unreadable tar: {exc}")
    names = [m.name for m in members]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        acc.note(acc.hostile, location, f"{dup}: stored twice in the tar (readers disagree on which copy they read)")
    fmt = "pytorch-legacy-tar" if {"pickle", "storages"} <= {PurePosixPath(n).name for n in names} else "tar"
    for member in members:
        where = _member_location(location, member.name)
        if member.issparse():  # type: ignore[attr-defined]
            acc.note(acc.incomplete, where, "sparse tar member: not inspected")
            continue
        if PurePosixPath(member.name).name in _TORCH_TAR_RECORDS and not member.isfile():
            acc.note(acc.incomplete, where, "torch < 0.4 tar records stored as a link (tarfile.extract writes the "
                     "linked member's data): not inspected")
            continue
        if not member.isfile():
            continue  # links and devices: nothing to load
        try:
            part = region.part(member.offset_data, member.size)
            _scan(acc, part, member.name, where, depth + 1)
            if PurePosixPath(member.name).name in _TORCH_TAR_RECORDS:
                _check_torch_tar_records(acc, part, where)
        except ScanLimitError as exc:
            acc.note(acc.incomplete, where, str(exc))
    return fmt


_TORCH_TAR_RECORDS = ("storages", "tensors")  # torch < 0.4 reads them before 'pickle', whatever else the tar holds


def _check_torch_tar_records(acc: _Acc, part: FileRegion, where: str) -> None:
    """torch < 0.4 reads these members as a count pickle, then per record a pickle followed by
    raw bytes it sizes from what that pickle built: the pickles after raw bytes cannot be
    found without executing it, so anything after the count is not fully inspected."""
    walk = walk_pickles(part, 0, allow=acc.options.allow, budget=acc.budget, first_only=True)
    if walk.error is None and walk.end < part.size:
        acc.note(acc.incomplete, where, "torch < 0.4 tar records: pickles interleaved with raw storage bytes "
                 "are not parsed (re-save the checkpoint with a current torch)")


# -- public entry points ------------------------------------------------------------------------


def _scan_top(region: FileRegion, name: str, options: ScanOptions) -> FileScan:
    acc = _Acc(name, options)
    try:
        fmt = _scan(acc, region, name, "", 0)
    except ScanLimitError as exc:
        acc.note(acc.incomplete, "", str(exc))
        fmt = "unknown"
    except Exception as exc:  # noqa: BLE001 - hostile input must never crash a scan
        acc.note(acc.incomplete, "", f"could not be inspected ({type(exc).__name__}: {exc})")
        fmt = "unknown"
    return acc.result(fmt)


def scan_stream(stream: IO[bytes], name: str, options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan a binary stream (a pulled blob) named ``name`` from its current position.
    Unseekable streams are spooled first (to a temp file past a few MiB)."""
    if hasattr(stream, "seekable") and stream.seekable():
        start = stream.tell()
        size = stream.seek(0, 2) - start
        return _scan_top(FileRegion(stream, start, size), name, options)
    limit = options.limits.decompressed

    def fill(out: IO[bytes]) -> None:
        while chunk := stream.read(min(_CHUNK, limit + 1 - out.tell())):
            out.write(chunk)
            if out.tell() > limit:
                return

    out, region = spool(fill)
    with out:
        if region.size > limit:
            scan = _scan_top(FileRegion(out, 0, limit), name, options)
            scan.incomplete.append(Finding(f"stream longer than {limit >> 20} MiB: the rest not inspected (scan limit 'decompressed')"))
            return scan
        return _scan_top(region, name, options)


def header_length(head: bytes, name: str) -> int | None:
    """How many leading bytes of content starting with ``head`` (at least its first 4096
    bytes, or all of it if shorter) decide its scan, for formats judged from a header:
    safetensors, GGUF, plain numpy, ONNX. ``None`` when the whole content may be needed
    (pickles, containers, compressed streams, object arrays, a header that is also the start
    of a pickle, text...).

    When :func:`scan_bytes` of that prefix is safe, it is the scan of the whole content:
    a 10 GiB safetensors blob needs its header only.
    """
    region = _BytesRegion(head)
    walk = walk_pickles(region, 0, allow=DEFAULT_OPTIONS.allow, budget=Budget(DEFAULT_OPTIONS.limits), first_only=True)
    if walk.imports or walk.error is None or walk.limit or "truncated" in walk.error or "exhausted" in walk.error:
        return None  # a pickle, or one that may go on past the header
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or _is_tar(head) or _compression(head):
        return None
    if head[:4] == b"GGUF":
        return len(head)
    if head[:6] == b"\x93NUMPY" and len(head) >= 12:
        try:
            offset, descr = _npy_header(region, len(head))
        except Exception:  # noqa: BLE001 - undecided: read it all
            return None
        return offset if npy_holds_objects(descr) is False else None
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _SAFETENSORS_MAX_HEADER:
        return max(len(head), 8 + struct.unpack("<Q", head[:8])[0])
    if PurePosixPath(name).suffix.lower() == ".onnx" and _looks_like_protobuf(head):
        return len(head)
    return None


class _BytesRegion:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def pread(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n] if offset >= 0 else b""


def scan_bytes(data: bytes, name: str = "<bytes>", options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan in-memory content named ``name`` (the name decides only whether it is pickle-named)."""
    import io

    return _scan_top(FileRegion(io.BytesIO(data), 0, len(data)), name, options)


def scan_file(path: Path, relpath: str | None = None, options: ScanOptions = DEFAULT_OPTIONS) -> FileScan:
    """Scan one file, reported under ``relpath`` (default: its name). Never raises."""
    path = Path(path)
    rel = relpath if relpath is not None else path.name
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return FileScan(rel, "special", incomplete=[Finding("not a regular file: not inspected")])
        with open(path, "rb") as f:
            return _scan_top(FileRegion(f, 0, info.st_size), rel, options)
    except OSError as exc:
        return FileScan(rel, "unknown", incomplete=[Finding(f"cannot read: {exc.strerror or exc}")])


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


__all__ = ["HEAD_BYTES", "PICKLE_SUFFIXES", "ScanOptions", "header_length", "pickle_named",
           "scan_bytes", "scan_file", "scan_path", "scan_stream"]
