"""Which options an environment variable may set: only those containers and CI need, exactly
the ones README "Configuration" lists; never metadata, output choices or confirmations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer.main

from ocimodel.cli.app import app
from ocimodel.cli.options import ENVIRONMENT_OPTIONS, env

README = Path(__file__).resolve().parents[2] / "README.md"
#: Read by the library itself rather than through an option.
LIBRARY_VARIABLES = {"OCIMODEL_KEY_PASSWORD"}
#: Options whose values must come from the command line and nowhere else.
NEVER_FROM_ENVIRONMENT = {
    "version", "name", "description", "framework", "format", "license", "author", "label", "metric", "param",
    "parent", "dataset", "run-id", "run-uri", "git-remote", "git-commit", "no-git", "no-scan", "reason", "actor",
    "force", "yes", "to", "steps", "json", "quiet", "verbose", "sign", "sign-key", "bundle", "output-prefix",
    "all", "tags", "no-referrers", "depth",
}


def _parameters() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(app)
    for param in root.params:
        yield "ocimodel", param
    for name, command in root.commands.items():
        for param in command.params:
            yield name, param


def _flag(param: Any) -> str:
    if param.param_type_name == "argument":
        return str(param.name)
    return max(param.opts, key=len).lstrip("-")


def test_every_option_reads_only_an_allowed_variable():
    seen: set[str] = set()
    checked = 0
    for command, param in _parameters():
        if param.name == "help":
            continue
        checked += 1
        flag = _flag(param)
        if not param.envvar:
            continue
        assert param.envvar in {env(o) for o in ENVIRONMENT_OPTIONS}, f"{command} --{flag} reads {param.envvar}"
        assert flag not in NEVER_FROM_ENVIRONMENT, f"{command} --{flag} must not read {param.envvar}"
        seen.add(param.envvar)
    assert checked > 100
    # Every allowed variable is read somewhere (a stale entry would be documented but dead).
    assert seen == {env(o) for o in ENVIRONMENT_OPTIONS}


@pytest.mark.parametrize("option", sorted(NEVER_FROM_ENVIRONMENT))
def test_metadata_and_confirmations_have_no_variable(option):
    found = [(command, p.envvar) for command, p in _parameters() if p.name != "help" and _flag(p) == option]
    assert all(envvar is None for _, envvar in found), found
    with pytest.raises(ValueError):
        env(option)


def test_readme_lists_exactly_the_variables_of_the_code():
    text = README.read_text()
    section = text[text.index("## Configuration\n"):]
    section = section[: section.index("\n**")]  # the table and its introduction
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`(OCIMODEL_[A-Z_]+)`", table))
    assert documented == {env(o) for o in ENVIRONMENT_OPTIONS} | LIBRARY_VARIABLES
