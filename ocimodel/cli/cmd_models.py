"""Commands that move models: push, pull, inspect, tags, scan."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from typing_extensions import Annotated

from .app import _run, app, handle_errors
from .options import (
    INJECTED,
    AllowGlobals,
    CacheDir,
    ConnectionOptions,
    JsonOut,
    Mirrors,
    ModelRef,
    NoCache,
    ScanLimitOpts,
    connection_options,
    env,
    policy_options,
    refuse_blank_variables,
)
from .output import current
from .progress import progress
from .render import (
    StepLogger,
    print_json,
    render_inspect,
    size,
    stdout,
)

if TYPE_CHECKING:
    from ..api import ScanReport, VerificationPolicy


@app.command(short_help='Push a model file or directory; print its digest.', epilog='Example: ocimodel push ./model registry.example.com/models/churn:1.0 --metric acc=0.93')
@handle_errors
@connection_options
def push(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Model file or directory.")],
    ref: Annotated[str, typer.Argument(metavar="REF", help="Where to push, e.g. localhost:5000/models/churn:1.0")],
    name: Annotated[Optional[str], typer.Option(help="Model name (default: last repository component).")] = None,
    version: Annotated[Optional[str], typer.Option("--version", help="Model version (default: the tag).")] = None,
    description: Annotated[Optional[str], typer.Option()] = None,
    framework: Annotated[Optional[str], typer.Option(help="e.g. pytorch, sklearn, onnx.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="e.g. safetensors, gguf, joblib.")] = None,
    license: Annotated[Optional[str], typer.Option(help="SPDX license expression.")] = None,
    author: Annotated[Optional[List[str]], typer.Option(help="Repeatable.")] = None,
    label: Annotated[Optional[List[str]], typer.Option(help="KEY=VALUE, repeatable.")] = None,
    metric: Annotated[Optional[List[str]], typer.Option(help="KEY=NUMBER, repeatable.")] = None,
    param: Annotated[Optional[List[str]], typer.Option(help="KEY=VALUE, repeatable.")] = None,
    parent: Annotated[Optional[List[str]], typer.Option(help="Parent model reference, repeatable.")] = None,
    dataset: Annotated[Optional[List[str]], typer.Option(help="URI[@sha256:...], repeatable.")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="Training run id (e.g. MLflow).")] = None,
    run_uri: Annotated[Optional[str], typer.Option(help="Training run URI.")] = None,
    git_remote: Annotated[Optional[str], typer.Option(help="Override the detected git remote.")] = None,
    git_commit: Annotated[Optional[str], typer.Option(help="Override the detected git commit.")] = None,
    no_git: Annotated[bool, typer.Option("--no-git", help="Record no source code lineage.")] = False,
    no_scan: Annotated[bool, typer.Option("--no-scan", help="Do not scan the files for pickles that can run code (nothing recorded).")] = False,
    deny_unsafe: Annotated[bool, typer.Option("--deny-unsafe", envvar=env("deny-unsafe"), help="Refuse to push (exit 5) if a file can run code when loaded or could not be fully inspected.")] = False,
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    concurrency: Annotated[int, typer.Option(envvar=env("concurrency"), min=1, max=16, help="Parallel blob uploads.")] = 2,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """Push a model file or directory; prints the manifest digest.

    The files are scanned first: a pickle that can run code when loaded gets a warning (or,
    with --deny-unsafe, refuses the push), and the scan result is recorded in the config.
    """
    from ..api import code_with
    from ..config import CodeInfo, parse_key_values

    refuse_blank_variables("deny-unsafe")
    code: CodeInfo | bool | None = False if no_git else None
    if not no_git and (git_remote or git_commit):
        code = code_with(path, remote=git_remote, commit=git_commit)
    with connection.client(concurrency=concurrency, cache_dir=cache_dir, use_cache=not no_cache) as client, \
            progress(json_out) as observer:
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
            scan=not no_scan,
            deny_unsafe=deny_unsafe,
            on_scan=None if deny_unsafe else _warn_dangerous,
            allow_globals=allow_global or [],
            scan_limits=scan_limit or [],
        )
    if json_out:
        print_json(result.to_dict())
        return
    current().summary(
        f"Pushed {result.reference} ({len(result.files)} file{'' if len(result.files) == 1 else 's'}, {size(sum(f.size for f in result.files))}; "
        f"{result.uploaded_blobs} blobs uploaded, {result.skipped_blobs} already present)"
    )
    typer.echo(result.digest)


@app.command(short_help='Pull a model into DEST, verifying every byte.', epilog="Example: ocimodel pull registry.example.com/models/churn:prod ./model --key release.pub")
@handle_errors
@connection_options
@policy_options
def pull(
    ref: Annotated[str, typer.Argument(metavar="REF", envvar=env("ref"), help="Model reference (tag or digest).")],
    dest: Annotated[Path, typer.Argument(metavar="DEST", envvar=env("dest"), help="Destination directory.")],
    include: Annotated[Optional[List[str]], typer.Option(envvar=env("include"), help="Only files matching this glob, repeatable.")] = None,
    allow_any_type: Annotated[bool, typer.Option("--allow-any-type", envvar=env("allow-any-type"), help="Pull artifacts of any type as plain files.")] = False,
    layout: Annotated[str, typer.Option("--layout", envvar=env("layout"), help="flat: files in DEST; versioned: DEST/versions/<digest> + atomic DEST/current symlink.")] = "flat",
    reverify: Annotated[bool, typer.Option("--reverify", envvar=env("reverify"), help="When already installed, re-hash every file instead of checking sizes.")] = False,
    deny_unsafe: Annotated[bool, typer.Option("--deny-unsafe", envvar=env("deny-unsafe"), help="Refuse (exit 5, nothing written) a model with a file that can run code when loaded or could not be fully inspected.")] = False,
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    allow_license: Annotated[Optional[List[str]], typer.Option("--allow-license", envvar=env("allow-license"), help="SPDX license id the model may have, repeatable; any other is refused (exit 5).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", envvar=env("log-format"), help="text or json (one object per step, for log collectors).")] = "text",
    concurrency: Annotated[int, typer.Option(envvar=env("concurrency"), min=1, max=16, help="Parallel blob downloads.")] = 2,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    mirror: Mirrors = None,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Pull a model into DEST, verifying every byte; writes nothing on failure.

    With any verification policy option, the signature is verified first, on the digest then
    pulled. A restart with the same digest already installed downloads nothing (init containers).
    """
    from ..errors import OcimodelError, UsageError

    refuse_blank_variables("deny-unsafe", "allow-license")
    if log_format not in ("text", "json"):
        raise UsageError(f"unknown --log-format {log_format!r}: use text or json")
    log = StepLogger(log_format)
    try:
        with connection.client(mirror, concurrency=concurrency, cache_dir=cache_dir, use_cache=not no_cache) as client, \
                progress(json_out or log.json) as observer:
            result = client.pull(ref, dest, include=include or [], allow_any_type=allow_any_type, observer=observer,
                                 policy=policy, layout=layout, reverify=reverify, events=log,
                                 deny_unsafe=deny_unsafe, allow_licenses=allow_license or [],
                                 allow_globals=allow_global or [], scan_limits=scan_limit or [])
    except OcimodelError as exc:
        if log.json:
            log.failed(str(exc), exc.exit_code)
            raise typer.Exit(exc.exit_code) from None
        raise
    if json_out:
        print_json(result.to_dict())
        return
    typer.echo(result.digest)


