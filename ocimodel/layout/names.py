"""``oci:PATH[:REF]``, ``oci:PATH@sha256:<hex>`` and ``oci-archive:FILE[:REF]`` references.

Spelled as skopeo (containers/image) spells them: the text after the transport is split at
its *first* colon, so PATH cannot contain ``:`` while REF may (``oci:dir:example.com/r:1.0``).
REF is checked against the ``org.opencontainers.image.ref.name`` grammar (annotations.md).
ocimodel also accepts ``@sha256:<hex>`` after PATH (a digest, which skopeo spells ``oci:PATH``
plus no name); a digest with a colon-REF cannot be combined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidReferenceError
from ..reference import validate_digest

OCI = "oci"
OCI_ARCHIVE = "oci-archive"
TRANSPORTS = (OCI, OCI_ARCHIVE)

_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
#: The ``org.opencontainers.image.ref.name`` grammar, as containers/image builds it.
REF_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
MAX_REF_NAME = 255
#: ``PATH@sha256:<hex>`` (PATH has no colon, as in every layout reference).
_PINNED_RE = re.compile(r"([^:]*)@(sha256:[0-9a-f]{64})")


def is_layout_reference(text: object) -> bool:
    """Whether ``text`` names a layout (``oci:`` or ``oci-archive:``) rather than a registry."""
    return isinstance(text, str) and text.partition(":")[0] in TRANSPORTS and ":" in text


def validate_ref_name(name: str) -> str:
    """``name`` if it is a valid ``org.opencontainers.image.ref.name``; else InvalidReferenceError."""
    if len(name) > MAX_REF_NAME or not REF_NAME_RE.fullmatch(name):
        raise InvalidReferenceError(
            f"invalid layout tag {name!r}: letters and digits joined by one of -._:@+ (or --), parts separated by /"
        )
    return name


@dataclass(frozen=True)
class LayoutReference:
    """A parsed layout reference: ``transport`` (``oci`` or ``oci-archive``), ``path``, and a
    tag (``ref.name``) or digest, or neither (the layout's only model)."""

    transport: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def archive(self) -> bool:
        return self.transport == OCI_ARCHIVE

    @property
    def name(self) -> str:
        """``oci:PATH`` (no tag or digest): how messages and records name the layout."""
        return f"{self.transport}:{self.path}"


def parse_layout_reference(text: str) -> LayoutReference:
    """Parse ``oci:PATH[:REF|@DIGEST]`` or ``oci-archive:FILE[:REF|@DIGEST]``."""
    transport, _, rest = text.partition(":")
    if transport not in TRANSPORTS:
        raise InvalidReferenceError(f"{text!r} is not an oci: or oci-archive: reference")
    digest = None
    pinned = _PINNED_RE.fullmatch(rest)
    if pinned:
        path, ref, digest = pinned.group(1), "", validate_digest(pinned.group(2))
    else:
        path, _, ref = rest.partition(":")
        if path.endswith("@sha256"):
            raise InvalidReferenceError(f"{text!r}: what follows @ is not a sha256 digest (sha256:<64 hex>)")
    if not path:
        raise InvalidReferenceError(f"{text!r} names no path: write {transport}:PATH[:TAG]")
    if "\x00" in path:
        raise InvalidReferenceError(f"{text!r}: the path contains a NUL byte")
    tag = validate_ref_name(ref) if ref else None
    return LayoutReference(transport, path, tag=tag, digest=digest)
