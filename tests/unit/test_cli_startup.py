"""The command line without a registry: help, version, what start-up imports, one variable per option."""

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


def test_every_option_has_its_ocimodel_environment_variable():
    """Containers configure ocimodel through the environment: each --flag reads OCIMODEL_FLAG."""
    import typer.main

    from ocimodel.cli.app import app

    exceptions = {
        ("push", "cache_dir"): "OCIMODEL_CACHE_DIR",  # --cache: the variable the cache itself reads
        ("pull", "cache_dir"): "OCIMODEL_CACHE_DIR",
        ("login", "password_stdin"): None,  # a way of reading stdin, not a value
        ("history", "origin"): None,  # which repository's records count here: decided per command
        ("rollback", "origin"): None,
    }
    checked = 0
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            flag = max(param.opts, key=len).lstrip("-")
            expected = exceptions.get((name, param.name), "OCIMODEL_" + flag.upper().replace("-", "_"))
            assert param.envvar == expected, f"{name} --{flag}"
            checked += 1
    assert checked > 100
