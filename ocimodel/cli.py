"""The ``ocimodel`` command: parse options, call :mod:`ocimodel.api`, print results.

Nothing here speaks HTTP or touches the artifact format. Every option can also come from
an environment variable ``OCIMODEL_<OPTION>`` (for containers). Expected failures print
one line ``error: ...`` on stderr and exit with the code of their class (see README).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer
from typing_extensions import Annotated

from . import __version__

app = typer.Typer(
    name="ocimodel",
    help="Machine learning models as signed, versioned artifacts in any OCI registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _env(option: str) -> str:
    return "OCIMODEL_" + option.upper().replace("-", "_")


PlainHttp = Annotated[bool, typer.Option("--plain-http", envvar=_env("plain-http"), help="Use http:// instead of https://.")]
Insecure = Annotated[bool, typer.Option("--insecure", envvar=_env("insecure"), help="Do not verify the registry's TLS certificate.")]
CaFile = Annotated[Optional[Path], typer.Option("--ca-file", envvar=_env("ca-file"), help="CA bundle to verify the registry's TLS certificate.")]
JsonOut = Annotated[bool, typer.Option("--json", envvar=_env("json"), help="Print machine-readable JSON on stdout.")]


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import ExitCode, OcimodelError

        try:
            return fn(*args, **kwargs)
        except OcimodelError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as exc:
            # Disk full, permission denied...: the user can act on these without a traceback.
            _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", ExitCode.ERROR)

    return wrapper  # type: ignore[return-value]


def _client(plain_http: bool, insecure: bool, ca_file: Path | None) -> Any:
    from .api import Client

    return Client(plain_http=plain_http, insecure=insecure, ca_file=ca_file)


def _observer(json_out: bool) -> Any:
    """Progress bars on an interactive stderr, silence otherwise."""
    if json_out or not sys.stderr.isatty():
        from .transfer import NullObserver

        return NullObserver()
    from .progress import RichObserver

    return RichObserver(_stderr())


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


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


@app.command()
@handle_errors
def push(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    ref: Annotated[str, typer.Argument(help="Where to push, e.g. localhost:5000/models/churn:1.0")],
    name: Annotated[Optional[str], typer.Option(envvar=_env("name"), help="Model name (default: last repository component).")] = None,
    version: Annotated[Optional[str], typer.Option("--version", envvar=_env("version"), help="Model version (default: the tag).")] = None,
    description: Annotated[Optional[str], typer.Option(envvar=_env("description"))] = None,
    framework: Annotated[Optional[str], typer.Option(envvar=_env("framework"), help="e.g. pytorch, sklearn, onnx.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", envvar=_env("format"), help="e.g. safetensors, gguf, joblib.")] = None,
    license: Annotated[Optional[str], typer.Option(envvar=_env("license"), help="SPDX license expression.")] = None,
    author: Annotated[Optional[List[str]], typer.Option(envvar=_env("author"), help="Repeatable.")] = None,
    label: Annotated[Optional[List[str]], typer.Option(envvar=_env("label"), help="KEY=VALUE, repeatable.")] = None,
    metric: Annotated[Optional[List[str]], typer.Option(envvar=_env("metric"), help="KEY=NUMBER, repeatable.")] = None,
    param: Annotated[Optional[List[str]], typer.Option(envvar=_env("param"), help="KEY=VALUE, repeatable.")] = None,
    parent: Annotated[Optional[List[str]], typer.Option(envvar=_env("parent"), help="Parent model reference, repeatable.")] = None,
    dataset: Annotated[Optional[List[str]], typer.Option(envvar=_env("dataset"), help="URI[@sha256:...], repeatable.")] = None,
    run_id: Annotated[Optional[str], typer.Option(envvar=_env("run-id"), help="Training run id (e.g. MLflow).")] = None,
    run_uri: Annotated[Optional[str], typer.Option(envvar=_env("run-uri"), help="Training run URI.")] = None,
    git_remote: Annotated[Optional[str], typer.Option(envvar=_env("git-remote"), help="Override the detected git remote.")] = None,
    git_commit: Annotated[Optional[str], typer.Option(envvar=_env("git-commit"), help="Override the detected git commit.")] = None,
    no_git: Annotated[bool, typer.Option("--no-git", envvar=_env("no-git"), help="Record no source code lineage.")] = False,
    concurrency: Annotated[int, typer.Option(envvar=_env("concurrency"), min=1, max=16, help="Parallel blob uploads.")] = 2,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_file: CaFile = None,
    json_out: JsonOut = False,
) -> None:
    """Push a model file or directory; prints the manifest digest."""
    from .config import CodeInfo, parse_key_values
    from .gitinfo import detect_code

    code: CodeInfo | bool | None = False if no_git else None
    if not no_git and (git_remote or git_commit):
        detected = detect_code(path.resolve()) or CodeInfo()
        code = CodeInfo(remote=git_remote or detected.remote, commit=git_commit or detected.commit, dirty=detected.dirty if not git_commit else None)
    with _client(plain_http, insecure, ca_file) as client, _observer(json_out) as observer:
        client.concurrency = concurrency
        result = client.push(
            path,
            ref,
            name=name,
            version=version,
            description=description,
            framework=framework,
            format=format,
            license=license,
            authors=author or [],
            labels={k: str(v) for k, v in parse_key_values(label or [], "label", typed=False).items()},
            metrics=parse_key_values(metric or [], "metric", typed=True),
            params=parse_key_values(param or [], "param", typed=True),
            parents=parent or [],
            datasets=dataset or [],
            run_id=run_id,
            run_uri=run_uri,
            code=code,
            observer=observer,
        )
    if json_out:
        _print_json(result.to_dict())
        return
    typer.echo(
        f"Pushed {result.reference} ({len(result.files)} files, {result.uploaded_blobs} blobs uploaded, "
        f"{result.skipped_blobs} already present)",
        err=True,
    )
    typer.echo(result.digest)


@app.command()
@handle_errors
def pull(
    ref: Annotated[str, typer.Argument(envvar=_env("ref"), help="Model reference (tag or digest).")],
    dest: Annotated[Path, typer.Argument(envvar=_env("dest"), help="Destination directory.")],
    include: Annotated[Optional[List[str]], typer.Option(envvar=_env("include"), help="Only files matching this glob, repeatable.")] = None,
    allow_any_type: Annotated[bool, typer.Option("--allow-any-type", envvar=_env("allow-any-type"), help="Pull artifacts of any type as plain files.")] = False,
    concurrency: Annotated[int, typer.Option(envvar=_env("concurrency"), min=1, max=16, help="Parallel blob downloads.")] = 2,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_file: CaFile = None,
    json_out: JsonOut = False,
) -> None:
    """Pull a model into DEST, verifying every byte; writes nothing on failure."""
    with _client(plain_http, insecure, ca_file) as client, _observer(json_out) as observer:
        client.concurrency = concurrency
        result = client.pull(ref, dest, include=include or [], allow_any_type=allow_any_type, observer=observer)
    if json_out:
        _print_json(result.to_dict())
        return
    total = sum(f.size for f in result.files)
    typer.echo(f"Pulled {result.reference}@{result.digest} into {result.destination} ({len(result.files)} files, {total} bytes)", err=True)
    typer.echo(result.digest)


@app.command()
@handle_errors
def inspect(
    ref: Annotated[str, typer.Argument(help="Model reference (tag or digest).")],
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_file: CaFile = None,
    json_out: JsonOut = False,
) -> None:
    """Show a model's digest, type, metadata, lineage and files."""
    with _client(plain_http, insecure, ca_file) as client:
        result = client.inspect(ref)
    if json_out:
        _print_json(result.to_dict())
        return
    from .render import render_inspect

    render_inspect(result, _stdout())


