"""Key pair generation."""

from __future__ import annotations

import pytest

import ocimodel
from ocimodel.errors import UsageError


def test_keygen_refuses_to_overwrite(tmp_path):
    ocimodel.keygen(tmp_path / "k", password=b"pw")
    with pytest.raises(UsageError, match="already exists"):
        ocimodel.keygen(tmp_path / "k", password=b"pw")
