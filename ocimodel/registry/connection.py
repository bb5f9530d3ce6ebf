"""How to reach registries: one options object, built by the CLI (or a caller) and carried
down to the transport.

Every connection setting lives here and nowhere else: the scheme (``plain_http``), TLS
(``insecure``, ``ca_file``), timeouts, pull-through mirrors, the user agent, and which
registry given credentials belong to. Given credentials (``username``/``password``, else
``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``) are bound to one registry, ``credentials_for``,
and sent to no other host (see :mod:`.credentials`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from .._version import __version__
from ..errors import UsageError
from .credentials import PASSWORD_ENV, USERNAME_ENV, CredentialStore, env_credential, normalise_host, registry_of
from .timeouts import Timeouts

PLAIN_HTTP_ENV = "OCIMODEL_PLAIN_HTTP"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Connection:
    """How to reach registries; the defaults are https with verified TLS and stored logins.

    - ``plain_http``: use http (also ``OCIMODEL_PLAIN_HTTP=1``); never chosen automatically,
      not even for localhost: a silent downgrade would leak credentials.
    - ``insecure``: do not verify TLS certificates; ``ca_file``: trust this CA bundle instead.
    - ``timeout``: seconds, or a :class:`~.timeouts.Timeouts`; None: ``OCIMODEL_TIMEOUT``,
      else 60 s. It bounds every wait on a registry, its token server and mirrors.
    - ``mirrors``: registry name -> pull-through mirror URLs tried first for reads (see
      :mod:`.mirrors`); writes always go to the registry itself.
    - ``credentials_for``: the registry (a host such as ``ghcr.io``) that ``username`` and
      ``password`` are for, else ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``. Without it only
      stored logins (the docker config) are used. The module-level verbs bind it to the
      registry of their reference (:meth:`bound_to`).
    """

    plain_http: bool = False
    insecure: bool = False
    ca_file: str | Path | None = None
    timeout: float | Timeouts | None = None
    mirrors: Mapping[str, Sequence[str]] | None = None
    credentials_for: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    user_agent: str = f"ocimodel/{__version__}"

    @property
    def scheme(self) -> str:
        """``http`` when asked for (here or by ``OCIMODEL_PLAIN_HTTP``), else ``https``."""
        return "http" if self.plain_http or _env_flag(PLAIN_HTTP_ENV) else "https"

    def timeouts(self) -> Timeouts:
        """Every limit on waiting, from ``timeout`` or ``OCIMODEL_TIMEOUT`` (UsageError if unusable)."""
        return Timeouts.resolve(self.timeout, os.environ)

    def bound_to(self, reference: str) -> "Connection":
        """This connection with given credentials for the registry of ``reference`` (a
        reference or repository string), unless already bound to a registry. Something that
        names no registry (a local path to scan) leaves the given credentials nowhere to go:
        they are dropped."""
        if self.credentials_for is not None:
            return self
        registry = registry_of(reference)
        if registry is None:
            return replace(self, username=None, password=None)
        return self.bound_to_registry(registry)

    def bound_to_registry(self, registry: str) -> "Connection":
        """Like :meth:`bound_to`, for a registry host itself (``list REGISTRY``: a bare
        ``localhost:5000`` would parse as a Docker Hub reference)."""
        return self if self.credentials_for is not None else replace(self, credentials_for=registry)

    def credential_store(self) -> CredentialStore:
        """Stored logins for every host, and the given credential for ``credentials_for`` only."""
        if self.credentials_for is None:
            if self.username is not None or self.password is not None:
                raise UsageError("username and password need credentials_for: the registry they are for")
            return CredentialStore()
        return CredentialStore.for_registry(self.credentials_for, self.username, self.password)


def copy_connections(
    source: Connection, destination: Connection | None, src_registry: str | None, dst_registry: str | None,
) -> tuple[Connection, Connection | None]:
    """The connections of a copy's two sides, each with given credentials for its own registry
    only; None for the destination: share the source's session (one registry, or the
    destination is no registry).

    ``src_registry``/``dst_registry`` are the registries of the two references (None: not a
    registry, e.g. an OCI layout). ``source``'s given credentials are for the source registry,
    ``destination``'s for the destination registry; without ``destination`` the source's
    connection serves both sides, its credentials still going to the source registry only
    (the same registry gets them on both sides). ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``
    are bound when the copy involves one registry; between two registries they could be meant
    for either, so they are refused (UsageError) unless both sides were given their own.
    """
    one = len({normalise_host(r) for r in (src_registry, dst_registry) if r}) <= 1

    def side(connection: Connection, registry: str | None) -> Connection:
        if registry is None:  # no registry on this side: nothing to send credentials to
            return replace(connection, credentials_for=None, username=None, password=None)
        if connection.credentials_for is not None:
            return connection
        if connection.username is not None or connection.password is not None or one:
            return replace(connection, credentials_for=registry)
        if env_credential(os.environ) is not None:
            raise UsageError(
                f"{USERNAME_ENV}/{PASSWORD_ENV} are set, but this copy is between two registries: give each "
                "side its own credentials (--from-username/--to-username, OCIMODEL_FROM_USERNAME/"
                "OCIMODEL_TO_USERNAME, or a docker login) and unset them"
            )
        return connection

    src = side(source, src_registry)
    if destination is None:
        if src_registry is None:
            destination = source  # the one registry is the destination's
        elif dst_registry is None or one:
            return src, None
        else:
            destination = replace(source, credentials_for=None, username=None, password=None)
    return src, side(destination, dst_registry)
