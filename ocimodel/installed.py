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
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .paths import RESERVED_PREFIX

STATE_NAME = f"{RESERVED_PREFIX}-state.json"
VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
LAYOUTS = ("flat", "versioned")
STATE_VERSION = 1


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
    state_version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["files"] = [asdict(f) for f in self.files]
        obj["include"] = list(self.include)
        return obj

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "InstallState":
        return cls(
            reference=str(obj["reference"]),
            digest=str(obj["digest"]),
            layout=str(obj["layout"]),
            files=tuple(InstalledFile(str(f["path"]), str(f["digest"]), int(f["size"])) for f in obj["files"]),
            include=tuple(str(i) for i in obj.get("include") or ()),
            verification=obj.get("verification"),
            time=obj.get("time"),
            tool=obj.get("tool"),
            state_version=int(obj.get("state_version", STATE_VERSION)),
        )


def read_state(dest: Path) -> InstallState | None:
    """The recorded state, or None if absent or unreadable (then the pull just runs)."""
    try:
        obj = json.loads((dest / STATE_NAME).read_text(encoding="utf-8"))
        state = InstallState.from_dict(obj)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if state.state_version == STATE_VERSION else None


def write_state(dest: Path, state: InstallState) -> None:
    """Write the state file atomically (temp file + rename)."""
    tmp = dest / f"{STATE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / STATE_NAME)


def version_dir(dest: Path, digest: str) -> Path:
    """Where the versioned layout puts the files of ``digest``."""
    return dest / VERSIONS_DIR / digest.partition(":")[2]


def files_root(dest: Path, layout: str, digest: str) -> Path:
    """The directory holding the model's files for ``layout``."""
    return version_dir(dest, digest) if layout == "versioned" else dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def problem_with(root: Path, files: Sequence[InstalledFile], *, reverify: bool) -> str | None:
    """Why the installed files under ``root`` are not intact (None when they are).

    Sizes are always checked; full sha256 hashes only with ``reverify`` (slower, catches
    in-place corruption that keeps the size).
    """
    for item in files:
        path = root.joinpath(*item.path.split("/"))
        try:
            if path.is_symlink() or not path.is_file():
                return f"{item.path} is missing"
            if path.stat().st_size != item.size:
                return f"{item.path} has the wrong size"
            if reverify and _sha256(path) != item.digest:
                return f"{item.path} does not match its digest"
        except OSError as exc:
            return f"{item.path} cannot be read ({exc.strerror})"
    return None


def current_digest_hex(dest: Path) -> str | None:
    """The version the ``current`` link names, or None."""
    link = dest / CURRENT_LINK
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    parts = Path(target).parts
    return parts[-1] if len(parts) == 2 and parts[0] == VERSIONS_DIR else None


def switch_current(dest: Path, digest: str) -> None:
    """Point ``DEST/current`` at the version of ``digest`` with one atomic rename."""
    tmp = dest / f"{RESERVED_PREFIX}-current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS_DIR}/{digest.partition(':')[2]}", tmp)
    os.replace(tmp, dest / CURRENT_LINK)


def prune_versions(dest: Path, keep: set[str]) -> None:
    """Remove version directories whose digest hex is not in ``keep``."""
    versions = dest / VERSIONS_DIR
    if not versions.is_dir():
        return
    for entry in versions.iterdir():
        if entry.name not in keep and not entry.is_symlink() and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def remove_stale_files(root: Path, old: Sequence[InstalledFile], new_paths: set[str]) -> None:
    """After a flat pull of a new version, remove files the previous version had and this one has not."""
    for item in old:
        if item.path in new_paths:
            continue
        path = root.joinpath(*item.path.split("/"))
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
        parent = path.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent



def tidy_failed_install(dest: Path, *, created: bool) -> None:
    """After a failed versioned install: drop an empty ``versions/`` (and DEST itself if this
    pull created it and it is empty), so a refused model leaves the volume as it was.
    Directories holding resumable partial downloads are not empty and stay."""
    for directory in (dest / VERSIONS_DIR, dest if created else None):
        if directory is None:
            continue
        try:
            directory.rmdir()  # only succeeds when empty
        except OSError:
            pass
