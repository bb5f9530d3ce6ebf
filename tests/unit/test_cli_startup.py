"""The command line without a registry: help, version, what start-up imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
from process_helpers import run


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("ocimodel ")
    helped = run("--help")
    for verb in ("push", "pull", "inspect", "tags", "login", "logout"):
        assert verb in helped.stdout


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag):
    """Start-up stays fast (measured ~0.1 s) because these paths import no HTTP, Sigstore,
    rich or cryptography code: checked by what is imported, not by a timer."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "ocimodel", flag], capture_output=True, text=True)
    assert out.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"httpx", "sigstore", "rich", "cryptography", "ocimodel.api", "ocimodel.registry.client"}
    assert not heavy & imported, heavy & imported
