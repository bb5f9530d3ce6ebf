"""An ``oci-archive:`` file as a store: read in place, written through a staging directory.

Reads come from the archive as it is (:class:`~.archive.TarLayout`). The first write creates
a staging layout directory next to FILE (``.FILE.ocimodel-<random>``, holding the archive's
``index.json``); blobs and index updates go there, and reads look there first. On a
successful close the new archive is written: every blob of the old one, the staged blobs, the
staged ``index.json`` (so writing *adds* to an existing archive, where skopeo overwrites it),
to a temp name renamed over FILE. A failed or killed writer leaves FILE as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from contextlib import contextmanager
from functools import partial
from typing import Iterator

from .archive import Source, TarLayout, write_archive
from .files import TEMP_PREFIX, LayoutDir, Readable
from .index import INDEX_FILE, LAYOUT_FILE, LAYOUT_HEADER, MAX_INDEX_SIZE


class ArchiveStore:
    """The layout in the tar file ``path`` (``name``: ``oci-archive:PATH``)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self._tar: TarLayout | None = None
        self._loaded = False
        self._staging: LayoutDir | None = None
        self._guard = threading.Lock()  # push stores blobs from several threads

    @property
    def tar(self) -> TarLayout | None:
        if not self._loaded:
            self._tar = TarLayout(self.path, self.name) if os.path.lexists(self.path) else None
            self._loaded = True
        return self._tar

    def exists(self) -> bool:
        return self._staging is not None or os.path.lexists(self.path)

    def read_file(self, name: str, max_size: int) -> bytes | None:
        if self._staging is not None:
            return self._staging.read_file(name, max_size)
        return self.tar.read_file(name, max_size) if self.tar else None

    def blob_size(self, digest: str) -> int | None:
        if self._staging is not None and (size := self._staging.blob_size(digest)) is not None:
            return size
        return self.tar.blob_size(digest) if self.tar else None

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[Readable | None]:
        if self._staging is not None and self._staging.blob_size(digest) is not None:
            with self._staging.open_blob(digest) as handle:
                yield handle
        elif self.tar is not None:
            with self.tar.open_blob(digest) as handle:
                yield handle
        else:
            yield None

    def writer(self) -> LayoutDir:
        """The staging directory, made on first use from the archive's index."""
        with self._guard:
            return self._writer()

    def _writer(self) -> LayoutDir:
        if self._staging is None:
            tar = self.tar
            directory, base = os.path.split(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                from ..errors import NotFoundError

                raise NotFoundError(f"{self.name}: the directory {directory!r} does not exist")
            staging = LayoutDir(os.path.join(directory, f".{base}.ocimodel-{secrets.token_hex(6)}"), self.name)
            staging.prepare()
            if tar is not None:
                staging.write_file(LAYOUT_FILE, tar.read_file(LAYOUT_FILE, 64 * 1024) or LAYOUT_HEADER)
                index = tar.read_file(INDEX_FILE, MAX_INDEX_SIZE)
                if index is not None:
                    staging.write_file(INDEX_FILE, index)
            self._staging = staging
        return self._staging

    def close(self, *, commit: bool = True) -> None:
        """Write the archive out (if anything was written and ``commit``); drop the staging."""
        staging, self._staging = self._staging, None
        if staging is None:
            return
        try:
            if commit:
                write_archive(self.path, self._members(staging))
        finally:
            shutil.rmtree(staging.path, ignore_errors=True)

    def _members(self, staging: LayoutDir) -> list[Source]:
        members: dict[str, Source] = {}
        if self.tar is not None:
            tar = self.tar
            for member in tar.blob_members():
                digest = "sha256:" + member.rpartition("/")[2]
                members[member] = (member, tar.members[member].size, partial(tar.open_blob, digest))
        blobs = os.path.join(staging.path, "blobs", "sha256")
        for hexname in os.listdir(blobs):
            if hexname.startswith(TEMP_PREFIX):
                continue
            digest = "sha256:" + hexname
            size = staging.blob_size(digest)
            if size is not None:
                members[f"blobs/sha256/{hexname}"] = (f"blobs/sha256/{hexname}", size, partial(staging.open_blob, digest))
        for name in (INDEX_FILE, LAYOUT_FILE):
            data = staging.read_file(name, MAX_INDEX_SIZE)
            if data is not None:
                members[name] = (name, len(data), partial(_bytes, data))
        return list(members.values())


@contextmanager
def _bytes(data: bytes) -> Iterator[Readable | None]:
    import io

    yield io.BytesIO(data)
