"""The init container's restart: a pull by digest that finds that digest installed asks no one.

A pod restart runs ``ocimodel pull REF@sha256:... DEST`` again. When DEST's state file records
that digest, pulled with the same layout, include globs and the same checks (a fingerprint of
the policy, license allow-list, type and scan options: :func:`checks_fingerprint`), and the
files are intact by size, the registry is not asked anything: a digest names the same bytes
forever, so the manifest, config and signatures the first pull verified are the ones it would
fetch again. Anything else (a tag, ``reverify``, a state that does not match or cannot be read,
a file of the wrong size) takes the ordinary path through the registry.

The state file stays hostile input: it is parsed and validated as on every pull, its file list
is checked against DEST (sizes; with ``--deny-unsafe`` the files are scanned again), and
whoever can forge it could already replace the files themselves. What a restart no longer sees
is a change on the registry's side after the install (a signature removed): ``--reverify``
asks the registry again and re-hashes every file.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..config import FileInfo
from ..scanner.refusals import check_blobs_safe
from ..scanner.scanner import ScanOptions
from ..storage import TargetRef
from . import installed
from .destination import DestinationLock
from .dirfd import DirHandle, open_parent

if TYPE_CHECKING:
    from ..signing.policy import VerificationPolicy


def checks_fingerprint(
    policy: VerificationPolicy | None,
    *,
    allow_any_type: bool,
    allow_licenses: Sequence[str],
    deny_unsafe: bool,
    allow_globals: Sequence[str],
    scan_limits: Sequence[str],
) -> str:
    """A digest of every check a pull applies, key and trusted-root file contents included:
    a restart may skip the registry only if it would have asked for exactly these checks."""
    doc: dict[str, Any] = {
        "any_type": allow_any_type,
        "licenses": sorted(allow_licenses),
        "deny_unsafe": deny_unsafe,
        "allow_globals": sorted(allow_globals),
        "scan_limits": list(scan_limits),
        "policy": None if policy is None else _policy_doc(policy),
    }
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _policy_doc(policy: VerificationPolicy) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for field in fields(policy):
        value = getattr(policy, field.name)
        if field.name == "keys":
            value = [_file_digest(path) for path in value]
        elif field.name == "trusted_root":
            value = None if value is None else _file_digest(value)
        elif isinstance(value, tuple):
            value = list(value)
        doc[field.name] = value
    return doc


def _file_digest(path: Path) -> str:
    # A key or root that changed since the install must not pass on the old verdict.
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"  # matches no recorded fingerprint: the registry decides


def installed_offline(
    ref: TargetRef,
    dest: Path,
    *,
    layout: str,
    include: Sequence[str],
    checks: str,
    options: ScanOptions | None,
    events: Callable[[str, Mapping[str, Any]], None],
) -> tuple[str, list[FileInfo], Path] | None:
    """The digest, files and root of ``ref``'s digest if DEST holds it intact under the same checks
    (after a scan with ``options`` if given: ``--deny-unsafe``); None to take the ordinary path.
    Reads only DEST, under its lock."""
    if ref.digest is None or not dest.is_dir():
        return None
    with DestinationLock(dest) as lock:
        top = lock.dir
        state, _ = installed.read_state(top)
        if state is None or (state.digest, state.layout, state.include, state.checks) != (
            ref.digest, layout, tuple(include), checks,
        ):
            return None
        if _repository(state.reference) != ref.target.name:
            return None  # signatures and policy were judged in that repository, not this one
        installed.check_layout(top, layout, state)
        root = installed.files_root(dest, layout, state.digest)
        if installed.install_problem(top, layout, state.digest, state.files, reverify=False) is not None:
            return None  # the ordinary path repairs it
        found = _modes(root, state.files)
        if options is not None:
            check_blobs_safe([(f.path, root.joinpath(*f.path.split("/"))) for f in found], options)
    events("up-to-date", {"digest": ref.digest, "path": str(root), "reverified": False, "offline": True})
    return state.digest, found, root


def _repository(reference: str) -> str:
    """``registry/repository`` of a recorded ``name[:tag][@digest]``."""
    name = reference.partition("@")[0]
    head, colon, tag = name.rpartition(":")
    return head if colon and "/" not in tag else name


def _modes(root: Path, files: Sequence[installed.InstalledFile]) -> list[FileInfo]:
    """The recorded files as the result reports them, with the permission bits they have."""
    with DirHandle.open(root) as top:
        found = []
        for item in files:
            parent, name = open_parent(top, item.path)
            with parent:
                info = parent.lstat(name)
            mode = stat.S_IMODE(info.st_mode) if info is not None else None
            found.append(FileInfo(path=item.path, digest=item.digest, size=item.size, mode=mode))
        return found
