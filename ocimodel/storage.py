"""The storage interface: what push, pull, verify, sign, promote, history, lineage, scan and
tags talk to instead of a registry client.

Pure: no I/O of its own (a protocol and the values it exchanges).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest exactly as it was stored, with its verified digest."""

    raw: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class ManifestPutResult:
    """What storing a manifest returned: the digest, and the subject the store indexed, if any.

    ``subject`` set means the store keeps a referrers index itself (a registry's referrers API
    answering ``OCI-Subject``); None means the caller must maintain the ``sha256-<hex>``
    fallback tag (see :mod:`ocimodel.referrers`).
    """

    digest: str
    subject: str | None = None
