"""An OCI image layout directory on disk: the files, read without following links, written so
that a crash never leaves a half-written file under a real name.

Reads: ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>`` are opened relative to the
layout's directory descriptors with ``O_NOFOLLOW`` (``blobs`` and ``blobs/sha256`` too), and
must be regular files: a symlink planted anywhere in the layout is refused, never followed.
Only names built from a validated ``sha256:<64 hex>`` digest are ever opened, so no index
entry can point outside ``blobs/``.

Writes: a blob goes to ``blobs/sha256/.tmp-<random>``, is hashed on the way and checked
against its digest, fsynced, and renamed to its name; ``index.json`` is replaced the same way
(temp, fsync, rename, fsync of the directory), after the blobs it lists. Writers serialise
their index updates with ``flock`` on ``.ocimodel.lock`` in the layout. A killed writer leaves
at worst ``.tmp-*`` files, which readers never look at.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import stat
import threading
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Iterable, Iterator, Protocol

from ..errors import DigestMismatchError, IntegrityError, NotFoundError, SizeMismatchError, UnsafeContentError, UsageError
from ..reference import validate_digest
from .index import EMPTY_INDEX, INDEX_FILE, LAYOUT_FILE, LAYOUT_HEADER

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
LOCK_FILE = ".ocimodel.lock"
TEMP_PREFIX = ".tmp-"
CHUNK = 1024 * 1024


class Readable(Protocol):
    """What a store hands out for a blob: a file, or a member of an archive read in place."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, /) -> object: ...


def blob_name(digest: str) -> str:
    """``<hex>`` of a validated sha256 digest (the only names ever opened under blobs/sha256)."""
    return validate_digest(digest).partition(":")[2]


