"""The public API: one lazy table, every CLI verb as a Python function with an explicit signature."""

from __future__ import annotations

import importlib
import inspect

import typer.main

import ocimodel
from ocimodel.cli.app import app

#: Verbs that never talk to a registry (offline, or local files only).
OFFLINE = {"verify_blob", "keygen", "logout"}
#: CLI verbs whose Python name differs: ``ocimodel.list`` would shadow the builtin ``list``.
PYTHON_NAMES = {"list": "list_models"}


def test_the_table_names_each_public_object_where_it_is_defined():
    assert sorted(ocimodel.__all__) == sorted([*ocimodel._LAZY, "__version__"])
    for name, module in ocimodel._LAZY.items():
        value = getattr(ocimodel, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert callable(value) and not inspect.ismodule(value), name
        assert getattr(value, "__module__", module) == module, f"ocimodel.{name} is defined in {value.__module__}"
    assert isinstance(ocimodel.__version__, str)


def test_every_cli_verb_is_a_python_verb_with_an_explicit_signature():
    commands = {PYTHON_NAMES.get(name, name).replace("-", "_") for name in typer.main.get_command(app).commands}
    missing = commands - set(ocimodel.__all__)
    assert not missing, f"CLI verbs without a Python verb: {sorted(missing)}"
    for verb in commands:
        function = getattr(ocimodel, verb)
        parameters = inspect.signature(function).parameters.values()
        assert not [p for p in parameters if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)], f"{verb} takes **kwargs"
        if verb not in OFFLINE:
            assert "connection" in inspect.signature(function).parameters, f"{verb} takes no connection"
        assert function.__doc__, verb


def test_client_methods_have_explicit_signatures_too():
    for name, method in inspect.getmembers(ocimodel.Client, inspect.isfunction):
        parameters = inspect.signature(method).parameters.values()
        assert not [p for p in parameters if p.kind is p.VAR_KEYWORD], f"Client.{name} takes **kwargs"
