"""Push and pull at the transfer layer (what the push and pull use-cases compose).

The fault, cache and hostile-registry tests drive :mod:`ocimodel.transfer` directly so they can
pass a blob cache, a custom client (through a fault proxy) and count what happened. Nothing
but the model's files is written: no state file, no scan.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ocimodel.config import ModelConfig
from ocimodel.descriptor import Manifest
from ocimodel.model import ResolvedModel, plan_files, resolve
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.target import target_ref
from ocimodel.transfer.cache import BlobCache
from ocimodel.transfer.destination import DestinationLock, check_destination
from ocimodel.transfer.download import download_into
from ocimodel.transfer.files import collect_files
from ocimodel.transfer.installed import STATE_NAME
from ocimodel.transfer.observer import NullObserver, TransferObserver
from ocimodel.transfer.upload import STREAM_MIN_SIZE, push_files, push_manifest


@dataclass(frozen=True)
class Pushed:
    manifest: Manifest
    uploaded: int
    skipped: int


def push_model(
    client: RegistryClient,
    path: Path,
    ref: Reference,
    *,
    cache: BlobCache | None = None,
    concurrency: int = 2,
    observer: TransferObserver | None = None,
    stream_min: int = STREAM_MIN_SIZE,
) -> Pushed:
    """Push ``path`` as a model under ``ref`` (a minimal config)."""
    observer = observer or NullObserver()
    sources = collect_files(path)
    target = target_ref(client, ref).target
    pushed = push_files(target, sources, observer, concurrency, cache=cache, stream_min=stream_min)
    config = ModelConfig(name="m", files=tuple(pushed.files))
    manifest = push_manifest(target, ref.tag or "latest", config, pushed.layers, {})
    return Pushed(manifest, pushed.uploaded, pushed.skipped)


def pull_model(
    client: RegistryClient,
    ref: Reference,
    dest: Path,
    *,
    cache: BlobCache | None = None,
    concurrency: int = 2,
    observer: TransferObserver | None = None,
) -> ResolvedModel:
    """Pull ``ref`` into ``dest`` (locked, checked, all or nothing; removed on failure if made here)."""
    model = resolve(target_ref(client, ref))
    planned = plan_files(model)
    check_destination(dest, [item.title for item in planned])
    existed = dest.exists()
    with DestinationLock(dest) as lock:
        download_into(
            model, lock.dir, planned, observer or NullObserver(), concurrency, cache=cache,
            remove_on_failure=None if existed else functools.partial(shutil.rmtree, dest, ignore_errors=True),
        )
    return model


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative POSIX path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def model_tree(root: Path) -> dict[str, bytes]:
    """:func:`tree` without the pull state file ``.ocimodel-state.json`` (ocimodel's, not the model's)."""
    return {path: data for path, data in tree(root).items() if path != STATE_NAME}


def everything(root: Path) -> list[str]:
    """Every path under root, files and directories, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def write_random(path: Path, size: int) -> bytes:
    """Fill ``path`` with ``size`` random bytes; returns them."""
    data = os.urandom(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
