"""``index.json`` and ``oci-layout`` of an OCI image layout: reading them within bounds, and
amending the index the way skopeo and oras do.

Tags are entries' ``org.opencontainers.image.ref.name`` annotation (the bare tag). Moving a
tag takes the name off the entry that had it (the first such, as containers/image does); that
entry stays, unnamed, so nothing it kept reachable is lost. A manifest stored without a tag
(a referrer, say) is listed once, unnamed, so oras-go and others find it by scanning the
index. Readers take the *first* entry carrying a name.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..descriptor import ANNOTATION_REF_NAME, MANIFEST_MEDIA_TYPES, Descriptor, Index
from ..errors import IntegrityError, SchemaError
from .. import jsondoc

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
LAYOUT_HEADER = b'{"imageLayoutVersion":"1.0.0"}'
#: index.json over this is refused: a hostile layout could otherwise make a reader parse gigabytes.
MAX_INDEX_SIZE = 4 * 1024 * 1024
MAX_LAYOUT_FILE_SIZE = 64 * 1024
EMPTY_INDEX = b'{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}'


def check_layout_header(raw: bytes, where: str) -> None:
    """Refuse an ``oci-layout`` file that is not JSON with ``imageLayoutVersion`` 1.0.0."""
    header = jsondoc.load_object(raw, f"{where}/{LAYOUT_FILE}", max_bytes=MAX_LAYOUT_FILE_SIZE, error=IntegrityError)
    version = header.get("imageLayoutVersion")
    if version != LAYOUT_VERSION:
        raise IntegrityError(f"{where}: unsupported image layout version {version!r} (ocimodel reads {LAYOUT_VERSION})")


def ref_name(entry: Descriptor) -> str | None:
    """The tag an index entry carries, if any."""
    return entry.annotations.get(ANNOTATION_REF_NAME) or None


def _unnamed(entry: Descriptor) -> Descriptor:
    annotations = {k: v for k, v in entry.annotations.items() if k != ANNOTATION_REF_NAME}
    return replace(entry, annotations=annotations)


@dataclass(frozen=True)
class LayoutIndex:
    """The entries of a layout's ``index.json``, in order."""

    entries: tuple[Descriptor, ...] = ()

    @classmethod
    def parse(cls, raw: bytes, where: str) -> "LayoutIndex":
        """Parse ``index.json`` (refused over :data:`MAX_INDEX_SIZE`, malformed, or nested
        too deep, with an :class:`IntegrityError` naming ``where``)."""
        what = f"{where}/{INDEX_FILE}"
        if len(raw) > MAX_INDEX_SIZE:
            raise IntegrityError(f"{what}: {len(raw)} bytes is over the {MAX_INDEX_SIZE // 2**20} MiB limit; refusing it")
        try:
            index = Index.parse(raw, what)
        except SchemaError as exc:
            raise IntegrityError(f"{exc}; not a usable image layout") from None
        return cls(tuple(index.manifests))

    def to_raw(self) -> bytes:
        """The index as stored: with ``mediaType`` (oras-go writes it; skopeo reads either)."""
        return Index.build(list(self.entries)).raw

    def find(self, name: str) -> Descriptor | None:
        """The first entry named ``name``."""
        return next((e for e in self.entries if ref_name(e) == name), None)

    def by_digest(self, digest: str) -> Descriptor | None:
        return next((e for e in self.entries if e.digest == digest), None)

    def names(self) -> list[str]:
        return sorted({n for e in self.entries if (n := ref_name(e))})

    def manifests(self) -> list[Descriptor]:
        """Entries of a manifest or index media type (others are skipped, as the spec asks)."""
        return [e for e in self.entries if e.media_type in MANIFEST_MEDIA_TYPES]

    def with_entry(self, entry: Descriptor, name: str | None) -> "LayoutIndex":
        """``entry`` added, named ``name`` (taken off the entry that had it) or unnamed."""
        entries = list(self.entries)
        if name is None:
            if any(e.digest == entry.digest for e in entries):
                return self
            return LayoutIndex((*entries, _unnamed(entry)))
        old = next((i for i, e in enumerate(entries) if ref_name(e) == name), None)
        if old is not None:
            if entries[old].digest == entry.digest:
                return self
            entries[old] = _unnamed(entries[old])
        named = replace(entry, annotations={**_unnamed(entry).annotations, ANNOTATION_REF_NAME: name})
        same = next((i for i, e in enumerate(entries) if e.digest == entry.digest and ref_name(e) is None), None)
        if same is not None:
            entries[same] = named
        else:
            entries.append(named)
        return LayoutIndex(tuple(_deduplicated(entries)))

    def without_name(self, name: str) -> "LayoutIndex":
        """The tag ``name`` removed (its entries stay, unnamed)."""
        return LayoutIndex(tuple(_deduplicated([_unnamed(e) if ref_name(e) == name else e for e in self.entries])))

    def without_digest(self, digest: str) -> "LayoutIndex":
        return LayoutIndex(tuple(e for e in self.entries if e.digest != digest))


def _deduplicated(entries: list[Descriptor]) -> list[Descriptor]:
    """At most one unnamed entry per digest, and none for a digest that also has a named one."""
    named = {e.digest for e in entries if ref_name(e)}
    seen: set[str] = set()
    out = []
    for entry in entries:
        if ref_name(entry) is None:
            if entry.digest in named or entry.digest in seen:
                continue
            seen.add(entry.digest)
        out.append(entry)
    return out
