"""The ``ocimodel`` command line: :mod:`.app` (the typer app and what every command shares),
the commands (:mod:`.cmd_models`, :mod:`.cmd_list`, :mod:`.cmd_signing`, :mod:`.cmd_stages`, :mod:`.cmd_login`),
:mod:`.options` (typed options and the option groups a command receives), :mod:`.render` (what
is printed), :mod:`.output` (stderr lines by verbosity), :mod:`.progress` (progress bars),
:mod:`.graphs` (mermaid and dot pictures). It talks to :mod:`ocimodel.api` only."""

# Importing a command module registers its commands, in this order in --help.
from . import cmd_models, cmd_copy, cmd_list, cmd_signing, cmd_stages, cmd_login  # noqa: F401, I001
from .app import main

__all__ = ["main"]
