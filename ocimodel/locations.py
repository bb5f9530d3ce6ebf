"""Where a reference leads: the one seam where a reference string becomes a storage Target.

``oci:PATH[:TAG|@DIGEST]`` and ``oci-archive:FILE[:TAG|@DIGEST]`` name an OCI image layout
(:mod:`ocimodel.layout`); anything else is a registry reference
(:func:`ocimodel.registry.target.target_ref`). :class:`Locations` opens each layout once per
session and closes them at the end (an archive being written is written out then, only if
the session ended without an error); :meth:`ocimodel.session.Client.locate` and the walks that
follow references (lineage parents, a push's parents) go through one. The layout package is
imported only when a layout is named: a plain push or pull never loads it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from .errors import UsageError
from .layout.names import LayoutReference, is_layout_reference, parse_layout_reference
from .reference import Reference
from .registry.client import RegistryClient
from .registry.target import RegistryTarget
from .storage import Locate, TargetRef

if TYPE_CHECKING:
    from .layout.target import LayoutTarget

__all__ = ["Locations", "is_layout_reference", "locate"]

RegistrySource = RegistryClient | Callable[[str], RegistryClient]


class Locations:
    """Turns references into targets for one session: registries through ``registry`` (one
    client, or a function from a registry host to its client; the caller owns and closes
    clients), layouts opened once each and closed by :meth:`close`."""

    def __init__(self, registry: RegistrySource) -> None:
        self._registry = registry
        self._layouts: dict[tuple[str, str], LayoutTarget] = {}

    def locate(self, ref: str | Reference, *, repository: bool = False) -> TargetRef:
        """The target ``ref`` names and the tag or digest in it; with ``repository``, the
        store only (a registry repository or a whole layout: no tag or digest allowed)."""
        if isinstance(ref, str) and is_layout_reference(ref):
            return self._locate_layout(parse_layout_reference(ref), repository=repository)
        parsed = Reference.coerce(ref, repository=repository)
        source = self._registry
        client = source if isinstance(source, RegistryClient) else source(parsed.registry)
        return TargetRef(RegistryTarget(client, parsed), tag=parsed.tag, digest=parsed.digest)

    def locator(self) -> Locate:
        """:meth:`locate` as a :data:`~ocimodel.storage.Locate` (for walks over references)."""
        return lambda text: self.locate(text)

    def _locate_layout(self, parsed: LayoutReference, *, repository: bool) -> TargetRef:
        if repository and (parsed.tag or parsed.digest):
            raise UsageError(f"{parsed.name}: give the layout only, no tag or digest")
        key = (parsed.transport, os.path.abspath(parsed.path))
        target = self._layouts.get(key)
        if target is None:
            from .layout.target import open_layout

            target = self._layouts[key] = open_layout(parsed)
        if repository:
            return TargetRef(target)
        if parsed.tag or parsed.digest:
            return TargetRef(target, tag=parsed.tag, digest=parsed.digest)
        return target.default_ref()

    def close(self, *, commit: bool = True) -> None:
        """Close every layout opened here; archives written to are written out if ``commit``."""
        layouts, self._layouts = list(self._layouts.values()), {}
        failure: BaseException | None = None
        for target in layouts:
            try:
                target.close(commit=commit)
            except BaseException as exc:  # close the others, then report the first failure
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> "Locations":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(commit=exc_type is None)


def locate(text: str | Reference, registry: RegistrySource, *, repository: bool = False) -> TargetRef:
    """One reference as a target, outside a session: for reading, or writing a directory
    layout. A write to an ``oci-archive:`` target reaches the file only when the target's
    ``close()`` is called: use a :class:`Locations` (or a :class:`~ocimodel.session.Client`)
    as a context manager to have that done."""
    return Locations(registry).locate(text, repository=repository)
