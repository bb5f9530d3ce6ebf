"""Detect the git checkout a model is pushed from (remote, commit, dirty flag)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ..config import CodeInfo

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# ssh authenticates with keys: its user name (``git@``) is an account, not a secret, and keeping
# it keeps the remote usable. Over every other scheme a bare user name may be a token
# (``https://ghp_xxx@github.com/...`` works on GitHub), so all user information goes.
_SSH_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def strip_credentials(url: str) -> str:
    """``url`` without any credential it may carry, as stored in a model's config.

    Removes the user information (``user:password@``, ``oauth2:TOKEN@``, passwords holding
    ``@``, ``/``, ``?`` or ``#``; only a bare ssh user such as ``git@`` is kept) and the query
    string and fragment (``?private_token=...``, ``access_token=...``: a clone needs neither).
    When it is unclear where a password ends, more is cut rather than less.
    """
    text = url.strip()
    scheme_match = _SCHEME.match(text)
    scheme = scheme_match.group(0) if scheme_match else ""
    rest = text[len(scheme):]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo = ""
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        rest = host + rest[len(authority):]
    elif ":" in authority and "@" in rest:
        # "user:pa/ss@host": a password holding '/', '?' or '#' ends the authority early.
        userinfo, _, rest = rest.rpartition("@")
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    ssh = scheme.lower() in _SSH_SCHEMES or not scheme
    if userinfo and ssh and ":" not in userinfo:
        return f"{scheme}{userinfo}@{rest}"
    return f"{scheme}{rest}"


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
