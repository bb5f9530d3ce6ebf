"""Directories held open by descriptor, so that nothing below them is reached through a symlink.

A check such as "``DEST/sub`` is not a symlink" is worth nothing if someone who can write in
DEST replaces ``sub`` with a symlink to ``/etc`` between the check and the write. So a pull
opens DEST once and does every creation, rename and removal below it *relative to directory
descriptors*: each path component is opened with ``O_NOFOLLOW | O_DIRECTORY`` (a symlink
fails with ``ELOOP``, a file with ``ENOTDIR``), files are created with ``O_NOFOLLOW``, and
renames use ``src_dir_fd``/``dst_dir_fd``. A symlink planted at any moment then makes the
pull fail, never write elsewhere.

DEST itself is opened following symlinks: it is the user's choice, not the artifact's.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable

from ..errors import UnsafeContentError, UsageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _refusal(dir_fd: int, name: str, path: Path, exc: OSError) -> Exception:
    """The error for ``name`` (in ``dir_fd``; ``path`` for messages) failing to open without
    following a symlink (Linux says ENOTDIR or ELOOP for a symlink, depending on the flags)."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return UnsafeContentError(f"refusing to go through {str(path)!r}: it is a symlink")
        if exc.errno == errno.ENOTDIR:
            return UsageError(f"{str(path)!r} is in the way: it is a file, not a directory")
    return exc


class DirHandle:
    """An open directory; names below it are resolved without following symlinks.

    ``path`` is only used in messages (and by callers that need a path for reading their own
    files); every operation goes through ``fd``.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> "DirHandle":
        """Open the directory ``path`` (creating it and its parents with ``create``)."""
        if create:
            path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise UsageError(f"destination {str(path)!r} exists and is not a directory") from None
        return cls(fd, path)

    def dup(self) -> "DirHandle":
        """Another handle on the same directory (closed separately)."""
        return DirHandle(os.dup(self.fd), self.path)

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DirHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- directories -------------------------------------------------------------------------

    def subdir(self, relpath: str, *, create: bool = False, created: list[tuple["DirHandle", str]] | None = None) -> "DirHandle":
        """Open ``relpath`` (``a/b``) below this directory, component by component.

        With ``create``, missing components are made (mode 0777 less umask); each one made is
        appended to ``created`` as (a handle of its parent, its name) so a caller can undo it.
        The caller closes the returned handle (and those in ``created``).
        """
        current = self.dup()
        try:
            for part in relpath.split("/") if relpath else ():
                nxt = current.path / part
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=current.fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o777, dir_fd=current.fd)
                        if created is not None:
                            created.append((current.dup(), part))
                    except FileExistsError:
                        pass  # made meanwhile by someone else: open it below, without following
                    try:
                        fd = os.open(part, _DIR_FLAGS, dir_fd=current.fd)
                    except OSError as exc:
                        raise _refusal(current.fd, part, nxt, exc) from None
                except OSError as exc:
                    raise _refusal(current.fd, part, nxt, exc) from None
                current.close()
                current = DirHandle(fd, nxt)
            return current
        except BaseException:
            current.close()
            raise

    def mkdir(self, name: str, mode: int = 0o777) -> None:
        """Create the directory ``name`` here (FileExistsError if anything has that name)."""
        os.mkdir(name, mode, dir_fd=self.fd)

    def names(self) -> list[str]:
        """The entries of this directory."""
        return os.listdir(self.fd)

    def rmtree(self, name: str) -> None:
        """Remove the directory ``name`` here and everything in it; a symlink there is refused,
        and nothing below is followed (``shutil.rmtree`` walks by descriptor)."""
        info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeContentError(f"refusing to remove {str(self.path / name)!r}: it is not a directory")
        # fwalk opens every directory relative to its parent's descriptor and checks it is the
        # one it listed; with follow_symlinks=False a symlink is only ever unlinked, not entered.
        for _, dirs, files, fd in os.fwalk(name, topdown=False, follow_symlinks=False, dir_fd=self.fd):
            for entry in files:
                os.unlink(entry, dir_fd=fd)
            for entry in dirs:  # fwalk lists a symlink to a directory here too (not entered)
                if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    os.rmdir(entry, dir_fd=fd)
                else:
                    os.unlink(entry, dir_fd=fd)
        os.rmdir(name, dir_fd=self.fd)

    def rmdir(self, name: str) -> bool:
        """Remove the directory ``name`` if it is empty; True if removed."""
        try:
            os.rmdir(name, dir_fd=self.fd)
        except OSError:
            return False
        return True

    # -- files -------------------------------------------------------------------------------

    def open_fd(self, name: str, flags: int, mode: int = 0o666) -> int:
        """``os.open`` of ``name`` here, never following a symlink at ``name``."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            raise _refusal(self.fd, name, self.path / name, exc) from None

    def opener(self) -> Callable[[str, int], int]:
        """An ``opener`` for :func:`open` that resolves names in this directory."""
        return lambda name, flags: self.open_fd(name, flags)

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry ``name`` itself (a symlink is not followed), or None if absent."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        """Remove the non-directory ``name`` if present."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def rename(self, name: str, to: "DirHandle", to_name: str) -> None:
        """Rename ``name`` here to ``to_name`` in ``to``, replacing a non-directory there."""
        os.replace(name, to_name, src_dir_fd=self.fd, dst_dir_fd=to.fd)

    def symlink(self, target: str, name: str) -> None:
        """Create the symlink ``name`` -> ``target`` here."""
        os.symlink(target, name, dir_fd=self.fd)

    def readlink(self, name: str) -> str | None:
        """The target of the symlink ``name``, or None if it is absent or not a symlink."""
        try:
            return os.readlink(name, dir_fd=self.fd)
        except OSError:  # absent (ENOENT), or not a symlink (EINVAL)
            return None


def open_parent(
    root: DirHandle, relpath: str, *, create: bool = False, created: list[tuple[DirHandle, str]] | None = None
) -> tuple[DirHandle, str]:
    """The open directory holding ``relpath`` (``a/b/c`` -> ``a/b``) and the last name; the
    caller closes the handle. See :meth:`DirHandle.subdir` for ``create`` and ``created``."""
    parent, _, name = relpath.rpartition("/")
    return root.subdir(parent, create=create, created=created), name
