"""The ``ocimodel`` command: parse options, call :mod:`ocimodel.api`, print results.

Nothing here speaks HTTP or touches the artifact format. Every option can also come from
an environment variable ``OCIMODEL_<OPTION>`` (for containers). Expected failures print
one line ``error: ...`` on stderr and exit with the code of their class (see README).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
import inspect as pyinspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar, cast

import typer
from typing_extensions import Annotated

from . import __version__

app = typer.Typer(
    name="ocimodel",
    help="Machine learning models as signed, versioned artifacts in any OCI registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich help formatting costs ~0.12 s of imports per run
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _env(option: str) -> str:
    return "OCIMODEL_" + option.upper().replace("-", "_")


def _refuse_blank_variables(*options: str) -> None:
    """UsageError when a safety option's variable is set to "" (or blanks): click reads that
    as unset, i.e. the check off, which is what a ConfigMap that lost its value would do."""
    import os

    from .errors import UsageError

    for name in map(_env, options):
        value = os.environ.get(name)
        if value is not None and not value.strip():
            raise UsageError(f"{name} is set but empty: it would turn its check off; unset it or give it a value")


PlainHttp = Annotated[bool, typer.Option("--plain-http", envvar=_env("plain-http"), help="Use http:// instead of https://.")]
Insecure = Annotated[bool, typer.Option("--insecure", envvar=_env("insecure"), help="Do not verify the registry's TLS certificate.")]
CaFile = Annotated[Optional[Path], typer.Option("--ca-file", envvar=_env("ca-file"), help="CA bundle to verify the registry's TLS certificate.")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", metavar="SECONDS", envvar=_env("timeout"), help="Longest wait for a registry: to connect, for a response, for a body to make progress (default 60).")]
Username = Annotated[Optional[str], typer.Option("--username", envvar=_env("username"), help="Username for the registry of this command's reference (no other host gets it).")]
Password = Annotated[Optional[str], typer.Option("--password", envvar=_env("password"), help="Password for that registry; prefer OCIMODEL_PASSWORD (other users can see a command line).")]
Mirrors = Annotated[Optional[List[str]], typer.Option("--mirror", metavar="REGISTRY=URL", envvar=_env("mirror"), help="Read through this pull-through mirror of REGISTRY first (falls back to REGISTRY; digests still verified). Repeatable; OCIMODEL_MIRROR may list several, separated by spaces or commas.")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache", metavar="DIR", envvar=_env("cache-dir"), help="Blob and digest cache directory (default: the user cache dir).")]
NoCache = Annotated[bool, typer.Option("--no-cache", envvar=_env("no-cache"), help="Neither read nor fill the local caches.")]
JsonOut = Annotated[bool, typer.Option("--json", envvar=_env("json"), help="Print machine-readable JSON on stdout.")]
ModelRef = Annotated[str, typer.Argument(help="Model reference (tag or digest).")]
Staging = Annotated[bool, typer.Option("--staging", envvar=_env("staging"), help="Use the public Sigstore staging instance.")]
AllowGlobals = Annotated[Optional[List[str]], typer.Option("--allow-global", metavar="MODULE.NAME", envvar=_env("allow-global"), help="Pickle global the scanner may accept beyond its allow-list (exact names; repeatable).")]
ScanLimitOpts = Annotated[Optional[List[str]], typer.Option("--scan-limit", metavar="NAME=VALUE", envvar=_env("scan-limit"), help="Change a scanner limit, e.g. opcodes=50000000 or decompressed=8GiB (repeatable; see docs/scanning.md).")]


def _policy_option(flag: str, help: str, type_: Any = Optional[str]) -> Any:
    return Annotated[type_, typer.Option(flag, envvar=_env(flag.lstrip("-")), help=help, rich_help_panel="Verification policy")]


#: The verification policy options of verify, verify-blob, pull, promote, rollback, history and
#: stages: parameter name -> (annotation, default). ``policy_options`` adds them to a command.
#: Paths stay strings here so that an empty value is seen as empty (a Path of "" is ".").
POLICY_OPTIONS: dict[str, tuple[Any, Any]] = {
    "certificate_identity": (_policy_option("--certificate-identity", "Exact signer identity (email or URI) required."), None),
    "certificate_identity_regexp": (_policy_option("--certificate-identity-regexp", "Regexp the whole signer identity must match (pin the workflow path and ref)."), None),
    "certificate_oidc_issuer": (_policy_option("--certificate-oidc-issuer", "Exact OIDC issuer required."), None),
    "certificate_oidc_issuer_regexp": (_policy_option("--certificate-oidc-issuer-regexp", "Regexp the whole OIDC issuer must match."), None),
    "certificate_github_workflow_repository": (
        _policy_option("--certificate-github-workflow-repository", "GitHub repository (owner/name) whose workflow must have signed."),
        None,
    ),
    "keys": (_policy_option("--key", "Public key (PEM) that may have signed; repeatable.", Optional[List[str]]), None),
    "trusted_root": (_policy_option("--trusted-root", "Pinned Sigstore trusted root JSON (offline verification).", Optional[str]), None),
    "staging": (_policy_option("--staging", "Trust the public Sigstore staging root.", bool), False),
    "policy_file": (_policy_option("--policy", "Policy file (JSON or YAML) with the same fields; flags override it.", Optional[str]), None),
}


def _inject_options(fn: F, options: dict[str, tuple[Any, Any]], into: str, build: Callable[[dict[str, Any]], Any]) -> F:
    """Add ``options`` (name -> (annotation, default)) to a command's parameters; the command
    receives ``build(their values)`` as its ``into`` argument instead."""
    signature = pyinspect.signature(fn, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name != into]
    added = [
        pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in options.items()
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in options}
        return fn(*args, **{into: build(values)}, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + added}
    return wrapper  # type: ignore[return-value]


def _build_policy(values: dict[str, Any]) -> Any:
    """The validated policy from the options, or None when no policy source is given at all.

    A source that is given but yields no usable rule (``--policy`` with ``{}``, an empty
    ``OCIMODEL_KEY``...) is a UsageError, never "no policy".
    """
    from .errors import UsageError
    from .signing.policy import VerificationPolicy, blank_policy_variables

    blank = blank_policy_variables()
    if blank:
        raise UsageError(
            f"{blank[0]} is set but empty: an empty policy variable would turn verification off; "
            "unset it or give it a value"
        )
    if all(value in (None, False) for value in values.values()):
        return None
    policy_file, keys = values.pop("policy_file"), values.pop("keys") or ()
    policy = VerificationPolicy.from_options(policy_file=policy_file, keys=keys, **values)
    try:
        policy.validate()
    except UsageError as exc:
        if policy_file is None:
            raise
        raise UsageError(f"{exc} (policy file {policy_file} with the flags)") from None
    return policy


def _policy_warning(policy: Any) -> str | None:
    loose = policy.match_everything()
    if not loose:
        return None
    verb = "matches" if len(loose) == 1 else "match"
    return (f"the policy's {' and '.join(loose)} {verb} any value, so it does not restrict who signed; "
            "pin it (e.g. the workflow path and ref, see docs/signing.md)")


def policy_options(fn: F) -> F:
    """Give a command the policy options; it receives them as one ``policy`` argument.

    ``policy`` is None when no policy option or variable is given (pull then does not verify).
    A regexp that matches anything gets one warning line on stderr (a JSON line with
    ``--log-format json``); it is not refused.
    """

    @functools.wraps(fn)
    def warned(*args: Any, **kwargs: Any) -> Any:
        message = _policy_warning(kwargs["policy"]) if kwargs.get("policy") is not None else None
        if message:
            StepLogger(kwargs.get("log_format", "text")).warning(message)
        return fn(*args, **kwargs)

    return _inject_options(cast(F, warned), POLICY_OPTIONS, "policy", _build_policy)


@dataclass(frozen=True)
class Connection:
    """How to reach registries: the options every registry command shares.

    ``username``/``password`` are for the registry of ``target`` (the command's reference)
    and are sent to no other host: lineage parents, mirrors and redirect targets get only
    their own stored logins.
    """

    plain_http: bool = False
    insecure: bool = False
    ca_file: Path | None = None
    timeout: float | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    target: str | None = None

    def client(self, mirror: list[str] | None = None, **options: Any) -> Any:
        """An :class:`ocimodel.api.Client` with these options (and mirrors, caching...)."""
        from .api import Client
        from .registry.credentials import registry_of
        from .registry.mirrors import parse_mirrors

        mirrors = parse_mirrors(mirror or []) or None
        registry = registry_of(self.target) if self.target else None
        # Empty values count as unset: how a container switches the environment's off.
        username = (self.username or None) if registry else None
        password = (self.password or None) if registry else None
        return Client(plain_http=self.plain_http, insecure=self.insecure, ca_file=self.ca_file, timeout=self.timeout,
                      mirrors=mirrors, credentials_for=registry, username=username, password=password, **options)


TRANSPORT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "plain_http": (PlainHttp, False),
    "insecure": (Insecure, False),
    "ca_file": (CaFile, None),
    "timeout": (Timeout, None),
}
CONNECTION_OPTIONS: dict[str, tuple[Any, Any]] = {
    **TRANSPORT_OPTIONS,
    "username": (Username, None),
    "password": (Password, None),
}
#: The argument naming a command's reference: the registry that --username/--password are for.
_TARGET_ARGUMENTS = ("ref", "repository", "target")


def connection_options(fn: F) -> F:
    """Give a command the connection options and --username/--password; it receives a
    ``connection`` bound to its reference argument (one of ``_TARGET_ARGUMENTS``)."""
    names = pyinspect.signature(fn).parameters
    target = next((name for name in _TARGET_ARGUMENTS if name in names), None)
    if target is None:
        raise TypeError(f"{fn.__name__} has no reference argument ({', '.join(_TARGET_ARGUMENTS)}) to bind credentials to")

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        kwargs["connection"] = replace(kwargs["connection"], target=kwargs[target])
        return fn(*args, **kwargs)

    return _inject_options(cast(F, bound), CONNECTION_OPTIONS, "connection", lambda values: Connection(**values))


def transport_options(fn: F) -> F:
    """Connection options without credentials (``login`` takes its own); gives a ``connection``."""
    return _inject_options(fn, TRANSPORT_OPTIONS, "connection", lambda values: Connection(**values))


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


def _observer(json_out: bool) -> Any:
    """Progress bars on an interactive stderr, silence otherwise."""
    if json_out or not sys.stderr.isatty():
        from .transfer import NullObserver

        return NullObserver()
    from .progress import RichObserver

    return RichObserver(_stderr())


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def _run(connection: Connection, json_out: bool, call: Callable[[Any], Any], **client_options: Any) -> Any:
    """``call(client)`` on a client for ``connection``.

    With ``json_out`` the result is printed as JSON and None returned; else it is returned.
    """
    with connection.client(**client_options) as client:
        result = call(client)
    if json_out:
        _print_json(result.to_dict())
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


@app.command()
@handle_errors
@connection_options
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
    no_scan: Annotated[bool, typer.Option("--no-scan", envvar=_env("no-scan"), help="Do not scan the files for pickles that can run code (nothing recorded).")] = False,
    deny_unsafe: Annotated[bool, typer.Option("--deny-unsafe", envvar=_env("deny-unsafe"), help="Refuse to push (exit 5) if a file can run code when loaded or could not be fully inspected.")] = False,
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    concurrency: Annotated[int, typer.Option(envvar=_env("concurrency"), min=1, max=16, help="Parallel blob uploads.")] = 2,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Push a model file or directory; prints the manifest digest.

    The files are scanned first: a pickle that can run code when loaded gets a warning (or,
    with --deny-unsafe, refuses the push), and the scan result is recorded in the config.
    """
    from .config import CodeInfo, parse_key_values
    from .gitinfo import detect_code

    _refuse_blank_variables("deny-unsafe")
    code: CodeInfo | bool | None = False if no_git else None
    if not no_git and (git_remote or git_commit):
        detected = detect_code(path.resolve()) or CodeInfo()
        code = CodeInfo(remote=git_remote or detected.remote, commit=git_commit or detected.commit, dirty=detected.dirty if not git_commit else None)
    caching = {"concurrency": concurrency, "cache_dir": cache_dir, "use_cache": not no_cache}
    with connection.client(**caching) as client, _observer(json_out) as observer:
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
        _print_json(result.to_dict())
        return
    typer.echo(
        f"Pushed {result.reference} ({len(result.files)} files, {result.uploaded_blobs} blobs uploaded, "
        f"{result.skipped_blobs} already present)",
        err=True,
    )
    typer.echo(result.digest)


class StepLogger:
    """One line per pull step on stderr: readable text, or JSON objects for log collectors."""

    MESSAGES = {
        "resolved": "resolved {reference} to {digest}",
        "verified": "verified {digest}: signed by {signers}",
        "up-to-date": "{digest} already installed in {path}; files intact, nothing downloaded",
        "repairing": "{digest} installed before but {reason}: pulling again",
        "state-ignored": "ignoring {path}: {reason}; installing again",
        "downloaded": "downloaded and verified {files} files ({bytes} bytes) of {digest}",
        "installed": "installed {digest} in {path}",
    }

    def __init__(self, fmt: str) -> None:
        self.json = fmt == "json"

    def __call__(self, step: str, fields: Any) -> None:
        shown = {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in fields.items()}
        message = self.MESSAGES.get(step, step).format(**shown)
        self._emit("info", step, message, dict(fields))

    def failed(self, message: str, code: int) -> None:
        self._emit("error", "failed", message, {"exitCode": code})

    def warning(self, message: str) -> None:
        """A warning: a JSON line, or ``warning: ...`` on stderr."""
        if self.json:
            self._emit("warning", "warning", message, {})
        else:
            typer.echo(f"warning: {message}", err=True)

    def _emit(self, level: str, step: str, message: str, fields: dict[str, Any]) -> None:
        if self.json:
            from datetime import datetime, timezone

            line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": level,
                    "step": step, "message": message, **fields}
            typer.echo(json.dumps(line, sort_keys=True), err=True)
        elif level == "info":
            typer.echo(f"ocimodel: {message}", err=True)


