"""An OCI image layout as one tar file (``oci-archive:FILE``): read in place, written whole.

Reading indexes the tar once (member name -> offset and size) and reads members where they
lie: nothing is extracted. Only what a layout holds is accepted: ``oci-layout``,
``index.json``, the directories ``blobs/`` and ``blobs/sha256/`` and regular files
``blobs/sha256/<64 hex>``, under relative names (a ``./`` prefix is allowed, as oras-go
allows it). Links, devices, sparse files, absolute names, ``..``, duplicate names and any
other member make the whole archive refused (:class:`UnsafeContentError`).

Writing (:func:`write_archive`) produces what skopeo writes: an uncompressed tar whose root is
the layout's contents, regular files and directories only, uid/gid 0, modes 0644/0755, no
``./`` prefix, a fixed timestamp, blobs in digest order; to a temp name next to FILE, fsynced,
then renamed over it.
"""

from __future__ import annotations

import os
import re
import secrets
import tarfile
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import IO, Callable, Iterator

from ..errors import IntegrityError, NotFoundError, UnsafeContentError, UsageError
from .files import CHUNK, Readable, blob_name
from .index import INDEX_FILE, LAYOUT_FILE

#: More members than this is no layout ocimodel wrote or could use; refused before indexing more.
MAX_MEMBERS = 100_000
_BLOB_RE = re.compile(r"blobs/sha256/[0-9a-f]{64}")
_DIRS = ("blobs", "blobs/sha256")
#: A fixed member time, so the same layout makes the same bytes (skopeo can fix one too).
MTIME = 0


@dataclass(frozen=True)
class Member:
    offset: int
    size: int


def _index_members(path: str, name: str) -> dict[str, Member]:
    members: dict[str, Member] = {}
    try:
        archive = tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise NotFoundError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{name}: {path!r} is a directory (an oci: layout?), not a tar file") from None
    except tarfile.TarError as exc:
        raise IntegrityError(f"{name}: not an uncompressed tar file ({exc})") from None
    with archive:
        count = 0
        while True:
            try:
                info = archive.next()
            except tarfile.TarError as exc:
                raise IntegrityError(f"{name}: damaged tar file ({exc})") from None
            if info is None:
                break
            count += 1
            if count > MAX_MEMBERS:
                raise IntegrityError(f"{name}: more than {MAX_MEMBERS} members; refusing it")
            member = info.name[2:] if info.name.startswith("./") else info.name
            member = member.rstrip("/") if info.isdir() else member
            shown = info.name[:200]
            if member.startswith("/") or ".." in member.split("/") or member in members:
                raise UnsafeContentError(f"{name}: member {shown!r} is absolute, climbs out or is repeated; refusing the archive")
            if info.isdir() and member in _DIRS:
                members[member] = Member(0, 0)
                continue
            if not info.isreg() or info.issparse():
                raise UnsafeContentError(f"{name}: member {shown!r} is not a regular file (a link or device); refusing the archive")
            if member not in (LAYOUT_FILE, INDEX_FILE) and not _BLOB_RE.fullmatch(member):
                raise UnsafeContentError(f"{name}: member {shown!r} is not part of an OCI image layout; refusing the archive")
            members[member] = Member(info.offset_data, info.size)
    end = os.path.getsize(path)
    if any(m.offset + m.size > end for m in members.values()):
        raise IntegrityError(f"{name}: the archive is truncated (a member runs past its end)")
    return members


class TarLayout:
    """The layout in the tar file at ``path``, read in place (``name`` for messages)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.members = _index_members(path, name)

    @contextmanager
    def _member(self, member: str) -> Iterator[Readable | None]:
        found = self.members.get(member)
        if found is None:
            yield None
            return
        with open(self.path, "rb") as handle:
            handle.seek(found.offset)
            yield _Slice(handle, found.size)

    def read_file(self, name: str, max_size: int) -> bytes | None:
        with self._member(name) as handle:
            if handle is None:
                return None
            data = handle.read(max_size + 1)
        if len(data) > max_size:
            raise IntegrityError(f"{self.name}/{name}: over the {max_size // 1024} KiB limit; refusing it")
        return data

    def blob_size(self, digest: str) -> int | None:
        found = self.members.get("blobs/sha256/" + blob_name(digest))
        return None if found is None else found.size

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[Readable | None]:
        with self._member("blobs/sha256/" + blob_name(digest)) as handle:
            yield handle

    def blob_members(self) -> list[str]:
        return [m for m in self.members if m.startswith("blobs/sha256/")]


class _Slice:
    """``size`` bytes of ``handle`` from where it stands (a member in place)."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle = handle
        self._left = size
        self._size = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._handle.read(n)
        if len(data) < n:
            raise IntegrityError("the archive ends inside a member; it is truncated")
        self._left -= len(data)
        return data

    def seek(self, offset: int) -> None:
        start = self._handle.tell() - (self._size - self._left)
        self._handle.seek(start + offset)
        self._left = self._size - offset

    def fileno(self) -> int:
        raise OSError("a member of an archive has no file descriptor")

    def close(self) -> None:
        pass


#: A member to write: its name, size, and how to open its bytes (a context manager).
Source = tuple[str, int, Callable[[], AbstractContextManager[Readable | None]]]


def write_archive(path: str, files: list[Source]) -> None:
    """Write the tar of a layout to ``path`` atomically: ``files`` are (member name, size,
    opener) for ``oci-layout``, ``index.json`` and the blobs; directories are added."""
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{secrets.token_hex(8)}")
    order = {LAYOUT_FILE: 2, INDEX_FILE: 1}
    files = sorted(files, key=lambda f: (order.get(f[0], 0), f[0]))
    try:
        with open(temp, "xb") as raw:
            with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as archive:
                for name in _DIRS:
                    archive.addfile(_info(name, tarfile.DIRTYPE, 0, 0o755))
                for name, size, opener in files:
                    with opener() as source:
                        if source is None:
                            raise IntegrityError(f"{name} vanished while writing the archive")
                        archive.addfile(_info(name, tarfile.REGTYPE, size, 0o644), _Checked(source, size, name))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Checked:
    """A source that must hold exactly ``size`` bytes (tarfile would pad a short one silently)."""

    def __init__(self, source: Readable, size: int, name: str) -> None:
        self._source, self._left, self._name = source, size, name

    def read(self, n: int = CHUNK) -> bytes:
        data = self._source.read(min(n, self._left) if n >= 0 else self._left)
        self._left -= len(data)
        if not data and self._left:
            raise IntegrityError(f"{self._name} ended early while writing the archive")
        return data


def _info(name: str, kind: bytes, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
