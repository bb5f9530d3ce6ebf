"""What a pull leaves in DEST for the next pull: a state file, and the versioned layout.

An init container runs ``ocimodel pull`` at every pod start. The state file
``DEST/.ocimodel-state.json`` records what was installed (reference, digest, files,
verification), so a restart with the same digest only checks the files (sizes; full
hashes with ``reverify``) instead of downloading again.

With the *versioned* layout each digest gets its own directory and a symlink names the
one in use, switched with one atomic rename, so a reader never sees a mix of versions::

    DEST/versions/<hex of the manifest digest>/...files
    DEST/current -> versions/<hex>

The previous version is kept (a reader may still have it open); older ones are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import jsondoc
from ..errors import OcimodelError, SchemaError, UnsafeContentError, UsageError
from ..titles import RESERVED_PREFIX, validate_titles
from .dirfd import DirHandle, open_parent

logger = logging.getLogger(__name__)

STATE_NAME = f"{RESERVED_PREFIX}-state.json"
VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
LAYOUTS = ("flat", "versioned")
STATE_VERSION = 1
# A state file lists at most what a 4 MiB manifest can (about 20 000 files), pretty-printed.
MAX_STATE_SIZE = 16 * 1024 * 1024
_HEX = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class InstalledFile:
    """A file a pull wrote, relative to the version's root."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class InstallState:
    """The content of ``DEST/.ocimodel-state.json``."""

    reference: str
    digest: str
    layout: str
    files: tuple[InstalledFile, ...]
    include: tuple[str, ...] = ()
    verification: dict[str, Any] | None = None
    time: str | None = None
    tool: str | None = None
    checks: str | None = None  # what the pull checked (restart.checks_fingerprint); optional
    state_version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["files"] = [asdict(f) for f in self.files]
        obj["include"] = list(self.include)
        return obj

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "InstallState":
        """Parse and validate: the state file is input like any other (anyone who can write
        in DEST can write it), so its paths must be titles and its digests digests.
        Raises :class:`SchemaError`."""
        if obj.get("state_version") != STATE_VERSION:
            raise SchemaError(f"state_version {obj.get('state_version')!r} is not {STATE_VERSION}")
        layout = _field(obj, "layout", str)
        if layout not in LAYOUTS:
            raise SchemaError(f"layout {layout[:40]!r} is not one of {', '.join(LAYOUTS)}")
        entries = _field(obj, "files", list)
        files = tuple(_installed_file(entry) for entry in entries)
        try:
            validate_titles(f.path for f in files)
        except UnsafeContentError as exc:
            raise SchemaError(f"'files' holds an unsafe path ({exc})") from None
        include = _field(obj, "include", list, optional=True) or []
        if not all(isinstance(i, str) for i in include):
            raise SchemaError("'include' must be a list of strings")
        return cls(
            reference=_field(obj, "reference", str),
            digest=_digest(obj.get("digest")),
            layout=layout,
            files=files,
            include=tuple(include),
            verification=_field(obj, "verification", dict, optional=True),
            time=_field(obj, "time", str, optional=True),
            tool=_field(obj, "tool", str, optional=True),
            checks=None if obj.get("checks") is None else _digest(obj.get("checks")),
        )


def _field(obj: Mapping[str, Any], key: str, typ: type, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, typ) or isinstance(value, bool) and typ is int:
        raise SchemaError(f"{key!r} missing or not a {typ.__name__}")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise SchemaError(f"{str(value)[:80]!r} is not a sha256 digest")
    return value


def _installed_file(entry: Any) -> InstalledFile:
    if not isinstance(entry, dict):
        raise SchemaError("'files' entries must be objects")
    size = _field(entry, "size", int)
    if size < 0:
        raise SchemaError("negative file size")
    return InstalledFile(path=_field(entry, "path", str), digest=_digest(entry.get("digest")), size=size)


