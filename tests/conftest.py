"""Shared pytest setup: makes the test helpers importable and loads the real-registry fixtures.

``tests/unit`` holds the fast tests (no registry, no network: ``make test-unit``);
``tests/integration`` the ones against the real registry and local servers. The helpers at
this level (registry_fixtures, faultproxy, transfer_helpers, process_helpers, scan_corpus,
pickle_helpers, the sigstore stand-in) serve both, and test modules of one directory may
import helpers defined in the other.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

HERE = Path(__file__).parent
for directory in (HERE, HERE / "unit", HERE / "integration"):
    sys.path.insert(0, str(directory))
# The delaying proxy (benchmarks/delayproxy.py) serves the benchmark and the tests. Appended, not
# inserted: a benchmark script's name must never shadow a module of the standard library.
sys.path.append(str(HERE.parent / "benchmarks"))

import os  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402
from registry_fixtures import *  # noqa: E402,F401,F403 - fixtures are found by name

if TYPE_CHECKING:
    from ocimodel.transfer.cache import BlobCache


# Property tests run the same cases on every run (derandomized), so a suite is not red by chance
# on a machine nobody watches; explore with OCIMODEL_HYPOTHESIS=explore, and turn every
# counterexample found into an explicit test (as test_an_empty_appends_on_any_object_...).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("OCIMODEL_HYPOTHESIS") == "explore" else "ci")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every CLI it runs) gets its own empty cache, never ~/.cache/ocimodel."""
    directory = tmp_path_factory.mktemp("ocimodel-cache")
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def cache(tmp_path: Path) -> Iterator["BlobCache"]:
    """An empty blob cache in the test's own directory (the cache tests of both sets use it)."""
    from ocimodel.transfer.cache import BlobCache

    c = BlobCache(tmp_path / "cache")
    yield c
    c.close()


@pytest.fixture
def evil_model(tmp_path: Path) -> Path:
    """A model directory with a pickle that runs a command, next to two harmless files."""
    from test_safety import evil_pickle, safetensors

    root = tmp_path / "evil-model"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "evil.pkl").write_bytes(evil_pickle(tmp_path / "pwned"))
    (root / "w.safetensors").write_bytes(safetensors())
    (root / "config.json").write_text('{"hidden": 8}')
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The policy matrix's files: a key pair ``k``, a blob and an (empty) bundle."""
    from ocimodel.signing import keys as signing_keys

    tmp = tmp_path_factory.mktemp("policy-matrix")
    signing_keys.generate_keypair(tmp / "k", b"pw")
    (tmp / "blob").write_bytes(b"model bytes")
    (tmp / "bundle.json").write_text("{}")
    return tmp


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``OCIMODEL_*`` policy variable from the caller's environment."""
    from ocimodel.signing.policy import POLICY_VARIABLES

    for name in POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