def _refused(where: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return UnsafeContentError(f"{where} is a symbolic link or not what a layout holds there; refusing it")
    return IntegrityError(f"{where}: {exc.strerror}")


def _open_file(name: str, dir_fd: int, where: str) -> IO[bytes] | None:
    """The regular file ``name`` in ``dir_fd`` opened for reading; None if absent."""
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refused(where, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeContentError(f"{where} is not a regular file; refusing it")
    return os.fdopen(fd, "rb")


def _fsync_dir(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass


class LayoutDir:
    """The layout directory at ``path`` (``name`` for messages, like ``oci:PATH``)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self._guard = threading.Lock()
        self._prepared = False

    # -- reading ---------------------------------------------------------------------------------

    @contextmanager
    def _dir(self, *parts: str) -> Iterator[int | None]:
        """The directory ``path/parts...`` opened without following links; None if absent."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        except NotADirectoryError:
            raise UsageError(f"{self.name}: {self.path!r} is not a directory") from None
        try:
            where = self.name
            for part in parts:
                where += "/" + part
                try:
                    child = os.open(part, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    os.close(fd)
                    fd = -1
                    break
                except OSError as exc:
                    raise _refused(where, exc) from None
                os.close(fd)
                fd = child
            yield fd if fd >= 0 else None
        finally:
            if fd >= 0:
                os.close(fd)

    def exists(self) -> bool:
        """Whether ``path`` exists at all (a file or directory)."""
        return os.path.lexists(self.path)

    def read_file(self, name: str, max_size: int) -> bytes | None:
        """``oci-layout`` or ``index.json``; None if absent; refused over ``max_size``."""
        with self._dir() as fd:
            if fd is None:
                return None
            handle = _open_file(name, fd, f"{self.name}/{name}")
        if handle is None:
            return None
        with handle:
            data = handle.read(max_size + 1)
        if len(data) > max_size:
            raise IntegrityError(f"{self.name}/{name}: over the {max_size // 1024} KiB limit; refusing it")
        return data

    def blob_size(self, digest: str) -> int | None:
        """The size of the blob file ``digest``; None if absent."""
        with self._open_blob(digest) as handle:
            return None if handle is None else os.fstat(handle.fileno()).st_size

    def open_blob(self, digest: str) -> AbstractContextManager[Readable | None]:
        """The blob file ``digest`` (unverified bytes), or None if absent."""
        return self._open_blob(digest)

    @contextmanager
    def _open_blob(self, digest: str) -> Iterator[IO[bytes] | None]:
        name = blob_name(digest)
        with self._dir("blobs", "sha256") as fd:
            handle = None if fd is None else _open_file(name, fd, f"{self.name}/blobs/sha256/{name}")
        if handle is None:
            yield None
            return
        with handle:
            yield handle

    # -- writing -----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make ``path`` a layout if it is none yet (a missing or empty directory); refuse a
        directory holding other things, which a write would mix a layout into. Under the
        writer lock, and once per instance (push stores blobs from several threads)."""
        with self._guard:
            if self._prepared:
                return
            os.makedirs(self.path, exist_ok=True)
            self._refuse_foreign()  # before the lock file is made: a refused write writes nothing
            with self.lock():
                self._prepare_locked()
            self._prepared = True

    def foreign_content(self) -> list[str]:
        """What the directory holds besides what a writer creating the layout makes before its
        ``oci-layout`` file (written last): a directory without ``oci-layout`` and with nothing
        foreign is a layout not created yet (or being created by another thread or process)."""
        ours = ("blobs", INDEX_FILE, LOCK_FILE)
        return [n for n in os.listdir(self.path) if n not in ours and not n.startswith(TEMP_PREFIX)]

    def _refuse_foreign(self) -> None:
        # What a writer killed while creating the layout leaves is no foreign content.
        found = self.foreign_content()
        if found and self.read_file(LAYOUT_FILE, 64 * 1024) is None:
            raise UsageError(f"{self.name}: {self.path!r} is neither empty nor an OCI image layout; not writing into it")

    def _prepare_locked(self) -> None:
        self._refuse_foreign()
        if self.read_file(LAYOUT_FILE, 64 * 1024) is None:
            with self._dir() as fd:
                assert fd is not None
                self._mkdir(fd, "blobs")
            # index.json first: a layout is whatever has oci-layout, so that comes last.
            self.write_file(INDEX_FILE, EMPTY_INDEX)
            self.write_file(LAYOUT_FILE, LAYOUT_HEADER)
        with self._dir("blobs") as fd:
            if fd is None:
                raise IntegrityError(f"{self.name}: no blobs directory")
            self._mkdir(fd, "sha256")

    def _mkdir(self, dir_fd: int, name: str) -> None:
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass

    def _write_temp(self, dir_fd: int, chunks: Iterable[bytes]) -> tuple[str, str, int]:
        """``chunks`` into a fresh temp file in ``dir_fd``, fsynced; (name, sha256, size)."""
        temp = TEMP_PREFIX + secrets.token_hex(8)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb", closefd=True) as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(temp, dir_fd=dir_fd)
            raise
        return temp, "sha256:" + digest.hexdigest(), size

    def write_blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> bool:
        """Store ``chunks`` as the blob ``digest`` of ``size`` bytes, checked; False if present."""
        name = blob_name(digest)
        with self._dir("blobs", "sha256") as fd:
            if fd is None:
                raise IntegrityError(f"{self.name}: no blobs/sha256 directory")
            try:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
                return False
            except FileNotFoundError:
                pass
            temp, actual, written = self._write_temp(fd, chunks)
            if written != size or actual != digest:
                os.unlink(temp, dir_fd=fd)
                error = SizeMismatchError if written != size else DigestMismatchError
                raise error(f"blob {digest[:19]} for {self.name}: got {written} bytes hashing to {actual}; not stored")
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            _fsync_dir(fd)
        return True

    def write_file(self, name: str, data: bytes) -> None:
        """Replace ``index.json`` or ``oci-layout`` atomically."""
        with self._dir() as fd:
            if fd is None:
                raise NotFoundError(f"{self.name}: the layout directory disappeared")
            temp, _, _ = self._write_temp(fd, [data])
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            _fsync_dir(fd)

    def remove_blob(self, digest: str) -> None:
        with self._dir("blobs", "sha256") as fd:
            if fd is not None:
                try:
                    os.unlink(blob_name(digest), dir_fd=fd)
                except FileNotFoundError:
                    pass

    def writer(self) -> "LayoutDir":
        """This directory, made a layout if it is none yet (see :meth:`prepare`)."""
        self.prepare()
        return self

    def close(self, *, commit: bool = True) -> None:
        """Nothing to do: every write is already in place."""

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the layout's writer lock (``flock`` on ``.ocimodel.lock``)."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                raise NotFoundError(f"{self.name}: the layout directory disappeared")
            fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


__all__ = ["INDEX_FILE", "LAYOUT_FILE", "LayoutDir", "blob_name"]
