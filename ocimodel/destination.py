"""The pull destination directory: safety checks, a lock, free space, and resumable partials.

Everything ocimodel keeps inside DEST is named ``DEST/.ocimodel*`` (titles may not use that
prefix, see :mod:`ocimodel.paths`), which is what makes the pull rule checkable: *on failure
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
    are renamed into place together. Stale ones (from a killed pull) are removed under the lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import UnsafeContentError, UsageError
from .paths import RESERVED_PREFIX

logger = logging.getLogger(__name__)

LOCK_NAME = f"{RESERVED_PREFIX}.lock"
PARTIAL_DIR = f"{RESERVED_PREFIX}-partial"
STAGING_PREFIX = f"{RESERVED_PREFIX}-tmp-"
_MAX_LOCK_ATTEMPTS = 100  # each retry means another process removed the lock file under us


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


def resumable_size(partial: Path, size: int) -> int:
    """Bytes of a ``size``-byte blob already in ``partial`` (0 if none; an oversized one is dropped)."""
    try:
        have = partial.stat().st_size
    except OSError:
        return 0
    if have > size:
        partial.unlink(missing_ok=True)
        return 0
    return have


class DestinationLock:
    """Exclusive lock on ``DEST/.ocimodel.lock`` (creating DEST if needed); a context manager."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "DestinationLock":
        for _ in range(_MAX_LOCK_ATTEMPTS):
            self.dest.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self._fd = fd
                    return self
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise UsageError(f"could not lock {str(self.path)!r}: it keeps being removed by another process")

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so a waiter notices (see __enter__).
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


class Workspace:
    """ocimodel's own area inside a locked DEST: the staging directory and the partials."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.partials = dest / PARTIAL_DIR
        for stale in dest.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)  # a killed pull's; we hold the lock
        self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))

    def partial_path(self, digest: str) -> Path:
        """Where the partial download of ``digest`` is kept."""
        return self.partials / digest.replace(":", "-")

    def partial_size(self, digest: str, size: int) -> int:
        """Bytes of ``digest`` already downloaded (see :func:`resumable_size`)."""
        return resumable_size(self.partial_path(digest), size)

    def staged(self, digest: str) -> Path:
        """Where the verified content of ``digest`` waits in staging."""
        return self.staging / digest.replace(":", "-")

    def discard_partials(self, digests: Iterable[str]) -> None:
        """Delete the partial downloads of ``digests`` (their source proved untrustworthy)."""
        for digest in digests:
            self.partial_path(digest).unlink(missing_ok=True)

    def has_partials(self) -> bool:
        """True if any resumable partial download is kept."""
        try:
            return any(self.partials.iterdir())
        except OSError:
            return False

    def close(self, *, remove_dest: bool) -> None:
        """Remove staging (and the partials dir if empty); with ``remove_dest``, DEST itself
        unless partials worth resuming remain in it."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if not self.has_partials():
            shutil.rmtree(self.partials, ignore_errors=True)
            if remove_dest:
                shutil.rmtree(self.dest, ignore_errors=True)
