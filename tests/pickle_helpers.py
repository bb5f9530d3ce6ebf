"""Building hostile pickles for the scanner's tests (never loaded, only scanned)."""

from __future__ import annotations

import os

SYSTEM = f"{os.system.__module__}.system"  # os.system pickles as posix.system (nt.system)


class Reduce:
    """An object whose unpickling would call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args
