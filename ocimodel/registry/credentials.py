"""Registry credentials: given ones, docker's ``config.json`` and credential helpers.

Lookup order for a host:

1. the *given* credential (``--username``/``--password``, ``OCIMODEL_USERNAME``/
   ``OCIMODEL_PASSWORD``), but only for the one registry it was given for: the registry of
   the reference on the command line. Hosts named by content (lineage parents, mirrors,
   redirect targets) never see it;
2. the credential helper for the host (``credHelpers[host]``, else ``credsStore``);
3. ``auths[host]`` in the config file (``auth`` = base64 ``user:pass``, or ``username`` /
   ``password``, plus ``identitytoken``).

Secrets never appear in ``repr`` or in error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import AuthError, InvalidReferenceError, UsageError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# docker-credential-helpers prints this (exit 1) for an unknown server.
_HELPER_NOT_FOUND = "credentials not found"
_IDENTITY_TOKEN_USER = "<token>"
_HELPER_TIMEOUT = 60.0
USERNAME_ENV = "OCIMODEL_USERNAME"
PASSWORD_ENV = "OCIMODEL_PASSWORD"


@dataclass(frozen=True)
class Credential:
    """A username and password, or an identity (refresh) token, for one registry."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    @property
    def has_password(self) -> bool:
        """True when usable for HTTP Basic."""
        return bool(self.username) and self.password is not None


