"""Shared pytest setup: makes tests/ importable and loads the real-registry fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from registry_fixtures import *  # noqa: E402,F401,F403 - fixtures are found by name
