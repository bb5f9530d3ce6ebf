"""All registry I/O: :class:`RegistryClient` (HTTP), with auth, credentials and retry beneath it.

``client`` speaks the OCI distribution API; ``auth`` answers challenges (Basic, Bearer tokens);
``credentials`` reads docker's config and credential helpers; ``retry`` decides when to try again;
``mirrors`` parses pull-through cache settings (``--mirror REGISTRY=URL``) the client reads through.
"""

from __future__ import annotations

from .client import BlobStream, FetchedManifest, ManifestPutResult, RegistryClient, TransferInterrupted
from .credentials import Credential, CredentialStore
from .mirrors import MIRROR_ENV, Mirror, parse_mirrors
from .retry import RetryPolicy

__all__ = [
    "BlobStream",
    "Credential",
    "CredentialStore",
    "FetchedManifest",
    "MIRROR_ENV",
    "ManifestPutResult",
    "Mirror",
    "RegistryClient",
    "RetryPolicy",
    "TransferInterrupted",
    "parse_mirrors",
]
