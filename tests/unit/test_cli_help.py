"""Help a new user can read at 80 columns: whole one-line summaries, real metavars, an example
in each command's help, and shell completion scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from ocimodel.cli.app import app


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True, env=env, timeout=60)


COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_summaries_whole_at_80_columns():
    out = _run("--help")
    assert out.returncode == 0
    listed = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ") and not line.strip().startswith("-")}
    assert set(COMMANDS) <= set(listed)
    for name, command in COMMANDS.items():
        line = listed[name]
        assert len(line) <= 80 and not line.endswith("...") and line.rstrip().endswith(command.short_help), line


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_an_example_and_named_arguments(name):
    command = COMMANDS[name]
    epilog = command.epilog or ""
    assert epilog.startswith("Example: ") and f"ocimodel {name}" in epilog, name
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.metavar and param.metavar == param.metavar.upper(), (name, param.name)
    names = {opt for param in command.params for opt in param.opts}
    assert {"-q", "--quiet", "-v", "--verbose"} <= names


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell):
    script = Path(sys.executable).with_name("ocimodel")  # the installed command, as a shell runs it
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    out = subprocess.run([str(script), "--show-completion", shell], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "_OCIMODEL_COMPLETE" in out.stdout, out.stdout + out.stderr
