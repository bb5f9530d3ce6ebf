"""``ocimodel copy SRC DST``: a model and everything attached to it, to another place.

The two sides may be different registries with different options and credentials: the shared
``--plain-http``, ``--insecure``, ``--ca-file`` and ``--timeout`` apply to both, ``--from-*``
to the source only and ``--to-*`` to the destination only. Given credentials go to their own
side's registry and nowhere else (``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD`` only when the
copy involves one registry: see :func:`ocimodel.registry.connection.copy_connections`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from .app import app, handle_errors
from .options import JsonOut, Timeout, env
from .output import current
from .progress import progress
from .render import print_json


def _flag(name: str, help: str) -> object:
    return Annotated[bool, typer.Option(f"--{name}", envvar=env(name), help=help, rich_help_panel="Registries")]


def _text(name: str, help: str) -> object:
    return Annotated[Optional[str], typer.Option(f"--{name}", envvar=env(name), help=help, rich_help_panel="Registries")]


def _path(name: str, help: str) -> object:
    return Annotated[Optional[Path], typer.Option(f"--{name}", envvar=env(name), help=help, rich_help_panel="Registries")]


@app.command(short_help='Copy a model with its signatures and records.', epilog='Example: ocimodel copy registry.example.com/models/churn:1.0 mirror.example.com/models/churn --tags')
@handle_errors
def copy(
    src: Annotated[str, typer.Argument(metavar="SRC", help="What to copy: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")],
    dst: Annotated[str, typer.Argument(metavar="DST", help="Where to: REGISTRY/REPO[:TAG] (without a tag: the source's tag).")],
    no_referrers: Annotated[bool, typer.Option("--no-referrers", help="Copy the model alone: no signatures, promotion records or other referrers.")] = False,
    tags: Annotated[bool, typer.Option("--tags", help="Also carry every tag of the source pointing at the model, and the promotion history of those that are stages.")] = False,
    concurrency: Annotated[int, typer.Option(envvar=env("concurrency"), min=1, max=16, help="Blobs in flight.")] = 2,
    plain_http: _flag("plain-http", "Use http:// on both sides.") = False,  # type: ignore[valid-type]
    insecure: _flag("insecure", "Do not verify TLS certificates on either side.") = False,  # type: ignore[valid-type]
    ca_file: _path("ca-file", "CA bundle for both sides' TLS.") = None,  # type: ignore[valid-type]
    timeout: Timeout = None,
    from_plain_http: _flag("from-plain-http", "Use http:// for the source.") = False,  # type: ignore[valid-type]
    from_insecure: _flag("from-insecure", "Do not verify the source's TLS certificate.") = False,  # type: ignore[valid-type]
    from_ca_file: _path("from-ca-file", "CA bundle for the source's TLS.") = None,  # type: ignore[valid-type]
    from_username: _text("from-username", "Username for the source registry (no other host gets it).") = None,  # type: ignore[valid-type]
    from_password: _text("from-password", "Password for the source registry; prefer OCIMODEL_FROM_PASSWORD.") = None,  # type: ignore[valid-type]
    to_plain_http: _flag("to-plain-http", "Use http:// for the destination.") = False,  # type: ignore[valid-type]
    to_insecure: _flag("to-insecure", "Do not verify the destination's TLS certificate.") = False,  # type: ignore[valid-type]
    to_ca_file: _path("to-ca-file", "CA bundle for the destination's TLS.") = None,  # type: ignore[valid-type]
    to_username: _text("to-username", "Username for the destination registry (no other host gets it).") = None,  # type: ignore[valid-type]
    to_password: _text("to-password", "Password for the destination registry; prefer OCIMODEL_TO_PASSWORD.") = None,  # type: ignore[valid-type]
    json_out: JsonOut = False,
) -> None:
    """Copy a model with everything attached to it (signatures, promotion records, any
    referrer, recursively), every digest kept, so verify and history answer the same on the copy.

    Blobs the destination has are skipped, within one registry they are mounted, otherwise
    they stream from source to destination, verified, never touching the disk. A re-run of an
    interrupted copy moves only what is missing. Prints the digest (--json: what was copied,
    skipped and mounted).
    """
    from ..api import Connection
    from ..api import copy as copy_model

    source = Connection(
        plain_http=plain_http or from_plain_http, insecure=insecure or from_insecure, ca_file=from_ca_file or ca_file,
        timeout=timeout, username=from_username or None, password=from_password or None,
    )
    destination = None
    if to_plain_http or to_insecure or to_ca_file or to_username or to_password:
        destination = Connection(
            plain_http=plain_http or to_plain_http, insecure=insecure or to_insecure, ca_file=to_ca_file or ca_file,
            timeout=timeout, username=to_username or None, password=to_password or None,
        )
    with progress(json_out) as observer:
        result = copy_model(src, dst, connection=source, to_connection=destination, referrers=not no_referrers,
                            tags=tags, concurrency=concurrency, observer=observer)
    if json_out:
        print_json(result.to_dict())
        return
    current().summary(
        f"Copied {result.source} to {result.destination}: blobs {result.copied_blobs} copied, "
        f"{result.skipped_blobs} already there, {result.mounted_blobs} mounted; {len(result.referrers)} referrers"
        + (f"; tags {', '.join(result.tags)}" if result.tags else "")
    )
    typer.echo(result.digest)
