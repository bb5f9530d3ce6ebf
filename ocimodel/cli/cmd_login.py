"""Commands about stored credentials: login, logout."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import typer
from typing_extensions import Annotated

from .app import app, handle_errors
from .output import current
from .options import (
    INJECTED,
    ConnectionOptions,
    env,
    transport_options,
)

if TYPE_CHECKING:
    pass


@app.command(short_help='Check and store credentials for a registry.', epilog='Example: echo "$TOKEN" | ocimodel login ghcr.io -u USER --password-stdin')
@handle_errors
@transport_options
def login(
    host: Annotated[str, typer.Argument(metavar="HOST", help="Registry host, e.g. ghcr.io or localhost:5000")],
    username: Annotated[str, typer.Option("--username", "-u", envvar=env("username"), prompt=True)],
    password: Annotated[Optional[str], typer.Option("--password", "-p", envvar=env("password"), help="Prefer --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    connection: ConnectionOptions = INJECTED,
) -> None:
    """Check credentials against HOST and store them in the docker config file."""
    from ..api import login as api_login
    from ..errors import UsageError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise UsageError("no password given: use --password-stdin (e.g. echo \"$TOKEN\" | ocimodel login HOST -u USER --password-stdin)")
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise UsageError("empty password")
    where = api_login(host, username, password, connection=connection.connection())
    current().summary(f"Login succeeded for {host} (credentials stored in {where})")


@app.command(short_help='Remove stored credentials for a registry.', epilog='Example: ocimodel logout ghcr.io')
@handle_errors
def logout(host: Annotated[str, typer.Argument(metavar="HOST", help="Registry host.")]) -> None:
    """Remove stored credentials for HOST."""
    from ..api import logout as api_logout

    removed = api_logout(host)
    current().summary(f"Removed credentials for {host}" if removed else f"No credentials stored for {host}")
