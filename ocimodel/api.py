"""The Python verbs, one per CLI command, each with its explicit signature.

Each verb opens a :class:`~ocimodel.session.Client` for one call and calls its method of the
same name; ``connection`` (a :class:`Connection`) says how to reach registries, and binds
given credentials (``username``/``password``, else ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``)
to the registry of the verb's reference only. Use a ``Client`` directly to share connections,
tokens and the cache across calls. This module is also everything the command line imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from .ancestry import DEFAULT_DEPTH, LineageNode
from .config import CodeInfo, Dataset, Scalar
from .locations import is_layout_reference
from .registry.client import RegistryClient
from .registry.connection import Connection, copy_connections
from .registry.credentials import CredentialStore, registry_of
from .registry.mirrors import parse_mirrors
from .scanner.refusals import refuse_unsafe
from .scanner.remote import MAX_BLOB_SCAN_BYTES
from .scanner.report import ScanReport
from .session import Client, InspectResult, RecordSigning
from .signing.policy import VerificationPolicy, blank_policy_variables
from .transfer.observer import TransferObserver
from .transfer.parallel import DEFAULT_CONCURRENCY
from .transfer.pull import PullEvents, PullResult
from .transfer.push import PushResult, code_with

if TYPE_CHECKING:
    from .inventory import ModelRepository, ModelVersion  # noqa: F401 - for the command line's types
    from .lifecycle.chain import HistoryReport
    from .lifecycle.delete import DeletePlan
    from .lifecycle.promote import PromotionResult
    from .lifecycle.stages import StageInfo
    from .provenance import SignResult, VerifyResult
    from .signing.verify import SignatureInfo
    from .transfer.copy import CopyResult

# Also what the command line needs from below this facade (it imports nothing else).
__all__ = [
    "DEFAULT_CONCURRENCY", "Client", "Connection", "InspectResult", "LineageNode", "RecordSigning", "ScanReport",
    "VerificationPolicy", "blank_policy_variables", "code_with", "parse_mirrors", "refuse_unsafe",
    "push", "pull", "copy", "inspect", "tags", "scan", "sign", "verify", "verify_blob", "keygen", "promote", "rollback",
    "stages", "history", "delete", "lineage", "list_models", "login", "logout",
]


def _client(connection: Connection | None, reference: str, *, concurrency: int = DEFAULT_CONCURRENCY,
            cache_dir: str | Path | None = None, use_cache: bool = True) -> Client:
    """A Client for one verb: ``connection``'s given credentials bound to ``reference``'s registry."""
    # A layout names no registry: given credentials have nowhere to go (``oci:x`` would parse as docker.io/oci).
    bound = (connection or Connection()).bound_to("" if is_layout_reference(reference) else reference)
    return Client(bound, concurrency=concurrency, cache_dir=cache_dir, use_cache=use_cache)


def push(
    path: str | Path,
    ref: str,
    *,
    connection: Connection | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    framework: str | None = None,
    format: str | None = None,
    license: str | None = None,
    authors: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    metrics: Mapping[str, Scalar] | None = None,
    params: Mapping[str, Scalar] | None = None,
    parents: Sequence[str] = (),
    datasets: Sequence[str | Dataset] = (),
    run_id: str | None = None,
    run_uri: str | None = None,
    code: CodeInfo | bool | None = None,
    observer: TransferObserver | None = None,
    scan: bool = True,
    deny_unsafe: bool = False,
    on_scan: Callable[[ScanReport], None] | None = None,
    allow_globals: Sequence[str] = (),
    scan_limits: Sequence[str] = (),
) -> PushResult:
    """Push a model; see :meth:`Client.push`."""
    with _client(connection, ref, concurrency=concurrency, cache_dir=cache_dir, use_cache=use_cache) as client:
        return client.push(
            path, ref, name=name, version=version, description=description, framework=framework, format=format,
            license=license, authors=authors, labels=labels, metrics=metrics, params=params, parents=parents,
            datasets=datasets, run_id=run_id, run_uri=run_uri, code=code, observer=observer, scan=scan,
            deny_unsafe=deny_unsafe, on_scan=on_scan, allow_globals=allow_globals, scan_limits=scan_limits,
        )


def pull(
    ref: str,
    dest: str | Path,
    *,
    connection: Connection | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    include: Sequence[str] = (),
    allow_any_type: bool = False,
    observer: TransferObserver | None = None,
    policy: VerificationPolicy | None = None,
    layout: str = "flat",
    reverify: bool = False,
    events: PullEvents | None = None,
    deny_unsafe: bool = False,
    allow_licenses: Sequence[str] = (),
    allow_globals: Sequence[str] = (),
    scan_limits: Sequence[str] = (),
) -> PullResult:
    """Pull a model; see :meth:`Client.pull`."""
    with _client(connection, ref, concurrency=concurrency, cache_dir=cache_dir, use_cache=use_cache) as client:
        return client.pull(
            ref, dest, include=include, allow_any_type=allow_any_type, observer=observer, policy=policy,
            layout=layout, reverify=reverify, events=events, deny_unsafe=deny_unsafe, allow_licenses=allow_licenses,
            allow_globals=allow_globals, scan_limits=scan_limits,
        )


def _registry_of(location: str) -> str | None:
    """The registry a copy's source or destination is in; None for an OCI layout."""
    if is_layout_reference(location):
        return None
    return registry_of(location)


