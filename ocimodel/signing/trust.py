"""Which Sigstore instance is trusted: for verifying (a trusted root) and for signing.

Verification never touches the network or the disk cache: the root is the user's pinned
file, or the production/staging root embedded in the sigstore package, read in place
(``Verifier.production(offline=True)`` would copy it into a user cache and trust that
copy unverified). Signing uses a ClientTrustConfig: the user's file for a private
deployment, else the public instance's, refreshed over TUF (signing is online anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ocimodel.errors import NetworkError, UsageError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig, TrustedRoot


def load_trusted_root(path: Path | None = None, *, staging: bool = False) -> TrustedRoot:
    """The pinned root at ``path``, else the embedded production (or staging) root."""
    from sigstore._internal.tuf import DEFAULT_TUF_URL, STAGING_TUF_URL
    from sigstore._utils import read_embedded
    from sigstore.errors import Error
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    if path is not None:
        try:
            return TrustedRoot.from_file(str(path))
        except OSError as exc:
            raise UsageError(f"cannot read trusted root {path}: {exc.strerror}") from None
        except (Error, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise UsageError(f"{path} is not a Sigstore trusted root: {exc}") from None
    url = STAGING_TUF_URL if staging else DEFAULT_TUF_URL
    raw = read_embedded("trusted_root.json", url)
    return TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))


def trust_config(staging: bool = False, path: Path | None = None) -> ClientTrustConfig:
    """The signing configuration: ``path`` (a ClientTrustConfig JSON), staging or production."""
    from sigstore.errors import Error
    from sigstore.models import ClientTrustConfig

    if path is not None:
        try:
            return ClientTrustConfig.from_json(Path(path).read_text())
        except OSError as exc:
            raise UsageError(f"cannot read trust config {path}: {exc.strerror}") from None
        except (Error, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise UsageError(f"{path} is not a Sigstore ClientTrustConfig: {exc}") from None
    try:
        return ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    except (Error, OSError) as exc:  # TUF refresh: sigstore wraps network/metadata errors
        instance = "staging" if staging else "production"
        raise NetworkError(f"cannot fetch the Sigstore {instance} trust root: {exc}") from None
