"""Where signatures live in a registry: bundle referrer manifests, found like cosign finds them.

A signature is an OCI image manifest shaped as cosign v3 writes it: ``artifactType`` and the
one layer's media type are the v0.3 bundle media type, the config is the OCI empty
descriptor, ``subject`` is the signed manifest. It is pushed by digest. A registry with the
referrers API indexes it by itself; otherwise the client keeps the fallback tag
``sha256-<hex>``: an image index listing the referrers.

The registry offers no compare-and-swap on tags, so the fallback index is updated by
read, merge, PUT, then reading it back (right away and again after a short settle time)
and merging again when a racing writer dropped our entry: best effort, bounded.

Readers never trust index metadata: each listed manifest is fetched by digest and judged
by its own ``artifactType`` and layer media types (older writers left entries without
annotations or with a wrong ``artifactType``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ocimodel.config import timestamp
from ocimodel.descriptor import (
    ANNOTATION_CREATED,
    DOCKER_MANIFEST_LIST_V2,
    EMPTY_DIGEST,
    EMPTY_JSON,
    EMPTY_V1,
    INDEX_V1,
    Descriptor,
    Index,
    Manifest,
)
from ocimodel.errors import IntegrityError, NotFoundError, RegistryError, SchemaError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.signing.statement import BUNDLE_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPES, PREDICATE_TYPE, sha256_hex

ANNOTATION_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
BUNDLE_CONTENT_DSSE = "dsse-envelope"
#: Bundles are a few KiB (a certificate chain and a log entry); refuse anything huge.
MAX_BUNDLE_SIZE = 1024 * 1024
#: How many times a signer merges its entry back into a fallback index a racer overwrote.
DEFAULT_MERGE_ATTEMPTS = 8
#: Seconds to wait before the second read-back (longer than a racer's read-merge-PUT).
DEFAULT_SETTLE_SECONDS = 0.3

EMPTY_DESCRIPTOR = Descriptor(media_type=EMPTY_V1, digest=EMPTY_DIGEST, size=len(EMPTY_JSON))


def fallback_tag(subject_digest: str) -> str:
    """The referrers fallback tag of a manifest digest: ``sha256-<hex>``."""
    return f"sha256-{sha256_hex(subject_digest)}"


def build_referrer(subject: Descriptor, bundle: Descriptor, created: str | None = None) -> Manifest:
    """The referrer manifest carrying ``bundle`` (a layer descriptor) for ``subject``."""
    annotations = {
        ANNOTATION_BUNDLE_CONTENT: BUNDLE_CONTENT_DSSE,
        ANNOTATION_BUNDLE_PREDICATE_TYPE: PREDICATE_TYPE,
        ANNOTATION_CREATED: created or timestamp(None),
    }
    plain_subject = Descriptor(media_type=subject.media_type, digest=subject.digest, size=subject.size)
    return Manifest.build(
        EMPTY_DESCRIPTOR,
        [bundle],
        artifact_type=BUNDLE_MEDIA_TYPE,
        subject=plain_subject,
        annotations=annotations,
    )


def index_entry(referrer: Manifest) -> Descriptor:
    """The fallback-index entry for ``referrer``: its descriptor, artifactType, annotations."""
    return referrer.descriptor(artifact_type=referrer.artifact_type, annotations=dict(referrer.annotations))


@dataclass(frozen=True)
class AttachResult:
    """Where a bundle was stored."""

    referrer: Descriptor
    fallback_tag: str | None  # None when the registry's referrers API indexed it


def attach_bundle(
    client: RegistryClient,
    ref: Reference,
    subject: Descriptor,
    bundle_json: bytes,
    *,
    attempts: int = DEFAULT_MERGE_ATTEMPTS,
    settle: float = DEFAULT_SETTLE_SECONDS,
) -> AttachResult:
    """Store ``bundle_json`` as a referrer of ``subject`` in ``ref``'s repository."""
    client.push_blob_bytes(ref, EMPTY_V1, EMPTY_JSON)
    layer = client.push_blob_bytes(ref, BUNDLE_MEDIA_TYPE, bundle_json)
    referrer = build_referrer(subject, layer)
    put = client.put_manifest_result(ref.with_digest(referrer.digest), referrer.raw, referrer.media_type)
    entry = index_entry(referrer)
    if put.subject is not None or client.referrers(ref, subject.digest) is not None:
        return AttachResult(referrer=entry, fallback_tag=None)
    tag = fallback_tag(subject.digest)
    merge_into_fallback(client, ref.with_tag(tag), entry, attempts=attempts, settle=settle)
    return AttachResult(referrer=entry, fallback_tag=tag)


def read_fallback_index(client: RegistryClient, tag_ref: Reference) -> Index | None:
    """The fallback index at ``tag_ref``, or None if the tag does not exist."""
    try:
        fetched = client.get_manifest(tag_ref, accept=(INDEX_V1, DOCKER_MANIFEST_LIST_V2))
    except NotFoundError:
        return None
    try:
        return Index.parse(fetched.raw, f"referrers fallback tag {tag_ref}")
    except SchemaError as exc:
        raise RegistryError(f"{exc}: the tag {tag_ref.tag} is not a referrers index; not touching it") from None


