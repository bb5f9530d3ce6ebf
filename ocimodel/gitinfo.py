"""Detect the git checkout a model is pushed from (remote, commit, dirty flag)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .config import CodeInfo

# Credentials embedded in a remote URL (https://user:token@host/...) must never be stored.
_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def strip_credentials(url: str) -> str:
    """Remove ``user:password@`` from a URL."""
    return _USERINFO.sub(r"\g<scheme>", url)


def detect_code(path: Path) -> CodeInfo | None:
    """The git remote, HEAD commit and dirty flag of the checkout containing ``path``.

    Returns None when git is missing or ``path`` is not inside a work tree.
    """
    if shutil.which("git") is None:
        return None
    cwd = path if path.is_dir() else path.parent
    if _git(cwd, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    commit = _git(cwd, "rev-parse", "HEAD")
    remote = _git(cwd, "config", "--get", "remote.origin.url")
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return CodeInfo(
        remote=strip_credentials(remote) if remote else None,
        commit=commit,
        dirty=bool(status) if status is not None else None,
    )
