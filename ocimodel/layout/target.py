"""The OCI image layout as a storage Target (being built: see the following commits)."""

from __future__ import annotations

from ..errors import UsageError
from ..storage import TargetRef
from .names import LayoutReference


class LayoutTarget:
    """A layout directory or archive as a :class:`~ocimodel.storage.Target`."""

    def default_ref(self) -> TargetRef:
        raise NotImplementedError

    def close(self, *, commit: bool = True) -> None:
        raise NotImplementedError


def open_layout(reference: LayoutReference) -> LayoutTarget:
    """The layout ``reference`` names (not yet implemented)."""
    raise UsageError(f"{reference}: OCI image layouts are not supported yet")
