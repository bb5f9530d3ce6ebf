"""Shared pytest setup: makes tests/ importable and loads the real-registry fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from registry_fixtures import *  # noqa: E402,F401,F403 - fixtures are found by name


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every CLI it runs) gets its own empty cache, never ~/.cache/ocimodel."""
    directory = tmp_path_factory.mktemp("ocimodel-cache")
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(directory))
    return directory
