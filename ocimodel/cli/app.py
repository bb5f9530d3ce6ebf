"""The ``ocimodel`` command: the typer app, and what every command shares.

Nothing in the command line speaks HTTP or touches the artifact format: every command (in
the ``cmd_*`` modules) builds a client from its options (:mod:`.options`), calls one verb
and prints the result (:mod:`.render`). The options containers and CI need can also come from
an environment variable ``OCIMODEL_<OPTION>`` (:data:`.options.ENVIRONMENT_OPTIONS`). Expected failures print one line
``error: ...`` on stderr and exit with the code of their class (see README). Only
``ocimodel.api`` and the pure core are imported, and only when a command runs: ``--help``
stays fast.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer
from typing_extensions import Annotated

from .._version import __version__
from .options import ConnectionOptions, verbosity_options
from .render import print_json

app = typer.Typer(
    name="ocimodel",
    help="Machine learning models as signed, versioned artifacts in any OCI registry.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion SHELL (bash, zsh, fish)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich help formatting costs ~0.12 s of imports per run
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and their exit code; give the command
    -q/--quiet and -v/--verbose (:func:`.options.verbosity_options`)."""
    inner = verbosity_options(fn)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import ExitCode, OcimodelError

        try:
            return inner(*args, **kwargs)
        except OcimodelError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as exc:
            # Disk full, permission denied...: the user can act on these without a traceback.
            _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", ExitCode.ERROR)

    return wrapper  # type: ignore[return-value]


def _run(connection: ConnectionOptions, json_out: bool, call: Callable[[Any], Any], mirror: list[str] | None = None) -> Any:
    """``call(client)`` on a client for ``connection`` (reading through ``mirror``).

    With ``json_out`` the result is printed as JSON and None returned; else it is returned.
    """
    with connection.client(mirror) as client:
        result = call(client)
    if json_out:
        print_json(result.to_dict())
        return None
    return result


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ocimodel {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Push, pull, inspect, sign and promote ML models in any OCI registry."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