def _merged(current: Index | None, entry: Descriptor) -> Index | None:
    """``current`` plus ``entry`` (every entry kept, one per digest); None if nothing to add."""
    existing = list(current.manifests) if current else []
    if any(d.digest == entry.digest for d in existing):
        return None
    unique: dict[str, Descriptor] = {}
    for descriptor in [*existing, entry]:
        unique.setdefault(descriptor.digest, descriptor)
    annotations = current.annotations if current else None
    return Index.build(list(unique.values()), annotations=annotations)


def _listed(client: RegistryClient, tag_ref: Reference, digest: str) -> bool:
    index = read_fallback_index(client, tag_ref)
    return index is not None and any(d.digest == digest for d in index.manifests)


def merge_into_fallback(
    client: RegistryClient,
    tag_ref: Reference,
    entry: Descriptor,
    *,
    attempts: int = DEFAULT_MERGE_ATTEMPTS,
    settle: float = DEFAULT_SETTLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Add ``entry`` to the fallback index at ``tag_ref``, surviving racing writers.

    Each round reads, merges (never drops an entry) and PUTs, then checks the entry is
    still listed right away and after ``settle`` seconds: a writer who read before our PUT
    and wrote after it would have dropped it. A missing entry starts another round.
    """
    for attempt in range(max(1, attempts)):
        index = _merged(read_fallback_index(client, tag_ref), entry)
        if index is not None:
            client.put_manifest(tag_ref, index.raw, index.media_type)
        if _listed(client, tag_ref, entry.digest):
            sleep(settle * (1 + random.random()))
            if _listed(client, tag_ref, entry.digest):
                return
        sleep(0.05 * (attempt + 1) * (1 + random.random()))
    raise RegistryError(
        f"could not keep signature {entry.digest} listed in {tag_ref}: other writers kept "
        f"replacing the referrers index ({attempts} attempts); run the command again"
    )


# ------------------------------------------------------------------------------ discovery


def list_referrers(client: RegistryClient, ref: Reference, subject_digest: str) -> list[Descriptor]:
    """Descriptors of manifests referring to ``subject_digest``: referrers API, else fallback tag.

    Only a list to fetch from: the metadata in it is not to be trusted.
    """
    found = client.referrers(ref, subject_digest)
    if found is None:
        index = read_fallback_index(client, ref.with_tag(fallback_tag(subject_digest)))
        found = list(index.manifests) if index is not None else []
    unique: dict[str, Descriptor] = {}
    for descriptor in found:
        unique.setdefault(descriptor.digest, descriptor)
    return list(unique.values())


def is_bundle_manifest(manifest: Manifest) -> bool:
    """Whether a referrer manifest holds a Sigstore v0.3 bundle (judged from the manifest)."""
    return manifest.artifact_type in BUNDLE_V03_MEDIA_TYPES or any(
        layer.media_type in BUNDLE_V03_MEDIA_TYPES for layer in manifest.layers
    )


@dataclass(frozen=True)
class StoredBundle:
    """A bundle found attached to a manifest, or why it could not be read."""

    referrer: str  # the referrer manifest's digest
    created: str | None  # its org.opencontainers.image.created annotation
    bundle: bytes | None  # the bundle JSON (verified against its layer digest)
    error: str | None = None  # why ``bundle`` is None


def _bundle_layer(manifest: Manifest) -> Descriptor | None:
    for layer in manifest.layers:
        if layer.media_type in BUNDLE_V03_MEDIA_TYPES:
            return layer
    return manifest.layers[0] if len(manifest.layers) == 1 else None


def _fetch_bundle(client: RegistryClient, ref: Reference, digest: str) -> StoredBundle | None:
    """The bundle of referrer ``digest``; None if that referrer is not a signature."""
    try:
        fetched = client.get_manifest(ref.with_digest(digest))
        manifest = Manifest.parse(fetched.raw, f"referrer {digest}")
    except (NotFoundError, SchemaError):
        return None  # gone, an index, or not a manifest at all: not a signature we can use
    if not is_bundle_manifest(manifest):
        return None
    created = manifest.annotations.get(ANNOTATION_CREATED)
    layer = _bundle_layer(manifest)
    if layer is None:
        return StoredBundle(digest, created, None, "bad bundle: the referrer has no bundle layer")
    try:
        data = client.fetch_blob_bytes(ref, layer, max_size=MAX_BUNDLE_SIZE)
    except IntegrityError as exc:  # over the size cap, digest mismatch
        return StoredBundle(digest, created, None, f"bad bundle: {exc}")
    except RegistryError as exc:
        return StoredBundle(digest, created, None, f"bundle unavailable: {exc}")
    return StoredBundle(digest, created, data)


def find_bundles(client: RegistryClient, ref: Reference, subject_digest: str) -> list[StoredBundle]:
    """Every signature bundle attached to ``subject_digest`` (unrelated referrers skipped)."""
    found = []
    for descriptor in list_referrers(client, ref, subject_digest):
        stored = _fetch_bundle(client, ref, descriptor.digest)
        if stored is not None:
            found.append(stored)
    return found
