"""glibc malloc tuning for transfers (why: ocimodel/allocator.py; its effect on page faults is
measured by tests/test_memory.py)."""

from __future__ import annotations

import platform

import pytest

from ocimodel.transfer.allocator import tune_for_streaming


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_thresholds_are_set_on_glibc(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert tune_for_streaming() is True
    assert tune_for_streaming() is True  # idempotent


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_explicit_user_settings_win(monkeypatch, name):
    monkeypatch.setenv(name, "65536")
    assert tune_for_streaming() is False
