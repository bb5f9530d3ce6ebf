"""Random-access views of the bytes being scanned: a file, a part of one, a spooled stream.

Every reader the scanner uses (the pickle walk, zipfile, tarfile, decompressors) reads
through one of these, so nothing is ever read twice into memory and large payloads are
stepped over with a seek.
"""

from __future__ import annotations

import io
import tempfile
from typing import IO, Callable

_SPOOL_IN_MEMORY = 8 << 20


class FileRegion:
    """``size`` bytes of a seekable binary file starting at ``base``."""

    def __init__(self, raw: IO[bytes], base: int, size: int) -> None:
        self.raw, self.base, self.size = raw, base, size

    def pread(self, offset: int, n: int) -> bytes:
        n = min(n, self.size - offset)
        if n <= 0 or offset < 0:
            return b""
        self.raw.seek(self.base + offset)
        return self.raw.read(n)

    def part(self, offset: int, size: int) -> "FileRegion":
        """A sub-region (a stored archive member): no copy."""
        return FileRegion(self.raw, self.base + offset, max(0, min(size, self.size - offset)))

    def file(self) -> "RegionFile":
        return RegionFile(self)


class RegionFile(io.RawIOBase):
    """A region as a read-only seekable file, for zipfile and tarfile."""

    def __init__(self, region: FileRegion) -> None:
        super().__init__()
        self.region, self.pos = region, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.region.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self.region.size - self.pos
        data = self.region.pread(self.pos, n)
        self.pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def spool(fill: Callable[[IO[bytes]], None]) -> tuple[IO[bytes], FileRegion]:
    """Run ``fill(out)`` into an anonymous spool file (memory, then a temp file deleted on
    close); return the file (close it when done) and a region over what was written. What
    ``fill`` wrote before raising is kept: the exception propagates with the file closed
    unless the caller catches it inside ``fill``."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # type: ignore[assignment]
    try:
        fill(out)
    except BaseException:
        out.close()
        raise
    size = out.tell()
    return out, FileRegion(out, 0, size)
