"""The pull destination directory: safety checks, a lock, free space, and resumable partials.

Everything ocimodel keeps inside DEST is named ``DEST/.ocimodel*`` (titles may not use that
prefix, see :mod:`ocimodel.titles`), which is what makes the pull rule checkable: *on failure
DEST is as it was, and only ``DEST/.ocimodel*`` may be left*:

``.ocimodel.lock``
    an ``fcntl.flock`` lock: one pull at a time per DEST (another waits, then finds the work
    done or resumable). Removed on release; a waiter that locked a removed file retries.
``.ocimodel-partial/sha256-<hex>``
    a blob being downloaded. Partials live *in DEST* rather than in the blob cache so that
    resuming works with ``--no-cache`` too, and so the finished file is renamed into place on
    the same filesystem (no second copy). Kept when a pull fails on the network or is killed,
    so the next pull continues with ``Range``; deleted on any integrity failure, so bytes that
    failed a check are never resumed from.
``.ocimodel-tmp-*``
    the staging directory of one pull: verified files wait there until all are ready, then
    are renamed into place together (:class:`Swap`), and what they replace waits there until
    the pull succeeded, so a failure part-way can put it back. Stale ones (from a killed
    pull) are removed under the lock.

All of it is reached through directory descriptors (:mod:`ocimodel.dirfd`): a symlink planted
in DEST during a pull can make it fail, never write elsewhere.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from ..errors import OcimodelError, UnsafeContentError, UsageError
from ..titles import RESERVED_PREFIX
from .dirfd import DirHandle, open_parent

logger = logging.getLogger(__name__)

LOCK_NAME = f"{RESERVED_PREFIX}.lock"
PARTIAL_DIR = f"{RESERVED_PREFIX}-partial"
STAGING_PREFIX = f"{RESERVED_PREFIX}-tmp-"
_MAX_LOCK_ATTEMPTS = 100  # each retry means another process removed the lock file under us
_COPY_PIECE = 1024 * 1024


def check_destination(dest: Path, titles: Iterable[str]) -> None:
    """Refuse before writing anything if a file would land through a symlink or on a directory."""
    if dest.is_symlink():
        dest = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"destination {str(dest)!r} exists and is not a directory")
    for title in titles:
        current = dest
        parts = title.split("/")
        for i, part in enumerate(parts):
            current = current / part
            last = i == len(parts) - 1
            if current.is_symlink():
                raise UnsafeContentError(f"refusing to write {title!r}: {str(current)!r} in the destination is a symlink")
            if not current.exists():
                break
            if last and current.is_dir():
                raise UsageError(f"cannot write {title!r}: {str(current)!r} is a directory")
            if not last and not current.is_dir():
                raise UsageError(f"cannot write {title!r}: {str(current)!r} is a file, not a directory")


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def check_free_space(directory: Path, needed: int) -> None:
    """Raise UsageError unless ``directory``'s filesystem has ``needed`` bytes free."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise UsageError(
            f"not enough free space in {str(directory)!r}: the pull needs {_format_size(needed)}, "
            f"{_format_size(free)} is free"
        )


def resumable_size(directory: DirHandle, name: str, size: int) -> int:
    """Bytes of a ``size``-byte blob already in the partial file ``name`` (0 if none; an
    oversized one, or anything but a plain file, is dropped)."""
    info = directory.lstat(name)
    if info is None:
        return 0
    if not stat.S_ISREG(info.st_mode) or info.st_size > size:
        directory.unlink(name)
        return 0
    return info.st_size


