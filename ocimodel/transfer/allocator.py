"""Keep glibc malloc from returning transfer buffers to the kernel after every chunk.

A streaming transfer allocates and frees a ~1 MiB ``bytes`` per chunk, several times over
(socket read, HTTP parser, hashing queue). With glibc's default, adaptive thresholds such sizes
are either mmapped or trimmed off the heap top when freed, so the next chunk page-faults its
memory in again. Measured here on a 1 GiB pull: ~175 000 minor faults and ~0.6-1 s of system
time, more than the kernel spent receiving and writing the bytes; with fixed thresholds,
~13 000 faults. Only the two thresholds change (both settings are process-wide, which a pull or
push in a process owns anyway); explicit ``MALLOC_*_`` or ``GLIBC_TUNABLES`` settings win, and
on a libc without ``mallopt`` (musl, macOS) nothing happens.
"""

from __future__ import annotations

import os

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
# Below glibc's 32 MiB cap for the mmap threshold (larger values are refused); chunk buffers
# (≤ 1 MiB plus parser overhead) stay far below it, genuinely big allocations still get mmapped.
MMAP_THRESHOLD = 16 * 1024 * 1024
# Freed heap memory kept for reuse instead of trimmed: a few queues' worth of chunks.
TRIM_THRESHOLD = 64 * 1024 * 1024
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_for_streaming() -> bool:
    """Fix glibc's mmap and trim thresholds for chunked transfers; True if applied.

    Idempotent and cheap; called at the start of every push and pull.
    """
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    import ctypes  # only here: not every command transfers blobs

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
