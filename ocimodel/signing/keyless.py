"""Keyless signing: an OIDC identity token, exchanged for a short-lived Fulcio certificate.

The token comes from, in order: the explicit argument, ``OCIMODEL_IDENTITY_TOKEN``, an
ambient CI credential (GitHub Actions with ``id-token: write``, GitLab's
``SIGSTORE_ID_TOKEN``, Buildkite, CircleCI, GCP), and, on a terminal only, sigstore's
browser flow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ocimodel.errors import NetworkError, OcimodelError, UsageError
from ocimodel.signing.trust import trust_config

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken

__all__ = ["IDENTITY_TOKEN_ENV", "obtain_identity_token", "sign_statement_keyless", "trust_config"]

IDENTITY_TOKEN_ENV = "OCIMODEL_IDENTITY_TOKEN"
_DEFAULT_OIDC_URL = "https://oauth2.sigstore.dev/auth"


def _parse_token(raw: str, source: str) -> IdentityToken:
    from sigstore.oidc import IdentityError, IdentityToken

    try:
        return IdentityToken(raw.strip())
    except IdentityError as exc:
        raise UsageError(f"identity token from {source} rejected: {exc}") from None


def obtain_identity_token(
    explicit: str | None,
    *,
    interactive: bool,
    config: ClientTrustConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> IdentityToken:
    """An identity token: explicit, env, ambient CI credential, or browser (if interactive).

    ``config`` names the OIDC provider of the browser flow (production's by default).
    """
    from sigstore.errors import NetworkError as SigstoreNetworkError
    from sigstore.oidc import IdentityError, Issuer, IssuerError, detect_credential

    env = os.environ if environ is None else environ
    if explicit:
        return _parse_token(explicit, "the command line")
    if env.get(IDENTITY_TOKEN_ENV):
        return _parse_token(env[IDENTITY_TOKEN_ENV], IDENTITY_TOKEN_ENV)
    try:
        ambient = detect_credential()
    except IdentityError as exc:
        raise UsageError(
            f"ambient CI credential unavailable: {exc} "
            "(in GitHub Actions, grant the job `permissions: id-token: write`)"
        ) from None
    if ambient:
        return _parse_token(ambient, "the CI environment")
    if not interactive:
        raise UsageError(
            "no identity token for keyless signing: pass --identity-token, set "
            f"{IDENTITY_TOKEN_ENV}, run in CI with OIDC enabled, sign on a terminal "
            "(browser login), or sign with --key"
        )
    oidc_url = config.signing_config.get_oidc_url() if config is not None else _DEFAULT_OIDC_URL
    try:
        return Issuer(oidc_url).identity_token()
    except IdentityError as exc:
        raise UsageError(f"browser login failed: {exc}") from None
    except (SigstoreNetworkError, IssuerError) as exc:
        raise NetworkError(f"cannot reach the OIDC provider {oidc_url}: {exc}") from None


def sign_statement_keyless(
    statement: bytes, token: IdentityToken, config: ClientTrustConfig
) -> str:
    """Sign ``statement`` as a DSSE envelope through Fulcio and Rekor; the bundle JSON."""
    import requests
    from sigstore import dsse
    from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
    from sigstore._internal.rekor import RekorClientError
    from sigstore.errors import Error
    from sigstore.oidc import ExpiredIdentity
    from sigstore.sign import SigningContext

    failures = (Error, FulcioClientError, RekorClientError, ExpiredIdentity, ExpiredCertificate)
    try:
        context = SigningContext.from_trust_config(config)
        with context.signer(token) as signer:
            bundle = signer.sign_dsse(dsse.Statement(statement))
    except requests.ConnectionError as exc:
        raise NetworkError(f"cannot reach Sigstore services: {exc}") from None
    except failures as exc:
        raise OcimodelError(f"keyless signing failed: {type(exc).__name__}: {exc}") from None
    return bundle.to_json()
