"""Turn a model path (a file or a directory) into the list of files to push.

Directories are walked in sorted order; ``.git`` is skipped; a symlink is followed only
when it resolves inside the model directory (its content is stored under the link's
name), and refused otherwise so a push never uploads a file the user did not mean to share.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import UsageError
from ..titles import validate_titles

SKIPPED_DIRS = frozenset({".git"})
READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """A file to push: where it is on disk and the title it gets in the artifact."""

    title: str
    path: Path
    size: int
    mode: int


def collect_files(root: Path) -> list[SourceFile]:
    """The files of the model at ``root``, sorted by title."""
    if not root.exists() and not root.is_symlink():
        raise UsageError(f"model path {str(root)!r} does not exist")
    if root.is_file():
        st = root.stat()
        return [SourceFile(title=root.name, path=root, size=st.st_size, mode=stat.S_IMODE(st.st_mode))]
    if not root.is_dir():
        raise UsageError(f"model path {str(root)!r} is neither a file nor a directory")
    real_root = root.resolve()
    files = sorted(_walk(root, real_root, Path(), set()), key=lambda f: f.title)
    if not files:
        raise UsageError(f"model directory {str(root)!r} contains no files")
    try:
        validate_titles(f.title for f in files)
    except Exception as exc:
        raise UsageError(f"cannot push {str(root)!r}: {exc}") from None
    return files


def _inside(path: Path, real_root: Path) -> bool:
    return path == real_root or real_root in path.parents


def _walk(directory: Path, real_root: Path, rel: Path, seen: set[Path]) -> Iterator[SourceFile]:
    real_dir = directory.resolve()
    if real_dir in seen:
        raise UsageError(f"symlink loop at {str(directory)!r}")
    seen = seen | {real_dir}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name in SKIPPED_DIRS:
                continue
            path = Path(entry.path)
            title_path = rel / entry.name
            if entry.is_symlink():
                target = path.resolve()
                if not _inside(target, real_root) or not target.exists():
                    raise UsageError(
                        f"symlink {str(title_path)!r} points outside the model directory "
                        f"({os.readlink(path)!r}); copy the file in or remove the link"
                    )
            if path.is_dir():
                yield from _walk(path, real_root, title_path, seen)
            elif path.is_file():
                st = path.stat()
                yield SourceFile(title=title_path.as_posix(), path=path, size=st.st_size, mode=stat.S_IMODE(st.st_mode))
            else:
                raise UsageError(f"{str(title_path)!r} is not a regular file (sockets, fifos and devices cannot be pushed)")


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            if progress:
                progress(n)
    return "sha256:" + h.hexdigest()


def file_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes in pieces of at most 1 MiB (what httpx streams well).

    Raises if the file changed size since it was hashed, rather than upload wrong bytes.
    """
    sent = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(READ_SIZE)
            if not chunk:
                break
            sent += len(chunk)
            if sent > size:
                break
            yield chunk
    if sent != size:
        raise UsageError(f"{str(path)!r} changed while it was being pushed; push again")
