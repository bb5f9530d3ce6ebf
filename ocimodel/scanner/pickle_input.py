"""Reading a pickle the way CPython's unpicklers read it: byte by byte, line by line, within frames."""

from __future__ import annotations

from .limits import ScanLimitError
from .pickle_values import PickleError, Region

_CHUNK = 1 << 16
LINE_KEEP = 1 << 16  # longest text line whose content is parsed


class PickleInput:
    """Reads a region from ``pos``, minding pickle frames: ``jump_at`` is the end of the
    current frame. Python's unpickler (joblib mode) has read the frame whole, so its file
    handle is at ``jump_to``: reads continue there when the frame is used up. A read that
    straddles a frame's end is an error to Python's unpickler, and to C's it loses or keeps
    the rest of the frame depending on the file object: either way ``straddle`` is raised."""

    def __init__(self, region: Region, pos: int, straddle: type[Exception] = PickleError) -> None:
        self.region, self.size = region, region.size
        self.buf, self.base, self.i = b"", pos, 0
        self.jump_at, self.jump_to = -1, 0
        self.straddle = straddle

    def crossed(self) -> Exception:
        if self.straddle is PickleError:
            return PickleError("pickle exhausted before end of frame")
        return self.straddle("a read crosses the end of a pickle frame: CPython's unpicklers disagree on what it reads")

    def tell(self) -> int:
        return self.base + self.i

    def seek(self, pos: int, keep_frame: bool = False) -> None:
        self.buf, self.base, self.i = b"", pos, 0
        if not keep_frame:
            self.jump_at = -1

    def _refill(self) -> bool:
        pos = self.base + self.i
        if pos == self.jump_at:
            pos, self.jump_at = self.jump_to, -1
        end = self.size if self.jump_at < 0 else self.jump_at
        n = min(_CHUNK, end - pos)
        self.buf = self.region.pread(pos, n) if n > 0 else b""
        self.base, self.i = pos, 0
        return bool(self.buf)

    def byte(self) -> int:
        if self.i >= len(self.buf) and not self._refill():
            return -1
        b = self.buf[self.i]
        self.i += 1
        return b

    def read(self, n: int) -> bytes:
        i, buf = self.i, self.buf
        if i + n <= len(buf):
            self.i = i + n
            return buf[i : i + n]
        parts, have = [buf[i:]], len(buf) - i
        self.i = len(buf)
        while have < n:
            crossing = have and self.tell() == self.jump_at
            if not self._refill():
                raise PickleError("pickle data was truncated")
            if crossing:
                raise self.crossed()
            take = min(n - have, len(self.buf))
            parts.append(self.buf[:take])
            self.i, have = take, have + take
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Step over ``n`` bytes without reading them (a bulk payload)."""
        if self.i + n <= len(self.buf):
            self.i += n
            return
        target = self.tell() + n
        limit = self.size if self.jump_at < 0 else self.jump_at
        if target > limit:
            raise PickleError("pickle data was truncated") if self.jump_at < 0 else self.crossed()
        self.seek(target, keep_frame=True)

    def readline(self, cap: int) -> tuple[bytes, int]:
        """A line like the Python unpickler reads it: up to and including ``\\n`` (or to the
        end of the data). Returns (its first bytes, at most ``LINE_KEEP``; its full length)."""
        kept: list[bytes] = []
        have = total = 0
        while True:
            if self.i >= len(self.buf):
                crossing = total and self.tell() == self.jump_at
                if not self._refill():
                    return b"".join(kept), total
                if crossing:
                    raise self.crossed()
            nl = self.buf.find(b"\n", self.i)
            end = len(self.buf) if nl < 0 else nl + 1
            piece = self.buf[self.i : end]
            self.i = end
            total += len(piece)
            if have < LINE_KEEP:
                kept.append(piece[: LINE_KEEP - have])
                have += len(kept[-1])
            if total > cap:
                raise ScanLimitError(f"a text line longer than {cap >> 20} MiB: stopped (scan limit 'line')")
            if nl >= 0:
                return b"".join(kept), total


# -- the machine -----------------------------------------------------------------------------