@app.command()
@handle_errors
@connection_options
@policy_options
def pull(
    ref: Annotated[str, typer.Argument(envvar=_env("ref"), help="Model reference (tag or digest).")],
    dest: Annotated[Path, typer.Argument(envvar=_env("dest"), help="Destination directory.")],
    include: Annotated[Optional[List[str]], typer.Option(envvar=_env("include"), help="Only files matching this glob, repeatable.")] = None,
    allow_any_type: Annotated[bool, typer.Option("--allow-any-type", envvar=_env("allow-any-type"), help="Pull artifacts of any type as plain files.")] = False,
    layout: Annotated[str, typer.Option("--layout", envvar=_env("layout"), help="flat: files in DEST; versioned: DEST/versions/<digest> + atomic DEST/current symlink.")] = "flat",
    reverify: Annotated[bool, typer.Option("--reverify", envvar=_env("reverify"), help="When already installed, re-hash every file instead of checking sizes.")] = False,
    deny_unsafe: Annotated[bool, typer.Option("--deny-unsafe", envvar=_env("deny-unsafe"), help="Refuse (exit 5, nothing written) a model with a file that can run code when loaded or could not be fully inspected.")] = False,
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    allow_license: Annotated[Optional[List[str]], typer.Option("--allow-license", envvar=_env("allow-license"), help="SPDX license id the model may have, repeatable; any other is refused (exit 5).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", envvar=_env("log-format"), help="text or json (one object per step, for log collectors).")] = "text",
    concurrency: Annotated[int, typer.Option(envvar=_env("concurrency"), min=1, max=16, help="Parallel blob downloads.")] = 2,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    mirror: Mirrors = None,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Pull a model into DEST, verifying every byte; writes nothing on failure.

    With any verification policy option, the signature is verified first, on the digest then
    pulled. A restart with the same digest already installed downloads nothing (init containers).
    """
    from .errors import OcimodelError, UsageError

    _refuse_blank_variables("deny-unsafe", "allow-license")
    if log_format not in ("text", "json"):
        raise UsageError(f"unknown --log-format {log_format!r}: use text or json")
    log = StepLogger(log_format)
    caching = {"concurrency": concurrency, "cache_dir": cache_dir, "use_cache": not no_cache}
    try:
        with connection.client(mirror, **caching) as client, _observer(json_out or log.json) as observer:
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
        _print_json(result.to_dict())
        return
    typer.echo(result.digest)


@app.command()
@handle_errors
@connection_options
def inspect(
    ref: ModelRef,
    mirror: Mirrors = None,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Show a model's digest, type, metadata, lineage, files and (unverified) signatures."""
    result = _run(connection, json_out, lambda client: client.inspect(ref), mirror=mirror)
    if result is not None:
        from .render import render_inspect

        render_inspect(result, _stdout())


# ---------------------------------------------------------------------------- provenance


def _who(kind: str, signer: str | None, issuer: str | None) -> str:
    if kind == "key":
        return f"key {signer or '?'}"
    return f"{signer or '?'} (issuer {issuer or '?'})"


@app.command()
@handle_errors
@connection_options
def sign(
    ref: Annotated[str, typer.Argument(help="Model reference (tag or digest); its digest is signed.")],
    key: Annotated[Optional[Path], typer.Option("--key", envvar=_env("key"), help="Sign with this encrypted private key instead of keyless (password: OCIMODEL_KEY_PASSWORD or prompt).")] = None,
    identity_token: Annotated[Optional[str], typer.Option("--identity-token", envvar=_env("identity-token"), help="OIDC identity token for keyless signing (default: CI ambient credential or browser).")] = None,
    staging: Staging = False,
    trust_config: Annotated[Optional[Path], typer.Option("--trust-config", envvar=_env("trust-config"), help="Sigstore ClientTrustConfig JSON of a private deployment.")] = None,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Sign a model's manifest digest and attach the signature to it in the registry."""
    options = {"key": key, "identity_token": identity_token, "staging": staging, "trust_config": trust_config}
    result = _run(connection, json_out, lambda client: client.sign(ref, **options))
    if result is None:
        return
    typer.echo(f"Signed {result.digest} as {_who(result.kind, result.signer, result.issuer)}", err=True)
    typer.echo(f"Signature stored as referrer {result.referrer}" + (f" (listed in tag {result.fallback_tag})" if result.fallback_tag else ""), err=True)
    typer.echo(result.referrer)


@app.command()
@handle_errors
def keygen(
    output_prefix: Annotated[str, typer.Option("--output-prefix", envvar=_env("output-prefix"), help="Writes PREFIX.key and PREFIX.pub.")] = "ocimodel",
) -> None:
    """Create an encrypted ECDSA P-256 key pair for signing with --key."""
    from .api import keygen as api_keygen

    private, public = api_keygen(output_prefix)
    typer.echo(f"Wrote {private} (encrypted private key) and {public} (public key)", err=True)
    typer.echo(str(public))


def _require_policy(policy: Any) -> Any:
    """``policy``, or the UsageError an empty policy gets (verify needs one)."""
    from .signing.policy import VerificationPolicy

    if policy is None:
        VerificationPolicy().validate()  # raises: says which flags are needed
    return policy


def _print_verified(digest: str, signatures: Any) -> None:
    for info in signatures:
        when = f" at {info.signed_at.isoformat()}" if info.signed_at else ""
        typer.echo(f"Verified {digest}: signed by {_who(info.kind, info.signer, info.issuer)}{when}")


@app.command()
@handle_errors
@connection_options
@policy_options
def verify(
    ref: ModelRef,
    mirror: Mirrors = None,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Verify that a model is signed as the policy demands (exit 5 if not)."""
    required = _require_policy(policy)
    result = _run(connection, json_out, lambda client: client.verify(ref, required), mirror=mirror)
    if result is not None:
        _print_verified(result.digest, result.signatures)


@app.command("verify-blob")
@handle_errors
@policy_options
def verify_blob(
    file: Annotated[Path, typer.Argument(help="The signed local file.")],
    bundle: Annotated[Path, typer.Option("--bundle", envvar=_env("bundle"), help="The Sigstore bundle of FILE.")],
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Verify a detached Sigstore bundle over a local file, like cosign verify-blob."""
    from .provenance import signature_dict
    from .signing.verify import verify_blob as check_blob

    info = check_blob(file, bundle, _require_policy(policy))
    if json_out:
        _print_json(signature_dict(info))
        return
    _print_verified(info.digest, [info])


def _stdout() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@app.command()
@handle_errors
@connection_options
def tags(
    repository: Annotated[str, typer.Argument(help="Repository, e.g. localhost:5000/models/churn")],
    all_tags: Annotated[bool, typer.Option("--all", envvar=_env("all"), help="Also list ocimodel's history tags and sha256-* referrer indexes.")] = False,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """List a repository's tags, sorted."""
    with connection.client() as client:
        found = client.tags(repository, include_internal=all_tags)
    if json_out:
        _print_json(found)
        return
    for tag in found:
        typer.echo(tag)


# ----------------------------------------------------------------------------- lifecycle

Reason = Annotated[str, typer.Option("--reason", envvar=_env("reason"), help="Why (recorded in the history).")]
Actor = Annotated[Optional[str], typer.Option("--actor", envvar=_env("actor"), help="Who (default: the CI identity, else user@host).")]
SignRecord = Annotated[bool, typer.Option("--sign", envvar=_env("sign"), help="Sign the promotion record (keyless unless --sign-key).")]
SignKey = Annotated[Optional[Path], typer.Option("--sign-key", envvar=_env("sign-key"), help="Sign the record with this private key (password: OCIMODEL_KEY_PASSWORD).")]
IdentityToken = Annotated[Optional[str], typer.Option("--identity-token", envvar=_env("identity-token"), help="OIDC token for keyless record signing.")]
TrustConfig = Annotated[Optional[Path], typer.Option("--trust-config", envvar=_env("trust-config"), help="Sigstore ClientTrustConfig JSON of a private deployment.")]
Repository = Annotated[str, typer.Argument(help="Repository, e.g. localhost:5000/models/churn")]
Stage = Annotated[str, typer.Argument(help="Stage (a tag name), e.g. staging or prod.")]


def _record_signing(values: dict[str, Any]) -> Any:
    if not (values["sign"] or values["sign_key"]):
        return None
    from .api import RecordSigning

    return RecordSigning(key=values["sign_key"], identity_token=values["identity_token"], trust_config=values["trust_config"])


RECORD_SIGNING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "sign": (SignRecord, False),
    "sign_key": (SignKey, None),
    "identity_token": (IdentityToken, None),
    "trust_config": (TrustConfig, None),
}


def record_signing_options(fn: F) -> F:
    """Give promote/rollback --sign, --sign-key, --identity-token, --trust-config; the
    command receives ``signing`` (None unless a record is to be signed)."""
    return _inject_options(fn, RECORD_SIGNING_OPTIONS, "signing", _record_signing)


def _print_promotion(result: Any) -> None:
    if not result.changed:
        typer.echo(f"{result.stage} already holds {result.digest}; nothing recorded", err=True)
    else:
        was = result.previous_digest or "nothing"
        signed = ", record signed" if result.signed else ""
        typer.echo(f"{result.stage}: {was} -> {result.digest} (record {result.record}{signed})", err=True)
    typer.echo(result.digest)


@app.command()
@handle_errors
@connection_options
@policy_options
@record_signing_options
def promote(
    ref: ModelRef,
    stage: Stage,
    reason: Reason = "",
    actor: Actor = None,
    signing: Any = None,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Point STAGE at REF's digest (no bytes move) and record who, when and why.

    With any verification policy option, the model's signature is checked first and
    nothing moves unless it passes.
    """
    result = _run(connection, json_out,
                  lambda c: c.promote(ref, stage, reason=reason, actor=actor, policy=policy, sign_record=signing))
    if result is not None:
        _print_promotion(result)


@app.command()
@handle_errors
@connection_options
@policy_options
@record_signing_options
def rollback(
    repository: Repository,
    stage: Stage,
    to: Annotated[Optional[str], typer.Option("--to", envvar=_env("to"), help="Digest to return to (must be in the history).")] = None,
    steps: Annotated[int, typer.Option("--steps", envvar=_env("steps"), min=1, help="How many promotions to go back.")] = 1,
    reason: Reason = "",
    actor: Actor = None,
    signing: Any = None,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Move STAGE back to an earlier digest of its history, recorded as a rollback.

    With verification policy options, the target must have been reached by a promotion
    record signed under the policy, and the model must be signed under it.
    """
    if policy is None:
        typer.echo(f"warning: no policy given, so rollback trusts the unsigned promotion history of {stage}, which "
                   "anyone who can push to the registry can forge; give --key or --certificate-identity(-regexp) "
                   "and --certificate-oidc-issuer(-regexp) to move only to a digest a signed record reached", err=True)
    result = _run(connection, json_out,
                  lambda c: c.rollback(repository, stage, to=to, steps=steps, reason=reason or None, actor=actor,
                                       policy=policy, sign_record=signing))
    if result is not None:
        _print_promotion(result)


def _signature_mark(verified: bool | None, signed_by: str | None, problem: str | None, signed: bool | None = None) -> str:
    """How a promotion record's signature shows in text output."""
    if verified is None:
        return "unverified" if signed is None else ("signed, unverified" if signed else "unsigned, unverified")
    if verified:
        return f"verified: {signed_by}"
    return f"NOT verified: {problem}" if problem else "NOT verified"


@app.command("stages")
@handle_errors
@connection_options
@policy_options
def stages_command(
    repository: Repository,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """List each stage: the digest it holds, its version tags, and its last promotion.

    With verification policy options, each stage's newest record is verified (exit 5 if one is not).
    """
    from .errors import ExitCode

    with connection.client() as client:
        found = client.stages(repository, policy=policy)
    if json_out:
        _print_json([s.to_dict() for s in found])
    else:
        if not found:
            typer.echo(f"no stages in {repository} (promote a model with 'ocimodel promote REF STAGE')", err=True)
        for info in found:
            tags = ",".join(t for t in info.tags if t != info.stage) or "-"
            who = info.promoted_by.name if info.promoted_by else "?"
            mark = _signature_mark(info.signature_verified, info.signed_by, None)
            typer.echo(f"{info.stage:<12} {info.digest or 'unset'}  tags={tags}  {info.promoted_at or '?'} by {who} "
                       f"[{mark}]: {info.reason or ''}".rstrip())
            for problem in (info.finding, info.signature_finding):
                if problem:
                    typer.echo(f"  ! {problem}")
    if policy is not None and not all(info.signature_verified for info in found):
        raise typer.Exit(ExitCode.VERIFICATION)


@app.command()
@handle_errors
@connection_options
@policy_options
def history(
    repository: Repository,
    stage: Stage,
    connection: Any = None,
    json_out: JsonOut = False,
    policy: Any = None,
) -> None:
    """Show STAGE's promotion chain, newest first; exit 6 if the chain has problems.

    With verification policy options, every record must be signed under the policy: exit 5
    names each one that is not, and signed records the chain leaves out.
    """
    from .errors import ExitCode

    with connection.client() as client:
        report = client.history(repository, stage, policy=policy)
    if json_out:
        _print_json(report.to_dict())
    else:
        for finding in report.findings:
            typer.echo(f"! {finding.message}")
        for e in report.entries:
            mark = _signature_mark(e.signature_verified, e.signed_by, e.signature_problem, e.signed)
            typer.echo(f"{e.time}  {e.actor.name}  {e.from_digest or 'nothing'} -> {e.to_digest}  [{mark}]  {e.reason}".rstrip())
    if report.signature_findings:
        raise typer.Exit(ExitCode.VERIFICATION)
    if not report.ok:
        raise typer.Exit(ExitCode.INTEGRITY)


@app.command()
@handle_errors
@connection_options
def delete(
    ref: Annotated[str, typer.Argument(help="Tag or digest to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", envvar=_env("yes"), help="Do not ask before deleting a digest with tags.")] = False,
    force: Annotated[bool, typer.Option("--force", envvar=_env("force"), help="Delete even what a stage points at.")] = False,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Delete a tag or a manifest; refuses a digest a stage holds unless --force."""
    from .errors import UsageError

    with connection.client() as client:
        plan = client.plan_delete(ref)
        if plan.tag is None and plan.tags and not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting {plan.digest} also removes tags {', '.join(plan.tags)}: pass --yes to confirm")
            typer.confirm(f"Deleting {plan.digest} also removes tags {', '.join(plan.tags)}. Continue?", abort=True)
        done = client.delete(ref, force=force)
    if json_out:
        _print_json(done.to_dict())
        return
    typer.echo(f"Deleted {done.tag or done.digest}" + (f" (tags removed: {', '.join(done.tags)})" if done.tag is None and done.tags else ""), err=True)


@app.command()
@handle_errors
@connection_options
def lineage(
    ref: ModelRef,
    depth: Annotated[int, typer.Option("--depth", envvar=_env("depth"), min=0, max=50, help="How many generations to follow.")] = 5,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Show the ancestor tree of a model (parents by digest, across registries)."""
    from .lineage import render_tree

    node = _run(connection, json_out, lambda c: c.lineage(ref, depth=depth))
    if node is not None:
        typer.echo(render_tree(node))


@app.command()
@handle_errors
@transport_options
def login(
    host: Annotated[str, typer.Argument(help="Registry host, e.g. ghcr.io or localhost:5000")],
    username: Annotated[str, typer.Option("--username", "-u", envvar=_env("username"), prompt=True)],
    password: Annotated[Optional[str], typer.Option("--password", "-p", envvar=_env("password"), help="Prefer --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    connection: Any = None,
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
    where = api_login(host, username, password, plain_http=connection.plain_http, insecure=connection.insecure,
                      ca_file=connection.ca_file, timeout=connection.timeout)
    typer.echo(f"Login succeeded for {host} (credentials stored in {where})", err=True)


@app.command()
@handle_errors
def logout(host: Annotated[str, typer.Argument(help="Registry host.")]) -> None:
    """Remove stored credentials for HOST."""
    from .api import logout as api_logout

    removed = api_logout(host)
    typer.echo(f"Removed credentials for {host}" if removed else f"No credentials stored for {host}", err=True)


# ---------------------------------------------------------------------------------- safety


def _warn_dangerous(report: Any) -> None:
    """One ``warning:`` line on stderr per dangerous finding of a push's scan, one per file
    not fully inspected."""
    from .safety import dangerous_findings, incomplete_findings

    for finding in dangerous_findings(report):
        typer.echo(f"warning: {finding}", err=True)
    for finding in incomplete_findings(report):
        typer.echo(f"warning: not fully inspected: {finding}", err=True)


@app.command()
@handle_errors
@connection_options
def scan(
    target: Annotated[str, typer.Argument(metavar="PATH|REF", help="Local file or directory, or a model reference.")],
    allow_global: AllowGlobals = None,
    scan_limit: ScanLimitOpts = None,
    strict: Annotated[bool, typer.Option("--strict", envvar=_env("strict"), hidden=True, help="Kept for old scripts: files not fully inspected always fail now.")] = False,
    connection: Any = None,
    json_out: JsonOut = False,
) -> None:
    """Judge every file of a model by what a pickle loader would do with it.

    Every global a pickle would import must be on the allow-list (see docs/scanning.md).
    Nothing is unpickled, and a model named by reference is scanned from the registry
    without being written anywhere. Exit 0 only when every file is safe; 5 when a file is
    dangerous or could not be fully inspected (the error line says which).
    """
    from .safety import refuse_unsafe
    from .scan import format_report

    with connection.client() as client:
        report = client.scan(target, allow_globals=allow_global or [], scan_limits=scan_limit or [])
    if json_out:
        _print_json(report.to_dict())
    else:
        typer.echo(format_report(report))
    refuse_unsafe(report)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
