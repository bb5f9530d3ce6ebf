"""Referrers: manifests that point at another through ``subject`` (signatures, promotion
records), and how they are attached and found in any :class:`~ocimodel.storage.Target`.

A store with a referrers index (a registry's referrers API) lists them itself. Otherwise the
writer keeps the fallback tag ``sha256-<hex>``: an image index listing the referrers of that
digest (OCI distribution spec 1.1). Tags have no compare-and-swap, so the index is updated by
read, merge (never dropping an entry), write, then read back (:mod:`ocimodel.settle`), and
merged again when a racing writer dropped our entry: best effort, bounded.

Readers never trust index metadata: it only says what to fetch; each referrer is judged from
its own manifest (older writers left entries without annotations or with a wrong
``artifactType``).

Pure: no I/O of its own (everything goes through the Target).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Callable, Mapping, Sequence

from .descriptor import DOCKER_MANIFEST_LIST_V2, EMPTY_DESCRIPTOR, INDEX_V1, Descriptor, Index, Manifest
from .errors import NotFoundError, RegistryError, SchemaError
from .reference import validate_digest
from .settle import SETTLE_SECONDS, holds
from .storage import ReferrerScanner, Target

FALLBACK_TAG_PREFIX = "sha256-"
#: How many times a writer merges its entry back into a fallback index a racer overwrote.
DEFAULT_MERGE_ATTEMPTS = 8


def fallback_tag(subject_digest: str) -> str:
    """The referrers fallback tag of a manifest digest: ``sha256-<hex>``."""
    return FALLBACK_TAG_PREFIX + validate_digest(subject_digest).partition(":")[2]


def referrer_manifest(
    subject: Descriptor,
    layer: Descriptor,
    artifact_type: str,
    annotations: Mapping[str, str],
    *,
    config_artifact_type: str | None = None,
) -> Manifest:
    """A referrer of ``subject`` carrying one ``layer``: the OCI empty config, and ``subject``
    as a plain descriptor (media type, digest, size: nothing else of the subject's is copied).
    ``config_artifact_type`` is also set on the config descriptor (where cosign puts it)."""
    plain_subject = Descriptor(media_type=subject.media_type, digest=subject.digest, size=subject.size)
    config = replace(EMPTY_DESCRIPTOR, artifact_type=config_artifact_type)
    return Manifest.build(
        config, [layer], artifact_type=artifact_type, subject=plain_subject, annotations=dict(annotations)
    )


def index_entry(referrer: Manifest) -> Descriptor:
    """The fallback-index entry for ``referrer``: its descriptor, artifactType, annotations."""
    return referrer.descriptor(artifact_type=referrer.artifact_type, annotations=dict(referrer.annotations))


def read_fallback_index(target: Target, subject_digest: str) -> Index | None:
    """The fallback index of ``subject_digest``, or None if its tag does not exist."""
    tag = fallback_tag(subject_digest)
    try:
        fetched = target.fetch_manifest(tag, accept=(INDEX_V1, DOCKER_MANIFEST_LIST_V2))
    except NotFoundError:
        return None
    try:
        return Index.parse(fetched.raw, f"referrers fallback tag {target.name}:{tag}")
    except SchemaError as exc:
        raise RegistryError(f"{exc}: the tag {tag} is not a referrers index; not touching it") from None


def _merged(current: Index | None, entries: Sequence[Descriptor]) -> Index | None:
    """``current`` plus ``entries`` (every entry kept, one per digest); None if nothing to add."""
    existing = list(current.manifests) if current else []
    listed = {d.digest for d in existing}
    if all(entry.digest in listed for entry in entries):
        return None
    unique: dict[str, Descriptor] = {}
    for descriptor in [*existing, *entries]:
        unique.setdefault(descriptor.digest, descriptor)
    annotations = current.annotations if current else None
    return Index.build(list(unique.values()), annotations=annotations)


def _listed(target: Target, subject_digest: str, digests: Sequence[str]) -> bool:
    index = read_fallback_index(target, subject_digest)
    listed = {d.digest for d in index.manifests} if index is not None else set()
    return all(digest in listed for digest in digests)


def merge_into_fallback(
    target: Target,
    subject_digest: str,
    entry: Descriptor | Sequence[Descriptor],
    *,
    attempts: int = DEFAULT_MERGE_ATTEMPTS,
    settle: float = SETTLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Add ``entry`` (or several entries at once) to the fallback index of ``subject_digest``,
    surviving racing writers; returns the fallback tag.

    Each round reads, merges and writes, then checks the entry is still listed right away and
    after ``settle`` seconds: a writer who read before our write and wrote after it would have
    dropped it. A missing entry starts another round.
    """
    tag = fallback_tag(subject_digest)
    entries = [entry] if isinstance(entry, Descriptor) else list(entry)
    digests = [e.digest for e in entries]
    for attempt in range(max(1, attempts)):
        index = _merged(read_fallback_index(target, subject_digest), entries)
        if index is not None:
            target.push_manifest(index.raw, index.media_type, tag=tag)
        if holds(lambda: _listed(target, subject_digest, digests), settle, sleep=sleep):
            return tag
        sleep(0.05 * (attempt + 1) * (1 + random.random()))
    raise RegistryError(
        f"could not keep {', '.join(digests)} listed in {target.name}:{tag}: other writers kept "
        f"replacing the referrers index ({attempts} attempts); run the command again"
    )


def attach(
    target: Target, referrer: Manifest, *, attempts: int = DEFAULT_MERGE_ATTEMPTS, settle: float = SETTLE_SECONDS
) -> str | None:
    """Store ``referrer`` (its blobs already stored) by digest and make it findable from its
    subject; returns the fallback tag updated, or None when the store indexes referrers itself."""
    if referrer.subject is None:
        raise ValueError("a referrer needs a subject")
    put = target.push_manifest(referrer.raw, referrer.media_type)
    subject = referrer.subject.digest
    if put.subject is not None or target.referrers(subject) is not None:
        return None
    return merge_into_fallback(target, subject, index_entry(referrer), attempts=attempts, settle=settle)


def list_referrers(target: Target, subject_digest: str) -> list[Descriptor]:
    """Descriptors of manifests referring to ``subject_digest``: the store's index, else the
    fallback tag (and, in a store that can scan for them, the manifests naming it as subject); one per digest. Only a list of what to fetch: its metadata is not to be trusted."""
    found = target.referrers(subject_digest)
    if found is None:
        index = read_fallback_index(target, subject_digest)
        found = list(index.manifests) if index is not None else []
        if isinstance(target, ReferrerScanner):
            found += target.scan_referrers(subject_digest)
    unique: dict[str, Descriptor] = {}
    for descriptor in found:
        unique.setdefault(descriptor.digest, descriptor)
    return list(unique.values())
