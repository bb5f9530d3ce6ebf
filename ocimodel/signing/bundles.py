"""Where signatures live: Sigstore bundles attached to what they sign, as cosign finds them.

A signature is an OCI image manifest shaped as cosign v3 writes it: ``artifactType`` (on the
manifest and, as cosign writes it, on the config descriptor too) and the one layer's media
type are the v0.3 bundle media type, the config is the OCI empty blob, ``subject`` is the
signed manifest. It is stored by digest and made findable as a
referrer of its subject (:mod:`ocimodel.referrers`: the store's index, else the
``sha256-<hex>`` fallback tag).

Readers never trust index metadata: each listed manifest is fetched by digest and judged
by its own ``artifactType`` and layer media types (older writers left entries without
annotations or with a wrong ``artifactType``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ocimodel.config import timestamp
from ocimodel.descriptor import ANNOTATION_CREATED, EMPTY_JSON, EMPTY_V1, Descriptor, Manifest
from ocimodel.errors import IntegrityError, NotFoundError, RegistryError, SchemaError
from ocimodel.referrers import DEFAULT_MERGE_ATTEMPTS, attach, index_entry, list_referrers, referrer_manifest
from ocimodel.settle import SETTLE_SECONDS
from ocimodel.signing.statement import BUNDLE_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPES, PREDICATE_TYPE
from ocimodel.storage import Target

ANNOTATION_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
BUNDLE_CONTENT_DSSE = "dsse-envelope"
#: Bundles are a few KiB (a certificate chain and a log entry); refuse anything huge.
MAX_BUNDLE_SIZE = 1024 * 1024


def build_referrer(subject: Descriptor, bundle: Descriptor, created: str | None = None) -> Manifest:
    """The referrer manifest carrying ``bundle`` (a layer descriptor) for ``subject``."""
    annotations = {
        ANNOTATION_BUNDLE_CONTENT: BUNDLE_CONTENT_DSSE,
        ANNOTATION_BUNDLE_PREDICATE_TYPE: PREDICATE_TYPE,
        ANNOTATION_CREATED: created or timestamp(None),
    }
    return referrer_manifest(subject, bundle, BUNDLE_MEDIA_TYPE, annotations, config_artifact_type=BUNDLE_MEDIA_TYPE)


@dataclass(frozen=True)
class AttachResult:
    """Where a bundle was stored."""

    referrer: Descriptor
    fallback_tag: str | None  # None when the registry's referrers API indexed it


def attach_bundle(
    target: Target,
    subject: Descriptor,
    bundle_json: bytes,
    *,
    attempts: int = DEFAULT_MERGE_ATTEMPTS,
    settle: float = SETTLE_SECONDS,
) -> AttachResult:
    """Store ``bundle_json`` as a referrer of ``subject`` in ``target``."""
    target.push_blob_bytes(EMPTY_V1, EMPTY_JSON)
    layer = target.push_blob_bytes(BUNDLE_MEDIA_TYPE, bundle_json)
    referrer = build_referrer(subject, layer)
    tag = attach(target, referrer, attempts=attempts, settle=settle)
    return AttachResult(referrer=index_entry(referrer), fallback_tag=tag)


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


def _fetch_bundle(target: Target, digest: str) -> StoredBundle | None:
    """The bundle of referrer ``digest``; None if that referrer is not a signature."""
    try:
        fetched = target.fetch_manifest(digest)
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
        data = target.fetch_blob_bytes(layer, max_size=MAX_BUNDLE_SIZE)
    except IntegrityError as exc:  # over the size cap, digest mismatch
        return StoredBundle(digest, created, None, f"bad bundle: {exc}")
    except RegistryError as exc:
        return StoredBundle(digest, created, None, f"bundle unavailable: {exc}")
    return StoredBundle(digest, created, data)


def find_bundles(target: Target, subject_digest: str) -> list[StoredBundle]:
    """Every signature bundle attached to ``subject_digest`` (unrelated referrers skipped)."""
    found = []
    for descriptor in list_referrers(target, subject_digest):
        stored = _fetch_bundle(target, descriptor.digest)
        if stored is not None:
            found.append(stored)
    return found
