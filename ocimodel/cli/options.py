"""The command line's options: typed declarations, and the option groups a command receives as one
argument (``connection``, ``policy``, ``signing``) instead of a dozen parameters.

The options of :data:`ENVIRONMENT_OPTIONS` also read ``OCIMODEL_<OPTION>`` (for containers). The
groups are injected into a command's signature (:func:`_inject_options`), so typer shows them
in ``--help`` and the command gets one typed value built from them: the registry connection
(bound to the command's own reference), the verification policy (None when none is given), or
how to sign promotion records. Imports below ``ocimodel.api`` happen when a command runs,
never at ``--help``.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, TypeVar, cast

import typer
from typing_extensions import Annotated

if TYPE_CHECKING:
    from ..api import Client, Connection, RecordSigning, VerificationPolicy

F = TypeVar("F", bound=Callable[..., Any])

class _Injected:
    def __repr__(self) -> str:
        return "INJECTED"


#: The default of an injected parameter: typer never sees it (a decorator replaces it by the
#: options it stands for), and it is typed ``Any`` so the parameter can carry its real type.
INJECTED: Any = _Injected()


#: The options an environment variable ``OCIMODEL_<OPTION>`` may set: what containers and CI
#: need (connection, credentials, cache, verification policy, pull's destination and safety
#: options, log format, concurrency). Metadata (``--version``, ``--name``, ``--label``...) and
#: confirmations (``--yes``, ``--force``) are never read from the environment: a CI variable
#: such as ``OCIMODEL_VERSION`` must not become a model's version, nor skip a safeguard.
#: README "Configuration" lists exactly these (a test compares them).
ENVIRONMENT_OPTIONS = frozenset({
    # how to reach registries, and as whom
    "plain-http", "insecure", "ca-file", "timeout", "username", "password", "mirror",
    "from-plain-http", "from-insecure", "from-ca-file", "from-username", "from-password",
    "to-plain-http", "to-insecure", "to-ca-file", "to-username", "to-password",
    # caching and parallelism
    "cache-dir", "no-cache", "concurrency",
    # the verification policy
    "certificate-identity", "certificate-identity-regexp", "certificate-oidc-issuer",
    "certificate-oidc-issuer-regexp", "certificate-github-workflow-repository", "key", "trusted-root",
    "staging", "policy",
    # pull as an init container: what, where, how, and what to refuse
    "ref", "dest", "include", "allow-any-type", "layout", "reverify", "deny-unsafe", "allow-global",
    "scan-limit", "allow-license", "log-format",
    # keyless signing in CI
    "identity-token", "trust-config",
})


def env(option: str) -> str:
    """The environment variable of ``--option``: ``OCIMODEL_OPTION``; only for an option of
    :data:`ENVIRONMENT_OPTIONS` (anything else is a programming error, caught at import)."""
    if option not in ENVIRONMENT_OPTIONS:
        raise ValueError(f"--{option} may not be read from the environment (see ENVIRONMENT_OPTIONS)")
    return "OCIMODEL_" + option.upper().replace("-", "_")


def refuse_blank_variables(*options: str) -> None:
    """UsageError when a safety option's variable is set to "" (or blanks): click reads that
    as unset, i.e. the check off, which is what a ConfigMap that lost its value would do."""
    import os

    from ..errors import UsageError

    for name in map(env, options):
        value = os.environ.get(name)
        if value is not None and not value.strip():
            raise UsageError(f"{name} is set but empty: it would turn its check off; unset it or give it a value")


PlainHttp = Annotated[bool, typer.Option("--plain-http", envvar=env("plain-http"), help="Use http:// instead of https://.")]
Insecure = Annotated[bool, typer.Option("--insecure", envvar=env("insecure"), help="Do not verify the registry's TLS certificate.")]
CaFile = Annotated[Optional[Path], typer.Option("--ca-file", envvar=env("ca-file"), help="CA bundle to verify the registry's TLS certificate.")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", metavar="SECONDS", envvar=env("timeout"), help="Longest wait for a registry: to connect, for a response, for a body to make progress (default 60).")]
Username = Annotated[Optional[str], typer.Option("--username", envvar=env("username"), help="Username for the registry of this command's reference (no other host gets it).")]
Password = Annotated[Optional[str], typer.Option("--password", envvar=env("password"), help="Password for that registry; prefer OCIMODEL_PASSWORD (other users can see a command line).")]
Mirrors = Annotated[Optional[List[str]], typer.Option("--mirror", metavar="REGISTRY=URL", envvar=env("mirror"), help="Read through this pull-through mirror of REGISTRY first (falls back to REGISTRY; digests still verified). Repeatable; OCIMODEL_MIRROR may list several, separated by spaces or commas.")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache", metavar="DIR", envvar=env("cache-dir"), help="Blob and digest cache directory (default: the user cache dir).")]
NoCache = Annotated[bool, typer.Option("--no-cache", envvar=env("no-cache"), help="Neither read nor fill the local caches.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ModelRef = Annotated[str, typer.Argument(metavar="REF", help="Model reference (tag or digest).")]
Repository = Annotated[str, typer.Argument(metavar="REPOSITORY", help="Repository, e.g. localhost:5000/models/churn")]
Stage = Annotated[str, typer.Argument(metavar="STAGE", help="Stage (a tag name), e.g. staging or prod.")]
Staging = Annotated[bool, typer.Option("--staging", envvar=env("staging"), help="Use the public Sigstore staging instance.")]
AllowGlobals = Annotated[Optional[List[str]], typer.Option("--allow-global", metavar="MODULE.NAME", envvar=env("allow-global"), help="Pickle global the scanner may accept beyond its allow-list (exact names; repeatable).")]
ScanLimitOpts = Annotated[Optional[List[str]], typer.Option("--scan-limit", metavar="NAME=VALUE", envvar=env("scan-limit"), help="Change a scanner limit, e.g. opcodes=50000000 or decompressed=8GiB (repeatable; see docs/scanning.md).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the history).")]
ActorName = Annotated[Optional[str], typer.Option("--actor", help="Who (default: the CI identity, else user@host).")]


def _inject_options(fn: F, options: dict[str, tuple[Any, Any]], into: str, build: Callable[[dict[str, Any]], Any]) -> F:
    """Add ``options`` (name -> (annotation, default)) to a command's parameters; the command
    receives ``build(their values)`` as its ``into`` argument instead.

    The command's own annotations are evaluated here (typer needs the objects), but for the
    injected parameters' (``into`` and those another decorator replaces): they name types
    imported for type checkers only.
    """
    signature = pyinspect.signature(fn)
    namespace = getattr(pyinspect.unwrap(fn), "__globals__", {})

    def evaluated(parameter: pyinspect.Parameter) -> pyinspect.Parameter:
        annotation = parameter.annotation
        if isinstance(annotation, str) and parameter.default is not INJECTED:
            annotation = eval(annotation, namespace)  # noqa: S307 - our own annotations, as typer would
        return parameter.replace(annotation=annotation)

    kept = [evaluated(p) for name, p in signature.parameters.items() if name != into]
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


# ----------------------------------------------------------------------------- verbosity

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr: no summary, steps or progress.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Every step on stderr, also when it is not a terminal.")]


def verbosity_options(fn: F) -> F:
    """Give a command -q/--quiet and -v/--verbose; it runs with the :class:`~.output.Output`
    they make as :func:`.output.current` (every command has them: :func:`.app.handle_errors`)."""
    from .output import NORMAL, QUIET, VERBOSE, Output, using

    def run(values: dict[str, Any]) -> Output:
        if values["quiet"] and values["verbose"]:
            from ..errors import UsageError

            raise UsageError("--quiet and --verbose contradict each other: give one")
        return Output(verbosity=QUIET if values["quiet"] else VERBOSE if values["verbose"] else NORMAL)

    @functools.wraps(fn)
    def within(*args: Any, output: Any = None, **kwargs: Any) -> Any:
        with using(output):
            return fn(*args, **kwargs)

    within.__signature__ = pyinspect.signature(fn).replace(  # type: ignore[attr-defined]
        parameters=[*pyinspect.signature(fn).parameters.values(),
                    pyinspect.Parameter("output", pyinspect.Parameter.KEYWORD_ONLY, default=INJECTED)])
    return _inject_options(cast(F, within), {"quiet": (Quiet, False), "verbose": (Verbose, False)}, "output", run)


# ---------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class ConnectionOptions:
    """How to reach registries, as the command line gives it: the options every registry
    command shares, bound to the command's reference (``target``).

    ``username``/``password`` are for the registry of ``target`` and are sent to no other
    host: lineage parents, mirrors and redirect targets get only their own stored logins.
    Empty values count as unset (how a container switches the environment's off).
    """

    plain_http: bool = False
    insecure: bool = False
    ca_file: Path | None = None
    timeout: float | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    target: str | None = None
    registry: str | None = None  # a registry host itself (``list``): bind to it, not to ``target``

    def connection(self, mirror: list[str] | None = None) -> Connection:
        """The :class:`~ocimodel.api.Connection` these options make (with ``--mirror`` values)."""
        from ..api import Connection, parse_mirrors

        given = Connection(
            plain_http=self.plain_http, insecure=self.insecure, ca_file=self.ca_file, timeout=self.timeout,
            mirrors=parse_mirrors(mirror or []) or None, username=self.username or None,
            password=self.password or None,
        )
        if self.registry:
            return given.bound_to_registry(self.registry)
        return given.bound_to(self.target) if self.target else replace(given, username=None, password=None)

    def client(
        self, mirror: list[str] | None = None, *, concurrency: int | None = None, cache_dir: Path | None = None,
        use_cache: bool = True,
    ) -> Client:
        """An :class:`ocimodel.api.Client` with these options, ``--mirror`` values and caching."""
        from ..api import DEFAULT_CONCURRENCY, Client

        return Client(self.connection(mirror), concurrency=concurrency or DEFAULT_CONCURRENCY, cache_dir=cache_dir,
                      use_cache=use_cache)


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
    ``connection`` (:class:`ConnectionOptions`) bound to its reference argument (one of
    ``_TARGET_ARGUMENTS``)."""
    names = pyinspect.signature(fn).parameters
    target = next((name for name in _TARGET_ARGUMENTS if name in names), None)
    if target is None:
        raise TypeError(f"{fn.__name__} has no reference argument ({', '.join(_TARGET_ARGUMENTS)}) to bind credentials to")

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        kwargs["connection"] = replace(kwargs["connection"], target=kwargs[target])
        return fn(*args, **kwargs)

    return _inject_options(cast(F, bound), CONNECTION_OPTIONS, "connection", lambda values: ConnectionOptions(**values))


def transport_options(fn: F) -> F:
    """Connection options without credentials (``login`` takes its own); gives a ``connection``."""
    return _inject_options(fn, TRANSPORT_OPTIONS, "connection", lambda values: ConnectionOptions(**values))


# -------------------------------------------------------------------------------- policy


def _policy_option(flag: str, help: str, type_: Any = Optional[str]) -> Any:
    return Annotated[type_, typer.Option(flag, envvar=env(flag.lstrip("-")), help=help, rich_help_panel="Verification policy")]


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


def _build_policy(values: dict[str, Any]) -> VerificationPolicy | None:
    """The validated policy from the options, or None when no policy source is given at all.

    A source that is given but yields no usable rule (``--policy`` with ``{}``, an empty
    ``OCIMODEL_KEY``...) is a UsageError, never "no policy".
    """
    from ..api import VerificationPolicy, blank_policy_variables
    from ..errors import UsageError

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


def policy_warning(policy: VerificationPolicy) -> str | None:
    """The warning for a policy whose regexps match anything (None if they do not)."""
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
    from .render import StepLogger

    @functools.wraps(fn)
    def warned(*args: Any, **kwargs: Any) -> Any:
        message = policy_warning(kwargs["policy"]) if kwargs.get("policy") is not None else None
        if message:
            StepLogger(kwargs.get("log_format", "text")).warning(message)
        return fn(*args, **kwargs)

    return _inject_options(cast(F, warned), POLICY_OPTIONS, "policy", _build_policy)


# ------------------------------------------------------------------------ record signing

SignRecord = Annotated[bool, typer.Option("--sign", help="Sign the promotion record (keyless unless --sign-key).")]
SignKey = Annotated[Optional[Path], typer.Option("--sign-key", help="Sign the record with this private key (password: OCIMODEL_KEY_PASSWORD).")]
IdentityToken = Annotated[Optional[str], typer.Option("--identity-token", envvar=env("identity-token"), help="OIDC token for keyless record signing.")]
TrustConfig = Annotated[Optional[Path], typer.Option("--trust-config", envvar=env("trust-config"), help="Sigstore ClientTrustConfig JSON of a private deployment.")]

RECORD_SIGNING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "sign": (SignRecord, False),
    "sign_key": (SignKey, None),
    "identity_token": (IdentityToken, None),
    "trust_config": (TrustConfig, None),
}


def _record_signing(values: dict[str, Any]) -> RecordSigning | None:
    if not (values["sign"] or values["sign_key"]):
        return None
    from ..api import RecordSigning

    return RecordSigning(key=values["sign_key"], identity_token=values["identity_token"], trust_config=values["trust_config"])


def record_signing_options(fn: F) -> F:
    """Give promote/rollback --sign, --sign-key, --identity-token, --trust-config; the
    command receives ``signing`` (None unless a record is to be signed)."""
    return _inject_options(fn, RECORD_SIGNING_OPTIONS, "signing", _record_signing)
