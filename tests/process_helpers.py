"""Running ``python -m ocimodel`` as a user would: a real process, its exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m ocimodel ARGS`` with ``env`` added to the environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True, env=full_env, input=stdin, timeout=120
    )


# The child is forked from this tiny launcher, not from pytest: a forked child's peak RSS
# starts at its parent's size (the pages it shares before exec count), and pytest after a
# few hundred tests is itself hundreds of MiB.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\nMINFLT={usage.ru_minflt}\\nPEAK_RSS_KIB={usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_with_rusage(args: list[str], env: dict[str, str]) -> tuple[int, str, str, int, int]:
    """Run ``python -m ocimodel ARGS``; return exit code, stdout, stderr, its peak RSS (KiB)
    and its minor page faults."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "ocimodel", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )
    head, _, tail = done.stderr.rpartition("MINFLT=")
    faults, _, rss = tail.partition("PEAK_RSS_KIB=")
    return done.returncode, done.stdout, head, int(rss.strip()), int(faults.strip())


def read_until_closed(master: int) -> bytes:
    """Everything a child writes to the pty whose master end is ``master``, until it closes it."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return seen