class DestinationLock:
    """Exclusive lock on ``DEST/.ocimodel.lock`` (creating DEST if needed); a context manager.

    While held, :attr:`dir` is DEST opened as a directory handle: everything a pull does in
    DEST goes through it (see :mod:`ocimodel.dirfd`).
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest / LOCK_NAME
        self._fd: int | None = None
        self._dir: DirHandle | None = None

    @property
    def dir(self) -> DirHandle:
        """DEST, open (only while the lock is held)."""
        if self._dir is None:
            raise RuntimeError("the destination lock is not held")
        return self._dir

    def __enter__(self) -> "DestinationLock":
        for _ in range(_MAX_LOCK_ATTEMPTS):
            directory = DirHandle.open(self.dest, create=True)
            try:
                fd = directory.open_fd(LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except BaseException:
                directory.close()
                raise
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    logger.warning("waiting for another ocimodel pull into %s to finish", self.dest)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                # The holder before us may have removed the file (and DEST) when done: then we
                # hold a lock nobody else can see, so start over on the current path.
                if _same_file(os.fstat(fd), directory.lstat(LOCK_NAME)) and _same_file(
                    os.fstat(directory.fd), _stat_or_none(self.dest)
                ):
                    self._fd, self._dir = fd, directory
                    return self
            except BaseException:
                os.close(fd)
                directory.close()
                raise
            os.close(fd)
            directory.close()
        raise UsageError(f"could not lock {str(self.path)!r}: it keeps being removed by another process")

    def __exit__(self, *exc: object) -> None:
        if self._fd is None or self._dir is None:
            return
        # Unlink while still holding the lock, so a waiter notices (see __enter__).
        try:
            self._dir.unlink(LOCK_NAME)
        finally:
            os.close(self._fd)
            self._dir.close()
            self._fd = self._dir = None


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _same_file(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class Workspace:
    """ocimodel's own area inside a locked directory: the staging directory and the partials.

    ``directory`` is where the files go (DEST, or its version directory), already open.
    """

    def __init__(self, directory: DirHandle) -> None:
        self.dir = directory
        self.dest = directory.path
        for name in directory.names():
            if name.startswith(STAGING_PREFIX):
                try:
                    directory.rmtree(name)  # a killed pull's; we hold the lock
                except (OSError, UnsafeContentError):
                    logger.warning("could not remove the stale staging directory %s", directory.path / name)
        self.staging_name = f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        directory.mkdir(self.staging_name, 0o700)
        self.staging = directory.subdir(self.staging_name)
        self._partials: DirHandle | None = None

    @property
    def partials(self) -> DirHandle:
        """The directory of partial downloads (created on first use)."""
        if self._partials is None:
            self._partials = self.dir.subdir(PARTIAL_DIR, create=True)
        return self._partials

    @staticmethod
    def partial_name(digest: str) -> str:
        """The file name of the partial download of ``digest`` in :attr:`partials`."""
        return digest.replace(":", "-")

    def partial_size(self, digest: str, size: int) -> int:
        """Bytes of ``digest`` already downloaded (see :func:`resumable_size`)."""
        if self.dir.lstat(PARTIAL_DIR) is None:
            return 0
        return resumable_size(self.partials, self.partial_name(digest), size)

    @staticmethod
    def staged_name(digest: str) -> str:
        """The file name the verified content of ``digest`` has in :attr:`staging`."""
        return digest.replace(":", "-")

    def staged(self, digest: str) -> Path:
        """Where the verified content of ``digest`` waits in staging (for readers: hooks, the cache)."""
        return self.staging.path / self.staged_name(digest)

    def discard_partials(self, digests: Iterable[str]) -> None:
        """Delete the partial downloads of ``digests`` (their source proved untrustworthy)."""
        if self.dir.lstat(PARTIAL_DIR) is None:
            return
        for digest in digests:
            self.partials.unlink(self.partial_name(digest))

    def has_partials(self) -> bool:
        """True if any resumable partial download is kept."""
        try:
            return self.dir.lstat(PARTIAL_DIR) is not None and bool(self.partials.names())
        except (OSError, OcimodelError):
            return False

    def close(self, *, remove_dir: Callable[[], None] | None = None) -> None:
        """Remove staging (and the partials dir if empty); then call ``remove_dir`` (which
        removes the directory itself) unless partials worth resuming remain in it."""
        self.staging.close()
        try:
            self.dir.rmtree(self.staging_name)
        except (OSError, UnsafeContentError) as exc:
            logger.warning("could not remove the staging directory %s: %s", self.staging.path, exc)
        keep = self.has_partials()
        if self._partials is not None:
            self._partials.close()
        if not keep:
            self.dir.rmdir(PARTIAL_DIR)
            if remove_dir is not None:
                remove_dir()


class Swap:
    """Moves verified files from staging into a directory so that a failure part-way puts the
    directory back as it was: the files replaced and removed come back, the new ones go.

    A file being replaced is first hardlinked into staging (so the name always exists: a
    reader sees the old file or the new one), or moved there when it cannot be linked.
    """

    def __init__(self, root: DirHandle, staging: DirHandle) -> None:
        self.root = root
        self.staging = staging
        self._undo: list[Callable[[], object]] = []
        self._handles: list[DirHandle] = []
        self._removed: list[str] = []
        self._count = 0

    def _backup_name(self) -> str:
        self._count += 1
        return f"backup-{self._count}"

    def _parent(self, title: str, *, create: bool) -> tuple[DirHandle, str]:
        created: list[tuple[DirHandle, str]] = []
        try:
            parent, name = open_parent(self.root, title, create=create, created=created)
        finally:
            for holder, made in created:  # undone last-made first, after the files in them
                self._handles.append(holder)
                self._undo.append(functools.partial(holder.rmdir, made))
        self._handles.append(parent)
        return parent, name

    def put(self, title: str, staged: str, mode: int, *, copy: bool = False) -> None:
        """Move the staged file ``staged`` to ``title`` (a copy of it with ``copy``), mode ``mode``."""
        parent, name = self._parent(title, create=True)
        if copy:
            source = f"copy-{self._count}-{secrets.token_hex(4)}"
            with open(staged, "rb", opener=self.staging.opener()) as src, open(
                source, "xb", opener=self.staging.opener()
            ) as dst:
                shutil.copyfileobj(src, dst, _COPY_PIECE)
        else:
            source = staged
        fd = self.staging.open_fd(source, os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        existing = parent.lstat(name)
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise UsageError(f"cannot write {title!r}: {str(parent.path / name)!r} is a directory")
            backup = self._backup_name()
            try:
                os.link(name, backup, src_dir_fd=parent.fd, dst_dir_fd=self.staging.fd, follow_symlinks=False)
            except OSError:
                parent.rename(name, self.staging, backup)  # e.g. protected_hardlinks: not our file
            self._undo.append(functools.partial(self.staging.rename, backup, parent, name))
        else:
            self._undo.append(functools.partial(parent.unlink, name))
        self.staging.rename(source, parent, name)

    def remove_installed(self, title: str, size: int, digest: str) -> bool:
        """Take away ``title`` if it is still the plain file a pull installed there (its size
        and sha256 as recorded); anything else (edited, replaced, through a symlink) stays."""
        try:
            parent, name = self._parent(title, create=False)
            fd = parent.open_fd(name, os.O_RDONLY | os.O_NONBLOCK)
        except (OSError, OcimodelError):
            return False
        with os.fdopen(fd, "rb", buffering=0) as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size != size or _sha256(f) != digest:
                logger.info("keeping %s: it changed since ocimodel installed it", parent.path / name)
                return False
        backup = self._backup_name()
        parent.rename(name, self.staging, backup)
        self._undo.append(functools.partial(self.staging.rename, backup, parent, name))
        self._removed.append(title)
        return True

    def undo(self) -> None:
        """Put everything back (last change first); keeps going past a step that fails."""
        while self._undo:
            step = self._undo.pop()
            try:
                step()
            except OSError as exc:
                logger.error("could not restore %s while rolling back a failed pull: %s", self.root.path, exc)

    def tidy(self) -> None:
        """After success: remove directories that removing files left empty (best effort)."""
        for title in self._removed:
            parts = title.split("/")
            for depth in range(len(parts) - 1, 0, -1):
                try:
                    parent, name = open_parent(self.root, "/".join(parts[:depth]))
                except (OSError, OcimodelError):
                    break
                with parent:
                    if not parent.rmdir(name):
                        break

    def close(self) -> None:
        """Release the directories held (after :meth:`undo` or on success)."""
        self._undo.clear()
        for handle in self._handles:
            handle.close()
        self._handles.clear()


def _sha256(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_COPY_PIECE):
        h.update(chunk)
    return "sha256:" + h.hexdigest()
