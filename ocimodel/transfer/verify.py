"""Write a blob to disk while checking its size and sha256: bytes are never trusted unverified.

Like oras-go's ``content.VerifyReader``: writing past the declared size is an error,
stopping short is an error, and :meth:`VerifyingWriter.finish` is the only way to learn
the content is good. The caller's thread writes each chunk to the file while a worker thread
hashes it, so receiving, writing and hashing overlap (file writes and hashlib both release
the GIL). Measured here: handing the writes to the worker too made it the bottleneck and
halved pull speed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import DigestMismatchError, SizeMismatchError
from .dirfd import DirHandle

_QUEUE_DEPTH = 8  # chunks of up to 1 MiB: bounded, so slow hashing back-pressures the network, not RAM
_STOP = b""
_COPY_PIECE = 1024 * 1024


def _opener(into: DirHandle | None) -> Callable[[str, int], int]:
    """Opens a target never through a symlink at its name; with ``into``, relative to that
    directory, so no component of the path can be one either (see :mod:`ocimodel.dirfd`)."""
    if into is not None:
        return into.opener()
    return lambda path, flags: os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def remove_target(path: str | Path, into: DirHandle | None = None) -> None:
    """Remove a writer's target (a name in ``into``, or a path) if present."""
    if into is not None:
        into.unlink(str(path))
    else:
        Path(path).unlink(missing_ok=True)


class VerifyingWriter:
    """Append bytes to ``path`` (resuming after ``offset`` already-written bytes).

    With ``into``, ``path`` is a file name in that open directory.
    """

    def __init__(
        self, path: str | Path, digest: str, size: int, *, what: str, offset: int = 0, into: DirHandle | None = None
    ) -> None:
        if not digest.startswith("sha256:"):
            raise DigestMismatchError(f"{what}: unsupported digest algorithm in {digest!r}")
        self.path = path
        self._opener = _opener(into)
        self.digest = digest
        self.size = size
        self.what = what
        self.written = offset
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_DEPTH)
        if offset:
            self._hash_existing(offset)
            self._file: BinaryIO = open(path, "r+b", opener=self._opener)
            self._file.seek(offset)
            self._file.truncate()
        else:
            self._file = open(path, "wb", opener=self._opener)
        self._thread = threading.Thread(target=self._drain, name="ocimodel-hash", daemon=True)
        self._thread.start()

    def _hash_existing(self, offset: int) -> None:
        with open(self.path, "rb", opener=self._opener) as f:
            remaining = offset
            while remaining:
                chunk = f.read(min(remaining, 1024 * 1024))
                if not chunk:
                    raise SizeMismatchError(f"{self.what}: partial file shorter than expected")
                self._hash.update(chunk)
                remaining -= len(chunk)

    def _drain(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is _STOP:
                return
            self._hash.update(chunk)

    def write(self, chunk: bytes) -> None:
        """Write ``chunk`` and queue it for hashing; SizeMismatchError as soon as the size would be exceeded."""
        if not chunk:
            return
        if self.written + len(chunk) > self.size:
            self.abort()
            raise SizeMismatchError(
                f"{self.what}: registry sent more than the declared {self.size} bytes; refusing it"
            )
        self.written += len(chunk)
        self._file.write(chunk)
        self._queue.put(chunk)

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if not self._file.closed:
            self._file.close()

    def finish(self) -> None:
        """Flush, close and check size and digest; raises on any mismatch."""
        self._join()
        if self.written != self.size:
            raise SizeMismatchError(f"{self.what}: got {self.written} bytes, expected {self.size}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise DigestMismatchError(
                f"{self.what}: digest mismatch (expected {self.digest}, got {actual}); refusing it"
            )

    def abort(self) -> None:
        """Stop the worker and close the file (the caller removes it)."""
        self._join()

    def __enter__(self) -> "VerifyingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def copy_verified(
    source: Path,
    target: str | Path,
    digest: str,
    size: int,
    *,
    what: str,
    progress: Callable[[int], None] | None = None,
    into: DirHandle | None = None,
) -> None:
    """Copy ``source`` to ``target`` through a :class:`VerifyingWriter`; ``target`` removed on failure.
    With ``into``, ``target`` is a file name in that open directory.

    Used for local copies of content that is only *believed* good (a cache entry): one read
    both copies and re-checks the digest, so a corrupted cache can never reach a destination.
    """
    writer = VerifyingWriter(target, digest, size, what=what, into=into)
    try:
        with open(source, "rb", buffering=0) as f:
            while True:
                chunk = f.read(_COPY_PIECE)
                if not chunk:
                    break
                writer.write(chunk)
                if progress:
                    progress(len(chunk))
        writer.finish()
    except BaseException:
        writer.abort()
        remove_target(target, into)
        raise
