"""A local, content-addressed blob cache, so a model is downloaded once per machine.

Layout under the cache root (``--cache DIR``; default ``$OCIMODEL_CACHE_DIR`` or the platform's
user cache directory, e.g. ``~/.cache/ocimodel``)::

    blobs/sha256/<hex>   verified blob contents, read-only (mode 0444)
    tmp/                 entries being written (renamed into blobs/ when complete)
    index.sqlite         file digests and blob locations (see :mod:`ocimodel.digestcache`)

Rules that keep it safe:

- Only bytes that already passed a digest check enter the cache (a pull's verified download),
  and an entry is written under a temporary name and renamed, so a reader never sees half of it.
- Entries are *copied* into a destination, never hardlinked: a hardlinked file edited in place
  in DEST (``open(..., "r+b")``) would silently corrupt the cache and every later pull. Making
  the links read-only would dodge that but would force the cache's mode onto the user's files
  (a 0755 script) and surprise anyone editing a pulled config. The copy re-reads the entry
  through the sha256 check (about 1.5 GB/s here), so even a cache corrupted on disk cannot
  reach a destination: a bad entry is evicted and the blob downloaded again.
- Adding to the cache hardlinks the freshly verified file when the cache is on the same
  filesystem (a cold pull would otherwise write every byte twice: measured 1 GiB pull 3.6 s
  instead of ~1.5 s), else tries a reflink (copy-on-write clone: free on btrfs/XFS) and falls
  back to a kernel copy. A linked entry shares its inode with the pulled file, so an edit in
  DEST would change the entry: that is why every use re-verifies the entry's digest (above)
  and a changed entry is evicted, never served. Linked entries keep the pulled file's mode
  (changing it would change the user's file). Adding is best effort: a full or read-only cache
  only logs, never fails.

There is no automatic eviction yet: delete the directory (or ``blobs/``) to reclaim space.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from ..descriptor import Descriptor
from ..errors import IntegrityError
from .digestcache import DigestCache
from .dirfd import DirHandle
from .verify import copy_verified

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "OCIMODEL_CACHE_DIR"
_FICLONE = 0x40049409  # linux/fs.h: clone a whole file (reflink)
# Leave this much free on the cache's filesystem: the cache must never be what fills a disk.
_CACHE_FREE_RESERVE = 1024**3


def default_cache_dir() -> Path:
    """``$OCIMODEL_CACHE_DIR``, else the platform's user cache directory for ocimodel."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # small, but only needed when a cache is actually used

    return Path(platformdirs.user_cache_dir("ocimodel", appauthor=False))


def open_cache(cache_dir: str | Path | None = None, *, enabled: bool = True) -> "BlobCache | None":
    """The cache to use for a transfer: None when disabled (``--no-cache``)."""
    if not enabled:
        return None
    return BlobCache(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())


class BlobCache:
    """Verified blobs by digest under ``root``, plus the :class:`DigestCache` index beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = DigestCache(root / "index.sqlite")

    def close(self) -> None:
        """Release the index database."""
        self.index.close()

    def blob_path(self, digest: str) -> Path:
        """Where the entry for ``digest`` lives (whether or not it exists)."""
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise IntegrityError(f"refusing to cache a blob with an unexpected digest {digest!r}")
        return self.root / "blobs" / algorithm / hexdigest

    def has(self, descriptor: Descriptor) -> bool:
        """True if an entry exists with the descriptor's size (a wrong-sized entry is evicted)."""
        path = self.blob_path(descriptor.digest)
        try:
            size = path.stat().st_size
        except OSError:
            return False
        if size != descriptor.size:
            logger.warning("cache entry %s has %d bytes, not %d; discarding it", path, size, descriptor.size)
            self.evict(descriptor.digest)
            return False
        return True

    def copy_out(
        self,
        descriptor: Descriptor,
        target: str | Path,
        progress: Callable[[int], None] | None = None,
        *,
        into: DirHandle | None = None,
    ) -> bool:
        """Copy the entry to ``target`` (a name in ``into`` if given), re-verifying it; False
        (entry evicted) if it is not good."""
        if not self.has(descriptor):
            return False
        try:
            copy_verified(
                self.blob_path(descriptor.digest),
                target,
                descriptor.digest,
                descriptor.size,
                what=f"cached blob {descriptor.digest[:19]}",
                progress=progress,
                into=into,
            )
        except IntegrityError as exc:
            logger.warning("%s; discarding the cache entry and downloading again", exc)
            self.evict(descriptor.digest)
            return False
        except FileNotFoundError:
            return False  # evicted meanwhile by another process
        return True

    def add(self, descriptor: Descriptor, verified: Path) -> None:
        """Store a copy of ``verified`` (already checked against the descriptor); best effort."""
        entry = self.blob_path(descriptor.digest)
        if entry.exists():
            return
        tmp = self.root / "tmp" / f"{entry.name}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(tmp.parent).free < descriptor.size + _CACHE_FREE_RESERVE:
                logger.info("not caching %s: too little free space in %s", descriptor.digest, self.root)
                return
            if not _try_link(verified, tmp):
                _clone_or_copy(verified, tmp)
                os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            entry.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, entry)
        except OSError as exc:
            logger.warning("could not add %s to the cache %s: %s", descriptor.digest, self.root, exc)
        finally:
            _remove_quietly(tmp)

    def evict(self, digest: str) -> None:
        """Remove the entry for ``digest`` if present."""
        try:
            self.blob_path(digest).unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not remove cache entry %s: %s", digest, exc)


def _try_link(source: Path, target: Path) -> bool:
    """Hardlink ``source`` as ``target``; False where the filesystem or platform cannot."""
    try:
        os.link(source, target)
    except OSError:
        return False
    return True


def _clone_or_copy(source: Path, target: Path) -> None:
    """Reflink ``source`` to ``target`` where the filesystem can, else copy (in the kernel)."""
    try:
        import fcntl

        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        return
    except (OSError, ImportError):
        _remove_quietly(target)
    shutil.copyfile(source, target)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