def read_state(dest: DirHandle) -> tuple[InstallState | None, str | None]:
    """The recorded state and None, or None and why there is none to use.

    Absent gives (None, None). Anything else that is not a valid state (a symlink, not a plain
    file, too big, bad JSON, paths that are not titles...) gives (None, reason): the pull then
    just installs again, which loses nothing (see docs/format.md, "The state file").
    """
    try:
        fd = dest.open_fd(STATE_NAME, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
    except FileNotFoundError:
        return None, None
    except (OSError, OcimodelError) as exc:
        return None, f"it cannot be opened as a plain file ({exc})"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "it is not a plain file"
        if info.st_size > MAX_STATE_SIZE:
            return None, f"it is over the {MAX_STATE_SIZE // (1024 * 1024)} MiB limit"
        raw = f.read(MAX_STATE_SIZE + 1)
    try:
        obj = jsondoc.load_object(raw, "state file", max_bytes=MAX_STATE_SIZE)
        return InstallState.from_dict(obj), None
    except SchemaError as exc:
        return None, str(exc).removeprefix("state file: ")


def write_state(dest: DirHandle, state: InstallState) -> None:
    """Write the state file atomically (a new temp file + rename, both relative to DEST)."""
    tmp = f"{STATE_NAME}.{secrets.token_hex(6)}.tmp"
    data = (json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")
    try:
        with open(tmp, "xb", opener=dest.opener()) as f:
            f.write(data)
        dest.rename(tmp, dest, STATE_NAME)
    except BaseException:
        dest.unlink(tmp)
        raise


def version_dir(dest: Path, digest: str) -> Path:
    """Where the versioned layout puts the files of ``digest``."""
    return dest / VERSIONS_DIR / digest.partition(":")[2]


def files_root(dest: Path, layout: str, digest: str) -> Path:
    """The directory holding the model's files for ``layout``."""
    return version_dir(dest, digest) if layout == "versioned" else dest


def _sha256(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, 1024 * 1024):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def problem_with(root: DirHandle, files: Sequence[InstalledFile], *, reverify: bool) -> str | None:
    """Why the installed files under ``root`` are not intact (None when they are).

    Sizes are always checked; full sha256 hashes only with ``reverify`` (slower, catches
    in-place corruption that keeps the size). Nothing is read through a symlink.
    """
    for item in files:
        try:
            parent, name = open_parent(root, item.path)
        except (OSError, OcimodelError):
            return f"{item.path} is missing"
        with parent:
            try:
                fd = parent.open_fd(name, os.O_RDONLY | os.O_NONBLOCK)
            except (OSError, OcimodelError):
                return f"{item.path} is missing"
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    return f"{item.path} is missing"
                if info.st_size != item.size:
                    return f"{item.path} has the wrong size"
                if reverify and _sha256(fd) != item.digest:
                    return f"{item.path} does not match its digest"
            except OSError as exc:
                return f"{item.path} cannot be read ({exc.strerror})"
            finally:
                os.close(fd)
    return None


def install_problem(
    top: DirHandle, layout: str, digest: str, files: Sequence[InstalledFile], *, reverify: bool
) -> str | None:
    """Why the install of ``digest`` recorded in the state is not intact (None if it is)."""
    if layout == "flat":
        return problem_with(top, files, reverify=reverify)
    hexdigest = digest.partition(":")[2]
    if current_digest_hex(top) != hexdigest:
        return "current link points elsewhere"
    try:
        version = top.subdir(f"{VERSIONS_DIR}/{hexdigest}")
    except (OSError, OcimodelError):
        return "its version directory is missing"
    with version:
        return problem_with(version, files, reverify=reverify)


def current_digest_hex(dest: DirHandle) -> str | None:
    """The version the ``current`` link names, or None (absent, or not a link we made)."""
    target = dest.readlink(CURRENT_LINK)
    if target is None:
        return None
    head, _, hexdigest = target.partition("/")
    return hexdigest if head == VERSIONS_DIR and _HEX.fullmatch(hexdigest) else None


def check_layout(dest: DirHandle, layout: str, previous: InstallState | None) -> None:
    """Refuse to mix layouts in one DEST, or to take over names that are not ours.

    A flat pull into a DEST holding a versioned install would mix its files with ``current``
    and ``versions/``; a versioned pull into a flat install (or over a user's own ``current``
    or ``versions``) would replace or prune them.
    """
    where = str(dest.path)
    current = dest.lstat(CURRENT_LINK)
    versions = dest.lstat(VERSIONS_DIR)
    links_to_version = current is not None and stat.S_ISLNK(current.st_mode) and current_digest_hex(dest) is not None
    if layout == "flat":
        if (previous and previous.layout == "versioned") or (
            links_to_version and versions is not None and stat.S_ISDIR(versions.st_mode)
        ):
            raise UsageError(
                f"{where!r} holds a versioned install (current -> versions/...): pull it with "
                "--layout versioned, or pull into another directory"
            )
        return
    if previous and previous.layout == "flat":
        raise UsageError(
            f"{where!r} holds a flat install of {previous.reference}: pull it with --layout flat, or pull into "
            f"another directory (or remove its files and {STATE_NAME} first)"
        )
    if current is not None and not links_to_version:
        raise UsageError(
            f"{where!r} already has a {CURRENT_LINK!r} that ocimodel did not make: move it away or pull into "
            "another directory"
        )
    if versions is not None and stat.S_ISLNK(versions.st_mode):
        raise UnsafeContentError(f"refusing to install through {str(dest.path / VERSIONS_DIR)!r}: it is a symlink")
    if versions is not None and not stat.S_ISDIR(versions.st_mode):
        raise UsageError(f"{str(dest.path / VERSIONS_DIR)!r} is in the way: it is not a directory")


def switch_current(dest: DirHandle, digest: str) -> None:
    """Point ``DEST/current`` at the version of ``digest`` with one atomic rename."""
    tmp = f"{RESERVED_PREFIX}-current.{secrets.token_hex(6)}.tmp"
    dest.symlink(f"{VERSIONS_DIR}/{digest.partition(':')[2]}", tmp)
    try:
        dest.rename(tmp, dest, CURRENT_LINK)
    except BaseException:
        dest.unlink(tmp)
        raise


def prune_versions(versions: DirHandle, keep: set[str]) -> None:
    """Remove version directories (named by a digest's hex) not in ``keep``; leaves anything
    else, and never follows a symlink. Best effort: a failure is logged."""
    for name in versions.names():
        if name in keep or not _HEX.fullmatch(name):
            continue
        try:
            versions.rmtree(name)
        except (OSError, OcimodelError) as exc:
            logger.warning("could not remove the old version %s: %s", versions.path / name, exc)


def tidy_failed_install(dest: Path, *, created: bool) -> None:
    """After a failed versioned install: drop an empty ``versions/`` (and DEST itself if this
    pull created it and it is empty), so a refused model leaves the volume as it was.
    Directories holding resumable partial downloads are not empty and stay."""
    for directory in (dest / VERSIONS_DIR, dest if created else None):
        if directory is None:
            continue
        try:
            directory.rmdir()  # only succeeds when empty (and never through a symlink)
        except OSError:
            pass
