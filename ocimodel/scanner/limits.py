"""How far the scanner goes before it stops and reports a file as not fully inspected.

Every limit bounds memory or time on hostile input (decompression bombs, giant strings,
millions of opcodes); hitting one is never a pass. ``ScanLimits.parse`` reads the
``--scan-limit NAME=VALUE`` form.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Iterable

from ..errors import UsageError

_UNITS = {"": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


class ScanLimitError(Exception):
    """A limit was reached: the content is not fully inspected (message fit for a person)."""


@dataclass(frozen=True)
class ScanLimits:
    """Limits per top-level file (a directory's files each get the full set)."""

    opcodes: int = 20_000_000  # pickle opcodes walked, all pickles of the file together
    memo: int = 1_000_000  # memo entries (and stack entries) of one pickle
    line: int = 64 << 20  # one text line of a protocol-0 pickle
    pickles: int = 64  # consecutive pickles in one stream (legacy torch files hold five)
    decompressed: int = 2 << 30  # bytes decompressed from all compressed streams and members
    members: int = 10_000  # members of one archive
    depth: int = 3  # archives and compressed streams nested inside one another
    header: int = 16 << 20  # npy header parsed (safetensors headers are only checked, never kept)
    seconds: float = 600.0  # wall time spent on one file

    @classmethod
    def parse(cls, entries: Iterable[str], base: "ScanLimits | None" = None) -> "ScanLimits":
        """Apply ``NAME=VALUE`` entries (sizes may say ``64MiB``); unknown names are a usage error."""
        limits = base or cls()
        names = {f.name: f for f in dataclasses.fields(cls)}
        for entry in entries:
            for item in re.split(r"[,\s]+", entry.strip()):
                if not item:
                    continue
                key, sep, value = item.partition("=")
                key = key.strip().lower()
                if not sep or key not in names:
                    raise UsageError(f"--scan-limit {item!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
                match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
                unit = match.group(2).lower() if match else ""
                if not match or unit not in _UNITS:
                    raise UsageError(f"--scan-limit {item!r}: {value!r} is not a number (sizes may end in KiB, MiB, GiB)")
                number = float(match.group(1)) * _UNITS[unit]
                if number < 0 or (key != "seconds" and number != int(number)):
                    raise UsageError(f"--scan-limit {item!r}: expected a whole number")
                value_of: float | int = number if key == "seconds" else int(number)
                limits = dataclasses.replace(limits, **{key: value_of})  # type: ignore[arg-type]
        return limits


class Budget:
    """What is left of the shared limits while one top-level file is scanned."""

    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.opcodes = limits.opcodes
        self.decompressed = limits.decompressed
        self.deadline = time.monotonic() + limits.seconds

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ScanLimitError(f"scan took longer than {self.limits.seconds:g} s: stopped (scan limit 'seconds')")

    def take_decompressed(self, n: int) -> None:
        self.decompressed -= n
        if self.decompressed < 0:
            raise ScanLimitError(
                f"more than {self.limits.decompressed >> 20} MiB decompressed: stopped (scan limit 'decompressed')"
            )
