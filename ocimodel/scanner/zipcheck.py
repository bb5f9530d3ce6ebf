"""A zip archive's structure, checked from both ends: the central directory (what zipfile
and torch's miniz read) and the local headers (what streaming readers read).

Where readers could disagree on a member's bytes the archive is hostile: a name listed
twice, a local header that names another file or gives other sizes, members that overlap,
bytes between members that no central directory entry accounts for (a hidden entry), a data
descriptor that does not match. Encrypted members and unknown compression methods cannot be
read: not fully inspected.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field

from .regions import FileRegion

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_DESCRIPTOR = b"PK\x07\x08"
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_GAP_READ = 1 << 16  # unaccounted bytes read to look for a hidden local header
_ZIP64 = 0xFFFFFFFF


@dataclass
class Member:
    """One central directory entry and where its data starts in the archive."""

    info: zipfile.ZipInfo
    data_start: int
    readable: bool = True  # False: encrypted or an unknown method (reported)


@dataclass
class ZipLayout:
    """What the central directory says: members to scan, and what made it hostile or unreadable."""

    members: list[Member] = field(default_factory=list)
    hostile: list[str] = field(default_factory=list)  # (location, why)
    incomplete: list[tuple[str, str]] = field(default_factory=list)


def _raw_names(region: FileRegion, start: int, count: int) -> list[bytes] | None:
    """The names as the central directory spells them (bytes, before any decoding)."""
    names, pos = [], start
    for _ in range(count):
        head = region.pread(pos, 46)
        if len(head) < 46 or head[:4] != _CENTRAL:
            return None
        n, m, k = struct.unpack("<HHH", head[28:34])
        names.append(region.pread(pos + 46, n))
        pos += 46 + n + m + k
    return names


def check_zip(region: FileRegion, archive: zipfile.ZipFile, max_members: int) -> ZipLayout:
    """Check ``archive`` (opened over ``region``) and list its members' data offsets."""
    layout = ZipLayout()
    infos = archive.infolist()
    truncated = len(infos) > max_members
    if truncated:
        layout.incomplete.append(("", f"{len(infos)} members: only the first {max_members} inspected (scan limit 'members')"))
        infos = infos[:max_members]
    raw_names = _raw_names(region, archive.start_dir, len(infos))  # type: ignore[attr-defined]
    if raw_names is None:
        layout.hostile.append("the central directory could not be read entry by entry")
        raw_names = [i.orig_filename.encode("utf-8", "surrogateescape") for i in infos]
    seen: set[bytes] = set()
    spans: list[tuple[int, int, str]] = []
    for info, raw in zip(infos, raw_names):
        name = info.filename
        if raw in seen:
            layout.hostile.append(f"{name}: listed twice in the central directory (readers disagree on which copy they read)")
        seen.add(raw)
        member = _check_member(region, info, raw, layout)
        if member is None:
            continue
        layout.members.append(member)
        spans.append((info.header_offset, _data_end(region, info, member.data_start, layout), name))
    if not truncated:  # the members not inspected would show as gaps
        _check_spans(region, sorted(spans), archive.start_dir, layout)  # type: ignore[attr-defined]
    return layout


def _check_member(region: FileRegion, info: zipfile.ZipInfo, raw: bytes, layout: ZipLayout) -> Member | None:
    name = info.filename
    head = region.pread(info.header_offset, 30)
    if len(head) < 30 or head[:4] != _LOCAL:
        layout.hostile.append(f"{name}: no local header where the central directory points")
        return None
    flags, method, _, _, crc, csize, usize, n, m = struct.unpack("<HHHHIIIHH", head[6:30])
    local_name = region.pread(info.header_offset + 30, n)
    if local_name != raw:
        shown = local_name.decode("utf-8", "replace")
        layout.hostile.append(f"{name}: its local header names {shown!r} (readers disagree on the member's name)")
    if method != info.compress_type:
        layout.hostile.append(f"{name}: local header and central directory give different compression methods")
    if not flags & 0x08 and (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size) and _ZIP64 not in (csize, usize):
        layout.hostile.append(f"{name}: local header and central directory give different sizes or CRC")
    member = Member(info, info.header_offset + 30 + n + m)
    if (info.flag_bits | flags) & 0x01:
        layout.incomplete.append((name, "encrypted member: cannot be read"))
        member.readable = False
    elif info.compress_type not in _METHODS:
        layout.incomplete.append((name, f"compression method {info.compress_type}: cannot be decompressed"))
        member.readable = False
    elif info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        layout.hostile.append(f"{name}: stored member whose sizes differ")
    return member


def _data_end(region: FileRegion, info: zipfile.ZipInfo, data_start: int, layout: ZipLayout) -> int:
    end = data_start + info.compress_size
    if end > region.size:
        layout.incomplete.append((info.filename, "member data runs past the end of the archive (truncated)"))
        return end
    if not info.flag_bits & 0x08:
        return end
    tail = region.pread(end, 24)
    candidates = []
    for sig in (4, 0):
        for width in (4, 8):
            size = sig + 4 + 2 * width
            if len(tail) < size or (sig and tail[:4] != _DESCRIPTOR):
                continue
            fmt = "<I" + ("II" if width == 4 else "QQ")
            if struct.unpack(fmt, tail[sig:size]) == (info.CRC, info.compress_size, info.file_size):
                candidates.append(size)
    if not candidates:
        layout.hostile.append(f"{info.filename}: its data descriptor does not match the central directory")
        return end
    return end + candidates[0]


def _check_spans(region: FileRegion, spans: list[tuple[int, int, str]], central: int, layout: ZipLayout) -> None:
    previous_end, previous = 0, "the start of the file"
    for start, end, name in [*spans, (central, central, "the central directory")]:
        if start < previous_end:
            layout.hostile.append(f"{name} overlaps {previous} (one byte range read as two members)")
        elif start > previous_end:
            gap = region.pread(previous_end, min(start - previous_end, _GAP_READ))
            if _LOCAL in gap:
                layout.hostile.append(f"a local header between {previous} and {name} that the central directory does not list (a hidden member)")
            elif start - previous_end > _GAP_READ and previous_end:
                layout.hostile.append(f"{start - previous_end} bytes between {previous} and {name} not accounted for")
        if end > previous_end:
            previous_end, previous = end, name