@app.command(short_help="Show a model's metadata, lineage, files and signatures.", epilog='Example: ocimodel inspect registry.example.com/models/churn:1.0')
@handle_errors
@connection_options
def inspect(
    ref: ModelRef,
    mirror: Mirrors = None,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """Show a model's digest, type, metadata, lineage, files and (unverified) signatures."""
    result = _run(connection, json_out, lambda client: client.inspect(ref), mirror=mirror)
    if result is not None:
        render_inspect(result, stdout())


@app.command(short_help="List a repository's tags, sorted.", epilog='Example: ocimodel tags registry.example.com/models/churn')
@handle_errors
@connection_options
def tags(
    repository: Annotated[str, typer.Argument(metavar="REPOSITORY", help="Repository, e.g. localhost:5000/models/churn")],
    all_tags: Annotated[bool, typer.Option("--all", help="Also list ocimodel's history tags and sha256-* referrer indexes.")] = False,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """List a repository's tags, sorted."""
    with connection.client() as client:
        found = client.tags(repository, include_internal=all_tags)
    if json_out:
        print_json(found)
        return
    for tag in found:
        typer.echo(tag)


def _warn_dangerous(report: ScanReport) -> None:
    """One ``warning:`` line on stderr per dangerous finding of a push's scan, one per file
    not fully inspected."""
    for finding in report.dangerous_lines():
        current().warning(f"warning: {finding}")
    for finding in report.incomplete_lines():
        current().warning(f"warning: not fully inspected: {finding}")


@app.command(short_help="Scan a model's files for pickles that can run code.", epilog='Example: ocimodel scan ./model.pkl  (or a reference: ocimodel scan registry.example.com/models/churn:1.0)')
@handle_errors
@connection_options
def scan(
    target: Annotated[str, typer.Argument(metavar="PATH|REF", help="Local file or directory, or a model reference.")],
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    strict: Annotated[bool, typer.Option("--strict", hidden=True, help="Kept for old scripts: files not fully inspected always fail now.")] = False,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """Judge every file of a model by what a pickle loader would do with it.

    Every global a pickle would import must be on the allow-list (see docs/scanning.md).
    Nothing is unpickled, and a model named by reference is scanned from the registry
    without being written anywhere. Exit 0 only when every file is safe; 5 when a file is
    dangerous or could not be fully inspected (the error line says which).
    """
    from ..api import refuse_unsafe

    with connection.client() as client:
        report = client.scan(target, allow_globals=allow_global or [], scan_limits=scan_limit or [])
    if json_out:
        print_json(report.to_dict())
    else:
        typer.echo(report.format())
    refuse_unsafe(report)