def copy(
    src: str,
    dst: str,
    *,
    connection: Connection | None = None,
    to_connection: Connection | None = None,
    referrers: bool = True,
    tags: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    observer: TransferObserver | None = None,
) -> CopyResult:
    """Copy the model ``src`` names to ``dst`` with everything attached to it, every digest kept.

    By default the referrers come along, recursively (signatures, promotion records, scan
    records, a signature on a promotion record...), so ``verify`` on the copy answers as on
    the source; ``referrers=False`` copies the model alone. ``tags=True`` also carries every
    tag of the source pointing at the model and, for stages, their promotion history (the
    ``ocimodel.history.*`` tags and records), so ``history`` answers the same too. ``dst``
    without a tag takes the source's tag (a source digest: copied by digest, no tag).

    ``connection`` reaches the source, ``to_connection`` the destination (default: the same
    options, and between two registries no given credentials: stored logins only). Given
    credentials go to their own side's registry only; see
    :func:`ocimodel.registry.connection.copy_connections` for the environment's. Blobs the
    destination has are skipped, within one registry they are mounted, else streamed from
    source to destination verified, ``concurrency`` at a time; a re-run moves only what is
    missing.
    """
    source, destination = copy_connections(connection or Connection(), to_connection, _registry_of(src), _registry_of(dst))
    with Client(source, concurrency=concurrency, use_cache=False) as client:
        if destination is None:
            return client.copy(src, dst, referrers=referrers, tags=tags, observer=observer)
        with Client(destination, concurrency=concurrency, use_cache=False) as other:
            return client.copy(src, dst, destination=other, referrers=referrers, tags=tags, observer=observer)


def inspect(ref: str, *, connection: Connection | None = None, allow_any_type: bool = True) -> InspectResult:
    """Inspect a model; see :meth:`Client.inspect`."""
    with _client(connection, ref) as client:
        return client.inspect(ref, allow_any_type=allow_any_type)


def tags(repository: str, *, connection: Connection | None = None, include_internal: bool = False) -> list[str]:
    """List a repository's tags, sorted; see :meth:`Client.tags`."""
    with _client(connection, repository) as client:
        return client.tags(repository, include_internal=include_internal)


def scan(
    target: str | Path,
    *,
    connection: Connection | None = None,
    max_blob_bytes: int = MAX_BLOB_SCAN_BYTES,
    allow_globals: Sequence[str] = (),
    scan_limits: Sequence[str] = (),
) -> ScanReport:
    """Scan a local path or a model reference; see :meth:`Client.scan`."""
    with _client(connection, str(target)) as client:
        return client.scan(target, max_blob_bytes=max_blob_bytes, allow_globals=allow_globals, scan_limits=scan_limits)


def sign(
    ref: str,
    *,
    connection: Connection | None = None,
    key: str | Path | None = None,
    identity_token: str | None = None,
    staging: bool = False,
    trust_config: str | Path | None = None,
    annotations: Mapping[str, str] | None = None,
    interactive: bool | None = None,
) -> SignResult:
    """Sign a model's manifest and attach the signature; see :meth:`Client.sign`."""
    with _client(connection, ref) as client:
        return client.sign(ref, key=key, identity_token=identity_token, staging=staging, trust_config=trust_config,
                           annotations=annotations, interactive=interactive)


def verify(ref: str, policy: VerificationPolicy, *, connection: Connection | None = None) -> VerifyResult:
    """Verify a model's signatures under ``policy``; see :meth:`Client.verify`."""
    with _client(connection, ref) as client:
        return client.verify(ref, policy)


