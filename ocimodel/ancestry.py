"""Walk a model's ancestry: its parents (``config.lineage.parents``), their parents, and so on.

Parents are followed by the DIGEST recorded at push time (``reference@digest``), across
repositories and registries: each parent reference is turned into a Target by the
``locate`` function given (the seam where a reference becomes a store). A parent that cannot
be fetched (missing, unreachable, denied, not a model) becomes an ``unresolved`` node
carrying the reason; the walk never raises for it. Cycles are detected by digest along each
path, and the depth is bounded. The data types (:class:`~ocimodel.config.Lineage`,
:class:`~ocimodel.config.Parent`) live in :mod:`ocimodel.config`; this module only walks
them. See docs/lineage.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Parent
from .errors import OcimodelError, UsageError
from .model import ResolvedModel, resolve
from .storage import Locate, TargetRef

DEFAULT_DEPTH = 5

# Node states.
OK = "ok"
UNRESOLVED = "unresolved"
CYCLE = "cycle"
NOT_FOLLOWED = "not-followed"  # beyond the depth limit


@dataclass
class LineageNode:
    """A model in the lineage tree; ``status`` says whether it was fetched and followed."""

    reference: str
    digest: str | None
    status: str
    name: str | None = None
    version: str | None = None
    created: str | None = None
    reason: str | None = None
    parents: list["LineageNode"] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "status": self.status,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "reason": self.reason,
            "parents": [p.to_dict() for p in self.parents],
        }

    @property
    def ok(self) -> bool:
        """Fetched and followed (not unresolved, a cycle, or beyond the depth)."""
        return self.status == OK

    def walk(self) -> list["LineageNode"]:
        """This node and every node below it, depth first."""
        out = [self]
        for parent in self.parents:
            out.extend(parent.walk())
        return out


def _parent_reference(locate: Locate, parent: Parent) -> TargetRef:
    """``parent`` pinned to its recorded digest; UsageError when it has none or is malformed."""
    ref = locate(parent.reference)
    if parent.digest:
        return ref.with_digest(parent.digest)
    if ref.digest:
        return ref
    raise UsageError(f"parent {parent.reference} was recorded without a digest; cannot follow a tag that may have moved")


class _Walker:
    """One lineage walk: the target lookup, the depth limit, and fetched models by digest."""

    def __init__(self, locate: Locate, depth: int) -> None:
        self._locate = locate
        self._depth = depth
        self._fetched: dict[tuple[str, str], ResolvedModel] = {}

    def resolve(self, ref: TargetRef) -> ResolvedModel:
        """The model at ``ref``, fetched once per target and digest."""
        key = (ref.target.name, ref.digest or "")
        if ref.digest and key in self._fetched:
            return self._fetched[key]
        model = resolve(ref, allow_any_type=True)
        self._fetched[(ref.target.name, model.digest)] = model
        return model

    def node(self, ref: TargetRef, level: int, path: frozenset[str]) -> LineageNode:
        """The node for ``ref`` at ``level`` (0 = the root); ``path`` = digests of its descendants."""
        if ref.digest in path:
            return LineageNode(str(ref), ref.digest, CYCLE, reason=f"{ref.digest} is its own ancestor")
        try:
            model = self.resolve(ref)
        except OcimodelError as exc:
            return LineageNode(str(ref), ref.digest, UNRESOLVED, reason=str(exc))
        if model.digest in path:
            return LineageNode(str(ref), model.digest, CYCLE, reason=f"{model.digest} is its own ancestor")
        config = model.config
        node = LineageNode(
            str(ref.with_digest(model.digest)),
            model.digest,
            OK,
            name=config.name if config else None,
            version=config.version if config else None,
            created=config.created if config else None,
        )
        parents = config.lineage.parents if config else ()
        node.parents = [self._parent(p, level + 1, path | {model.digest}) for p in parents]
        return node

    def _parent(self, parent: Parent, level: int, path: frozenset[str]) -> LineageNode:
        try:
            ref = _parent_reference(self._locate, parent)
        except OcimodelError as exc:
            return LineageNode(parent.reference, parent.digest, UNRESOLVED, reason=str(exc))
        if level > self._depth:
            return LineageNode(str(ref), ref.digest, NOT_FOLLOWED, reason=f"beyond depth {self._depth}")
        return self.node(ref, level, path)


def ancestry(locate: Locate, ref: TargetRef, *, depth: int = DEFAULT_DEPTH) -> LineageNode:
    """The lineage tree of ``ref``: parents followed by digest up to ``depth`` generations.

    ``locate`` turns each parent's recorded reference into a target (see
    :func:`ocimodel.registry.target.locator`). Parent hosts come from configs, untrusted
    content: the clients behind ``locate`` must send them only their own stored login (a
    :class:`~ocimodel.registry.credentials.CredentialStore` binds given credentials to one
    registry). Only the root failing to resolve raises (its own error); an ancestor failing
    becomes ``unresolved``.
    """
    if depth < 0:
        raise UsageError(f"depth must be 0 or more, got {depth}")
    walker = _Walker(locate, depth)
    walker.resolve(ref)  # the root's errors propagate as they are
    return walker.node(ref, 0, frozenset())
