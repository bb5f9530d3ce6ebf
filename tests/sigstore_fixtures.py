"""Pytest fixtures for signing tests: a local Sigstore stand-in and the public bundles.

Registered from conftest with ``pytest_plugins = ["sigstore_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sigstore_standin import SigstoreStandin

SIGSTORE_DATA = Path(__file__).parent / "data" / "sigstore"


@pytest.fixture(scope="session")
def sigstore_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreStandin]:
    """A running local Fulcio + Rekor + GitHub token endpoint, with its trust files.

    Attributes: ``url``, ``trust_config_path`` (ClientTrustConfig JSON),
    ``trusted_root_path``; methods ``mint_token(identity, issuer, **claims)`` and
    ``github_env(repo, workflow_ref)`` (env vars for the GitHub Actions ambient path).
    """
    standin = SigstoreStandin().start()
    standin.write_files(tmp_path_factory.mktemp("sigstore-standin"))
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def sigstore_data() -> Path:
    """The folder of public Sigstore bundles (see data/sigstore/SOURCE.md)."""
    return SIGSTORE_DATA