def normalise_host(server: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``http://h:5000/x`` → ``h:5000``."""
    host = server.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_ALIASES else host


def config_key(host: str) -> str:
    """The key docker uses in ``auths`` and sends to helpers for ``host``."""
    host = normalise_host(host)
    return DOCKER_HUB_KEY if host == "docker.io" else host


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = env.get("DOCKER_CONFIG")
    return Path(directory or Path.home() / ".docker") / "config.json"


def env_credential(env: Mapping[str, str]) -> Credential | None:
    """``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD`` as a credential, None unless both are set.

    An empty username counts as unset (how a container switches them off).
    """
    username, password = env.get(USERNAME_ENV), env.get(PASSWORD_ENV)
    return Credential(username=username, password=password) if username and password is not None else None


def registry_of(text: str) -> str | None:
    """The registry host of a reference or repository string; None if ``text`` is neither."""
    from ..reference import Reference

    for parse in (Reference.parse, Reference.parse_repository):
        try:
            return parse(text).registry
        except InvalidReferenceError:
            continue
    return None


@dataclass(frozen=True)
class GivenCredential:
    """A credential given for one registry (``host``, normalised); no other host may see it."""

    host: str
    credential: Credential


class CredentialStore:
    """Reads (and for login/logout, writes) credentials the way docker does.

    ``config_path`` overrides the docker config location (like podman's ``REGISTRY_AUTH_FILE``);
    ``env`` defaults to ``os.environ`` and is read at each lookup, so tests can monkeypatch it.
    ``given`` is a credential bound to one registry (see :meth:`given_to`, :meth:`for_registry`):
    the environment's ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD`` are used only through it.
    """

    def __init__(
        self,
        config_path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        given: GivenCredential | None = None,
    ) -> None:
        self._explicit_path = Path(config_path) if config_path is not None else None
        self._env = env
        self._given = given

    @classmethod
    def for_registry(
        cls,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        *,
        config_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "CredentialStore":
        """A store where ``username``/``password`` (else ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``)
        are used for ``registry`` only, and stored credentials for every host."""
        store = cls(config_path, env=env)
        if username is None and password is None:
            given = env_credential(store.env)
        elif not username or password is None:
            raise UsageError(
                f"a username needs a password (--password or {PASSWORD_ENV}) and a password needs a username "
                f"(--username or {USERNAME_ENV})"
            )
        else:
            given = Credential(username=username, password=password)
        return store.given_to(registry, given) if given else store

    def given_to(self, registry: str, credential: Credential) -> "CredentialStore":
        """The same store with ``credential`` for ``registry`` (a name or API host) and no other."""
        return CredentialStore(self._explicit_path, env=self._env, given=GivenCredential(normalise_host(registry), credential))

    def config_only(self) -> "CredentialStore":
        """The same store without the given credential (for mirrors).

        The given credential is for the registry being used; a mirror must get only what the
        docker config holds for the mirror's own host.
        """
        return CredentialStore(self._explicit_path, env=self._env)

    def hint(self, host: str) -> str:
        """Why given credentials were not used for ``host``, for an authentication error ("" if they were)."""
        if self._given is not None and self._given.host != normalise_host(host):
            return f" (the credentials given with --username or {USERNAME_ENV} are for {self._given.host} only)"
        if self._given is None and env_credential(self.env) is not None:
            return (
                f" ({USERNAME_ENV}/{PASSWORD_ENV} apply only to the registry a command names; "
                "from Python, pass credentials_for=REGISTRY)"
            )
        return ""

    @property
    def env(self) -> Mapping[str, str]:
        """The environment in effect."""
        return os.environ if self._env is None else self._env

    @property
    def path(self) -> Path:
        """The config file consulted."""
        return self._explicit_path or default_config_path(self.env)

    def get(self, host: str) -> Credential | None:
        """Credentials for ``host`` (a registry name or API host), or None for anonymous."""
        if self._given is not None and self._given.host == normalise_host(host):
            return self._given.credential
        config = self._load()
        helper = self._helper_for(config, host)
        if helper:
            found = self._helper_get(helper, host)
            if found is not None:
                return found
        entry = _find_entry(config.get("auths"), host)
        return _entry_credential(entry, self.path) if entry else None

    def login(self, host: str, username: str, password: str) -> None:
        """Store credentials for ``host`` in the configured helper, else in the config file."""
        config = self._load()
        helper = self._helper_for(config, host)
        if helper:
            payload = {"ServerURL": config_key(host), "Username": username, "Secret": password}
            self._run_helper(helper, "store", json.dumps(payload))
            return
        auths = config.setdefault("auths", {})
        _drop_entries(auths, host)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        auths[config_key(host)] = {"auth": token}
        self._save(config)

    def logout(self, host: str) -> bool:
        """Forget credentials for ``host``; True if anything was removed."""
        config = self._load()
        helper = self._helper_for(config, host)
        removed = False
        if helper:
            removed = self._helper_erase(helper, host)
        if _drop_entries(config.get("auths") or {}, host):
            self._save(config)
            removed = True
        return removed

    # -- config file ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        path = self.path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        try:
            config = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise UsageError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(config, dict):
            raise UsageError(f"{path} is not a JSON object; fix or remove it")
        return config

    def _save(self, config: dict[str, Any]) -> None:
        # Atomic: a crash mid-write must not lose the user's other registries' logins.
        path = self.path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(config, out, indent="\t")
                out.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- credential helpers -----------------------------------------------------------------

    def _helper_for(self, config: Mapping[str, Any], host: str) -> str | None:
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if normalise_host(key) == normalise_host(host) and isinstance(name, str) and name:
                    return name
        store = config.get("credsStore")
        return store if isinstance(store, str) and store else None

    def _helper_get(self, helper: str, host: str) -> Credential | None:
        out = self._run_helper(helper, "get", config_key(host), missing_ok=True)
        if out is None:
            return None
        try:
            reply = json.loads(out)
            username, secret = reply.get("Username"), reply.get("Secret")
        except (ValueError, AttributeError):
            raise AuthError(f"credential helper docker-credential-{helper} printed invalid JSON") from None
        if not isinstance(secret, str) or not secret:
            return None
        if username == _IDENTITY_TOKEN_USER:
            return Credential(identity_token=secret)
        return Credential(username=username if isinstance(username, str) else None, password=secret)

    def _helper_erase(self, helper: str, host: str) -> bool:
        return self._run_helper(helper, "erase", config_key(host), missing_ok=True) is not None

    def _run_helper(self, helper: str, action: str, stdin: str, *, missing_ok: bool = False) -> str | None:
        program = f"docker-credential-{helper}"
        try:
            proc = subprocess.run(
                [program, action], input=stdin, capture_output=True, text=True, timeout=_HELPER_TIMEOUT
            )
        except FileNotFoundError:
            raise AuthError(
                f"credential helper {program} is configured in {self.path} but not on PATH: "
                "install it or remove it from the config"
            ) from None
        except subprocess.TimeoutExpired:
            raise AuthError(
                f"credential helper {program} {action} did not answer within {_HELPER_TIMEOUT:.0f} s"
            ) from None
        if proc.returncode == 0:
            return proc.stdout
        # Only the helper's message is shown: it is about the lookup, never the secret we sent.
        message = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        first = message[0] if message else f"exit status {proc.returncode}"
        if missing_ok and _HELPER_NOT_FOUND in first.lower():
            return None
        raise AuthError(f"credential helper {program} {action} failed: {first}")


def _find_entry(auths: Any, host: str) -> dict[str, Any] | None:
    if not isinstance(auths, dict):
        return None
    wanted = normalise_host(host)
    for key, entry in auths.items():
        if normalise_host(key) == wanted and isinstance(entry, dict):
            return entry
    return None


def _drop_entries(auths: dict[str, Any], host: str) -> bool:
    wanted = normalise_host(host)
    keys = [key for key in auths if normalise_host(key) == wanted]
    for key in keys:
        del auths[key]
    return bool(keys)


def _entry_credential(entry: Mapping[str, Any], path: Path) -> Credential | None:
    username, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{path}: an 'auth' entry is not base64 of 'user:password'; log in again") from None
        if not sep:
            raise UsageError(f"{path}: an 'auth' entry is not base64 of 'user:password'; log in again")
    token = entry.get("identitytoken")
    credential = Credential(
        username=username if isinstance(username, str) and username else None,
        password=password if isinstance(password, str) and username else None,
        identity_token=token if isinstance(token, str) and token else None,
    )
    if credential.has_password or credential.identity_token:
        return credential
    return None
