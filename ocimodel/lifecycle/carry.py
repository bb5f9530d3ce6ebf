"""Which tags travel with a model when it is copied with its tags (``copy --tags``).

Every tag of the source pointing at the model's digest (its version tags and its stages), and
for each such stage its history: the ``ocimodel.history.<stage>`` head tag and the chain of
promotion records it starts, followed exactly as ``history`` follows it (so ``history`` on the
copy reads the same records and finds the same problems). A history is carried only when its
newest record promoted this very digest: a stage moved outside ocimodel keeps its tag but not
a history that describes another model. The older records name the models the stage held
before; those models are not carried (copy them too to roll back to them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OcimodelError
from ..storage import Target
from .history import MAX_HISTORY
from .records import history_tag, is_internal_tag, load_record, tag_digest


@dataclass(frozen=True)
class CarriedHistory:
    """A stage's history head tag and its records, newest first."""

    stage: str
    tag: str
    records: tuple[str, ...]


@dataclass(frozen=True)
class CarriedTags:
    """The tags pointing at a digest, and the histories of those that are stages."""

    tags: tuple[str, ...]
    histories: tuple[CarriedHistory, ...]


def _chain(target: Target, stage: str, head: str, limit: int) -> list[str]:
    """The records ``history`` would read from ``head``: it stops at the first unreadable or
    repeated one, and after one of another stage (read, so carried). Not at a record of
    another repository: the copy is somewhere else by definition, and ``history`` there judges
    the records' repository against its own name."""
    records: list[str] = []
    digest: str | None = head
    while digest is not None and digest not in records and len(records) < limit:
        try:
            loaded = load_record(target, digest)
        except OcimodelError:
            break
        records.append(digest)
        if loaded.record.stage != stage:
            break
        digest = loaded.record.previous_record
    return records


def carried_tags(target: Target, digest: str, *, limit: int = MAX_HISTORY) -> CarriedTags:
    """The tags of ``target`` pointing at ``digest`` and the histories that go with them (one
    tag list, one HEAD per tag)."""
    tags = target.tags()
    present = set(tags)
    pointing = [t for t in tags if not is_internal_tag(t) and tag_digest(target, t) == digest]
    histories = []
    for stage in pointing:
        head = tag_digest(target, history_tag(stage)) if history_tag(stage) in present else None
        if head is None:
            continue
        records = _chain(target, stage, head, limit)
        if records and load_record(target, head).record.digest == digest:
            histories.append(CarriedHistory(stage, history_tag(stage), tuple(records)))
    return CarriedTags(tuple(pointing), tuple(histories))
