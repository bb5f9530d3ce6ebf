"""What ocimodel remembers between runs about content it has seen (a small sqlite file).

Two tables, both pure hints that can be deleted at any time:

- ``files``: the sha256 of a local file keyed by (real path, size, mtime_ns, inode, device),
  so pushing an unchanged model again does not re-read gigabytes to rehash them. A file whose
  mtime is too close to the time it was hashed is not remembered ("racily clean", as git calls
  it: a write in the same timestamp tick would go unnoticed).
- ``blobs``: which repositories of which registry a digest was seen in (pushed or pulled), so a
  push to another repository can ask the registry to mount the blob instead of uploading it.

sqlite gives atomic updates and locking between concurrent processes for free; a corrupt or
unwritable database only disables the hints (a warning is logged), it never fails a transfer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Files modified less than this before hashing started may still be changing in the same tick.
RACY_WINDOW_NS = 2_000_000_000
_MAX_REPOSITORIES = 8  # mount candidates remembered per blob and registry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, device INTEGER, digest TEXT
);
CREATE TABLE IF NOT EXISTS blobs (
    registry TEXT, digest TEXT, repository TEXT, seen REAL,
    PRIMARY KEY (registry, digest, repository)
);
"""


def _file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


class DigestCache:
    """File digests and blob locations, in the sqlite database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
                db.executescript(_SCHEMA)
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                self._disable(exc)
        return self._db

    def _disable(self, exc: Exception) -> None:
        logger.warning("ocimodel cache index %s unusable (%s); continuing without it", self.path, exc)
        self._broken = True
        self._db = None

    def _execute(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            db = self._connect()
            if db is None:
                return []
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                self._disable(exc)
                return []

    def close(self) -> None:
        """Close the database (it reopens on next use)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- file digests ---------------------------------------------------------------------

    def lookup_file(self, path: Path) -> str | None:
        """The remembered digest of ``path`` if the file is unchanged since, else None."""
        try:
            st = path.stat()
        except OSError:
            return None
        rows = self._execute(
            "SELECT size, mtime_ns, inode, device, digest FROM files WHERE path = ?", (str(path.resolve()),)
        )
        if rows and tuple(rows[0][:4]) == _file_key(st):
            return str(rows[0][4])
        return None

    def store_file(self, path: Path, digest: str, before: os.stat_result, hashing_started_ns: int) -> None:
        """Remember ``digest`` for ``path``, hashed from the state ``before`` (stat taken first).

        Skipped if the file changed while it was hashed, or was modified so shortly before
        hashing began that a later write could keep the same mtime.
        """
        try:
            after = path.stat()
        except OSError:
            return
        if _file_key(after) != _file_key(before) or before.st_mtime_ns > hashing_started_ns - RACY_WINDOW_NS:
            return
        self._execute(
            "INSERT OR REPLACE INTO files (path, size, mtime_ns, inode, device, digest) VALUES (?, ?, ?, ?, ?, ?)",
            (str(path.resolve()), *_file_key(after), digest),
        )

    # -- blob locations -------------------------------------------------------------------

    def remember_blob(self, registry: str, repository: str, digest: str) -> None:
        """Note that ``registry``'s ``repository`` holds ``digest``."""
        self._execute(
            "INSERT OR REPLACE INTO blobs (registry, digest, repository, seen) VALUES (?, ?, ?, ?)",
            (registry, digest, repository, time.time()),
        )

    def repositories_with(self, registry: str, digest: str, *, exclude: str | None = None) -> list[str]:
        """Repositories of ``registry`` known to hold ``digest``, most recently seen first."""
        rows = self._execute(
            "SELECT repository FROM blobs WHERE registry = ? AND digest = ? ORDER BY seen DESC LIMIT ?",
            (registry, digest, _MAX_REPOSITORIES + 1),
        )
        return [str(r[0]) for r in rows if r[0] != exclude][:_MAX_REPOSITORIES]