def _stdout() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def tags(
    repository: Annotated[str, typer.Argument(help="Repository, e.g. localhost:5000/models/churn")],
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_file: CaFile = None,
    json_out: JsonOut = False,
) -> None:
    """List a repository's tags, sorted."""
    with _client(plain_http, insecure, ca_file) as client:
        found = client.tags(repository)
    if json_out:
        _print_json(found)
        return
    for tag in found:
        typer.echo(tag)


@app.command()
@handle_errors
def login(
    host: Annotated[str, typer.Argument(help="Registry host, e.g. ghcr.io or localhost:5000")],
    username: Annotated[str, typer.Option("--username", "-u", envvar=_env("username"), prompt=True)],
    password: Annotated[Optional[str], typer.Option("--password", "-p", envvar=_env("password"), help="Prefer --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    ca_file: CaFile = None,
) -> None:
    """Check credentials against HOST and store them in the docker config file."""
    from .api import login as api_login
    from .errors import UsageError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise UsageError("no password given: use --password-stdin (e.g. echo \"$TOKEN\" | ocimodel login HOST -u USER --password-stdin)")
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise UsageError("empty password")
    where = api_login(host, username, password, plain_http=plain_http, insecure=insecure, ca_file=ca_file)
    typer.echo(f"Login succeeded for {host} (credentials stored in {where})", err=True)


@app.command()
@handle_errors
def logout(host: Annotated[str, typer.Argument(help="Registry host.")]) -> None:
    """Remove stored credentials for HOST."""
    from .api import logout as api_logout

    removed = api_logout(host)
    typer.echo(f"Removed credentials for {host}" if removed else f"No credentials stored for {host}", err=True)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
