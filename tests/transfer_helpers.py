"""Push and pull at the transfer layer (what ``api.Client`` composes), with the new options.

The fault, cache and hostile-registry tests drive :mod:`ocimodel.transfer` directly so they can
pass a blob cache, a custom client (through a fault proxy) and count what happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ocimodel.installed import STATE_NAME

from ocimodel.cache import BlobCache
from ocimodel.config import ModelConfig
from ocimodel.descriptor import Manifest
from ocimodel.files import collect_files
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.transfer import (
    STREAM_MIN_SIZE,
    NullObserver,
    ResolvedModel,
    TransferObserver,
    download_into,
    plan_files,
    push_files,
    push_manifest,
    resolve,
)


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
    pushed = push_files(client, ref, sources, observer, concurrency, cache=cache, stream_min=stream_min)
    config = ModelConfig(name="m", files=tuple(pushed.files))
    manifest = push_manifest(client, ref, config, pushed.layers, {})
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
    """Pull ``ref`` into ``dest``."""
    model = resolve(client, ref)
    download_into(client, model, dest, plan_files(model), observer or NullObserver(), concurrency, cache=cache)
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
