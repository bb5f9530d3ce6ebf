"""A model as stored: its manifest and config, read from any Target; and the files it holds.

:func:`resolve` fetches a manifest once (by tag or digest, checked against its digest), pins
the reference to that digest, and reads the model config; :func:`plan_files` turns the layers
into the files a pull writes, every title validated first (a hostile artifact is refused
whole, even with ``--include``).

No I/O of its own: everything is read through the :class:`~ocimodel.storage.Target` given.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

from .config import FileInfo, ModelConfig
from .descriptor import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, DOCKER_MANIFEST_LIST_V2, INDEX_V1, Descriptor, Manifest
from .errors import UsageError
from .storage import TargetRef
from .titles import validate_titles


@dataclass(frozen=True)
class ResolvedModel:
    """A manifest fetched once by tag or digest, pinned to its digest, and its config."""

    reference: TargetRef
    manifest: Manifest
    config: ModelConfig | None
    config_raw: bytes = b""

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def files(self) -> list[FileInfo]:
        """Every layer as a file (see :func:`manifest_files`)."""
        return manifest_files(self.manifest, self.config)


def manifest_files(manifest: Manifest, config: ModelConfig | None) -> list[FileInfo]:
    """Every layer as a file: title, digest, size, and the mode the config records (None if it
    records none, as for artifacts not pushed by ocimodel)."""
    modes = {f.path: f.mode for f in config.files} if config else {}
    return [
        FileInfo(path=layer.title or "", digest=layer.digest, size=layer.size, mode=modes.get(layer.title or ""))
        for layer in manifest.layers
    ]


def resolve(ref: TargetRef, *, allow_any_type: bool = False) -> ResolvedModel:
    """Fetch the manifest ``ref`` names (verified against its digest) and the model config.

    An image index is refused (name one of its manifests), and so is an artifact of another
    type unless ``allow_any_type``.
    """
    fetched = ref.target.fetch_manifest(ref.identifier)
    if fetched.media_type in (INDEX_V1, DOCKER_MANIFEST_LIST_V2):
        raise UsageError(f"{ref} is an image index, not a model; name one of its manifests by digest")
    manifest = Manifest.parse(fetched.raw, f"manifest of {ref}")
    pinned = ref.with_digest(manifest.digest)
    kind = manifest.effective_artifact_type
    if kind != ARTIFACT_TYPE and not allow_any_type:
        raise UsageError(
            f"{ref} is not an ocimodel model (artifact type {kind!r}); "
            "pass --allow-any-type to pull it as plain files"
        )
    config: ModelConfig | None = None
    raw = b""
    if manifest.config.media_type == CONFIG_MEDIA_TYPE:
        raw = ref.target.fetch_blob_bytes(manifest.config)
        config = ModelConfig.from_bytes(raw)
    return ResolvedModel(reference=pinned, manifest=manifest, config=config, config_raw=raw)


@dataclass(frozen=True)
class PlannedFile:
    """One file to write on pull: its title, its layer, and its permission bits."""

    title: str
    layer: Descriptor
    mode: int


def plan_files(model: ResolvedModel, include: Sequence[str] = ()) -> list[PlannedFile]:
    """The files to write, ``include`` globs applied; every title is validated first (even
    excluded ones: a hostile artifact is refused whole)."""
    titles = validate_titles(layer.title for layer in model.manifest.layers)
    modes = {f.path: f.mode for f in model.config.files} if model.config else {}
    planned = []
    for title, layer in zip(titles, model.manifest.layers):
        if include and not any(fnmatch.fnmatchcase(title, pattern) for pattern in include):
            continue
        # Only permission bits; never setuid/setgid/sticky from a registry.
        mode = modes.get(title)
        planned.append(PlannedFile(title=title, layer=layer, mode=(0o644 if mode is None else mode) & 0o777))
    if include and not planned:
        raise UsageError(f"no file of {model.reference} matches --include {' '.join(include)}")
    return planned
