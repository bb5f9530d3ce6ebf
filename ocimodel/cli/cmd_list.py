"""``ocimodel list REGISTRY[/PREFIX]``: the repositories of a registry that hold models."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import typer
from typing_extensions import Annotated

from .app import app, handle_errors
from .options import INJECTED, ConnectionOptions, JsonOut, connection_options, policy_options
from .render import print_json

if TYPE_CHECKING:
    from ..api import ModelRepository, ModelVersion, VerificationPolicy

Location = Annotated[str, typer.Argument(
    metavar="REGISTRY[/PREFIX]", help="Registry host, optionally with a repository prefix: localhost:5000/models")]


def _shown(text: str | None) -> str:
    """Registry-supplied text made safe for a terminal (no control characters)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in (text or ""))


def _version(v: ModelVersion) -> str:
    mark = v.signature.status if v.signature else "?"
    who = f" {_shown(v.signature.detail)}" if v.signature and v.signature.detail and mark == "verified" else ""
    return f"{_shown(v.tag)} {v.digest[:19]} [{mark}{who}]"


def _line(repo: ModelRepository) -> str:
    latest = _version(repo.latest) if repo.latest else "-"
    stages = ", ".join(f"{_shown(s.tag)}={s.digest[:19]} [{s.signature.status if s.signature else '?'}]"
                       for s in repo.stages) or "-"
    return f"{repo.repository}  latest {latest}  stages {stages}"


@app.command("list", short_help="List a registry's model repositories, stages, signatures.",
             epilog="Example: ocimodel list registry.example.com/models --json")
@handle_errors
@connection_options
@policy_options
def list_command(
    target: Location,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """List the repositories of a registry holding models: stages, latest version, signatures.

    Reads the registry's catalog (many hosted registries close it: exit 3 or 4 with a
    one-line reason). Latest = the newest by the manifest's created time. Without policy
    options a signature is only "signed" (unverified); with them, each shown digest must be
    "verified" under the policy, else exit 5. A repository that cannot be read is named on
    stderr and the exit code is 1.
    """
    from ..errors import ExitCode
    from ..reference import parse_registry_prefix

    host, _ = parse_registry_prefix(target)
    connection = replace(connection, registry=host)  # credentials for this host, however REGISTRY parses
    with connection.client() as client:
        found = client.list_models(target, policy=policy)
    if json_out:
        print_json([r.to_dict() for r in found])
    else:
        if not found:
            typer.echo(f"no ocimodel models in {target}", err=True)
        for repo in found:
            if repo.error is None:
                typer.echo(_line(repo))
                for problem in [repo.note] + [v.signature.detail for v in (repo.latest, *repo.stages)
                                              if v and v.signature and v.signature.status == "not-verified"]:
                    if problem:
                        typer.echo(f"  ! {_shown(problem)}")
    for repo in found:
        if repo.error is not None:
            typer.echo(f"error: {repo.repository}: {_shown(repo.error)}", err=True)
    if any(r.error for r in found):
        raise typer.Exit(ExitCode.ERROR)
    if policy is not None and not all(r.verified for r in found):
        raise typer.Exit(ExitCode.VERIFICATION)
