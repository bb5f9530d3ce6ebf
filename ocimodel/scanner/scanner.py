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

import bz2
import lzma
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any, Iterable

from .formats import (
    HEAD_BYTES,
    compression,
    has_zip_end,
    is_safetensors,
    is_tar,
    is_text,
    looks_like_protobuf,
    npy_header,
)
from .limits import Budget, ScanLimitError, ScanLimits
from .numpy_arrays import npy_holds_objects
from .pickle_values import Walk
from .pickle_walk import walk_pickles
from .regions import FileRegion, spool
from .report import FileScan, Finding, GlobalRef
from .rules import AllowList, loaded_name
from .zipcheck import check_zip

_CHUNK = 1 << 20

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
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or has_zip_end(region):
        fmt = _scan_zip(acc, region, location, depth)
        if fmt is not None and head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return fmt, True
        # zipfile finds a zip by its end, but numpy, joblib and torch go by the first bytes:
        # whatever comes before the zip is scanned as what it is too.
        container = fmt
    if is_tar(head):
        # A tar header is mostly free-form bytes: the same file may also be a gzip stream
        # (joblib) or an .npy (numpy), so the formats below are checked too.
        container = _scan_tar(acc, region, location, depth)
    kind = compression(head)
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
    if is_safetensors(head, region.size):
        return "safetensors", True
    if head[:4] == b"GGUF" and len(head) >= 8 and struct.unpack("<I", head[4:8])[0] in (1, 2, 3):
        return "gguf", True
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5", True
    if suffix == ".onnx" and looks_like_protobuf(head):
        return "onnx", True
    if container is not None:
        return container, True
    if head and is_text(head):
        return ("json", True) if suffix == ".json" and head.lstrip()[:1] in (b"{", b"[") else ("text", False)
    return ("unknown" if head else "empty"), False


# -- numpy ----------------------------------------------------------------------------------


def _scan_npy(acc: _Acc, region: FileRegion, location: str) -> str:
    try:
        offset, descr = npy_header(region, acc.options.limits.header)
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
                elif compression(region.pread(pos, 16)) not in (kind, "zlib" if kind == "joblib-zfile" else kind):
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


def scan_region(region: FileRegion, name: str, options: ScanOptions) -> FileScan:
    """Scan the content of ``region``, named ``name`` (the name only says whether a loader
    would unpickle it); never raises for content: failures become findings."""
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