def verify_blob(file: str | Path, bundle: str | Path, policy: VerificationPolicy) -> SignatureInfo:
    """Verify a detached Sigstore bundle over a local file (offline), like cosign verify-blob."""
    from .signing.verify import verify_blob as check

    return check(Path(file), Path(bundle), policy)


def keygen(prefix: str | Path = "ocimodel", password: bytes | None = None) -> tuple[Path, Path]:
    """Write an encrypted ECDSA P-256 key pair ``prefix.key`` / ``prefix.pub``.

    Without ``password``, it comes from ``OCIMODEL_KEY_PASSWORD`` or the terminal (twice).
    """
    from .provenance import keygen as generate

    return generate(prefix, password)


def promote(
    ref: str,
    stage: str,
    *,
    connection: Connection | None = None,
    reason: str = "",
    actor: str | None = None,
    policy: VerificationPolicy | None = None,
    sign_record: RecordSigning | None = None,
) -> PromotionResult:
    """Promote a model to a stage; see :meth:`Client.promote`."""
    with _client(connection, ref) as client:
        return client.promote(ref, stage, reason=reason, actor=actor, policy=policy, sign_record=sign_record)


def rollback(
    repository: str,
    stage: str,
    *,
    connection: Connection | None = None,
    to: str | None = None,
    steps: int = 1,
    reason: str | None = None,
    actor: str | None = None,
    policy: VerificationPolicy | None = None,
    sign_record: RecordSigning | None = None,
    origins: Sequence[str] = (),
) -> PromotionResult:
    """Roll a stage back; see :meth:`Client.rollback`."""
    with _client(connection, repository) as client:
        return client.rollback(repository, stage, to=to, steps=steps, reason=reason, actor=actor, policy=policy,
                               sign_record=sign_record, origins=origins)


def stages(
    repository: str, *, connection: Connection | None = None, policy: VerificationPolicy | None = None
) -> list[StageInfo]:
    """Every stage of a repository; see :meth:`Client.stages`."""
    with _client(connection, repository) as client:
        return client.stages(repository, policy=policy)


def history(
    repository: str,
    stage: str,
    *,
    connection: Connection | None = None,
    policy: VerificationPolicy | None = None,
    origins: Sequence[str] = (),
) -> HistoryReport:
    """A stage's promotion history; see :meth:`Client.history`."""
    with _client(connection, repository) as client:
        return client.history(repository, stage, policy=policy, origins=origins)


def delete(ref: str, *, connection: Connection | None = None, force: bool = False) -> DeletePlan:
    """Delete a tag or a manifest; see :meth:`Client.delete`."""
    with _client(connection, ref) as client:
        return client.delete(ref, force=force)


def lineage(ref: str, *, connection: Connection | None = None, depth: int = DEFAULT_DEPTH) -> LineageNode:
    """A model's ancestor tree; see :meth:`Client.lineage`."""
    with _client(connection, ref) as client:
        return client.lineage(ref, depth=depth)


def list_models(
    registry: str, *, connection: Connection | None = None, policy: VerificationPolicy | None = None
) -> list[ModelRepository]:
    """The repositories of ``registry`` (``"REGISTRY[/PREFIX]"``) that hold ocimodel models,
    each with its stages, latest version and signature status; the CLI's ``list``. See
    :meth:`Client.list_models`. Given credentials go to that registry only."""
    from .reference import parse_registry_prefix

    host, _ = parse_registry_prefix(registry)
    with Client((connection or Connection()).bound_to_registry(host)) as client:
        return client.list_models(registry, policy=policy)


def login(
    host: str,
    username: str,
    password: str,
    *,
    connection: Connection | None = None,
    config_path: str | Path | None = None,
) -> Path:
    """Check ``username``/``password`` against ``host``, then store them like ``docker login``.

    Returns the docker config file written (or the one whose credential helper was used).
    ``connection`` gives the scheme, TLS and timeout settings (its credentials are not used).
    """
    from .registry.credentials import Credential

    # Only the credentials being tested (ping asks nothing of another host, so stored logins
    # are never consulted), and only for ``host``.
    probe = CredentialStore().given_to(host, Credential(username=username, password=password))
    with RegistryClient(connection, credentials=probe) as client:
        client.ping(host)
    store = CredentialStore(config_path)
    store.login(host, username, password)
    return store.path


def logout(host: str, *, config_path: str | Path | None = None) -> bool:
    """Forget stored credentials for ``host``; True if there were any."""
    return CredentialStore(config_path).logout(host)
