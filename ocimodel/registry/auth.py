"""Registry authentication: challenge parsing, Basic, and the Bearer token flow.

The client asks :meth:`Authenticator.authorization` for a header before each request and calls
:meth:`Authenticator.on_challenge` when a 401 comes back. Tokens are cached per
(registry, scope set) until shortly before they expire. Nothing here logs a secret.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import httpx

from ..errors import AuthError, NetworkError, RegistryError
from .credentials import Credential, CredentialStore
from .timeouts import Timeouts

DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little early so a token does not expire between cache lookup and use.
_EXPIRY_MARGIN = 10.0
_MAX_TOKEN_RESPONSE = 1024 * 1024
_CLIENT_ID = "ocimodel"

_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*(?:,\s*)?")
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,\s*)?')


@dataclass(frozen=True)
class Challenge:
    """One challenge from ``WWW-Authenticate``: a scheme and its (unquoted) parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> frozenset[str]:
        """The space-separated ``scope`` parameter as a set."""
        return frozenset(self.params.get("scope", "").split())


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value; quoted values may contain commas and spaces."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        param = _PARAM_RE.match(header, pos)
        if param and challenges:
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            challenges[-1].params[param.group(1).lower()] = value
            pos = param.end()
            continue
        scheme = _SCHEME_RE.match(header, pos)
        if not scheme or scheme.end() == pos:
            break  # malformed tail (e.g. a token68): keep what was understood
        challenges.append(Challenge(scheme=scheme.group(1).lower()))
        pos = scheme.end()
    return challenges


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:<name>:<actions>``, the scope a token needs for a repository."""
    return f"repository:{repository}:{','.join(actions)}"


def _parse_scope(scope: str) -> tuple[str, frozenset[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, frozenset(actions.split(","))


def scopes_cover(granted: Iterable[str], wanted: Iterable[str]) -> bool:
    """True if the ``granted`` scopes include every action of every ``wanted`` scope.

    So a ``repository:r:pull,push`` token serves a later pull of ``r`` without a new request.
    """
    have: dict[str, set[str]] = {}
    for scope in granted:
        resource, actions = _parse_scope(scope)
        have.setdefault(resource, set()).update(actions)
    for scope in wanted:
        resource, actions = _parse_scope(scope)
        if not actions <= have.get(resource, set()) and "*" not in have.get(resource, set()):
            return False
    return True


def basic_header(credential: Credential) -> str:
    """The ``Authorization`` value for HTTP Basic."""
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class _TokenReply:
    status: int
    body: bytes


@dataclass
class _Token:
    header: str
    expires_at: float


class Authenticator:
    """Per-client auth state: which scheme each host wants, and cached bearer tokens."""

    def __init__(
        self,
        credentials: CredentialStore,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._credentials = credentials
        self._http = http
        self._clock = clock
        self._timeouts = timeouts or Timeouts()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, frozenset[str]], _Token] = {}
        self._lock = threading.Lock()

    def has_credentials(self, registry: str) -> bool:
        """True if a username/password or identity token is configured for ``registry``."""
        return self._credentials.get(registry) is not None

    def login_hint(self, registry: str) -> str:
        """What to do when ``registry`` wants credentials we do not have (one sentence fragment)."""
        return f"run 'ocimodel login {registry}'{self._credentials.hint(registry)}"

    def authorization(self, registry: str, scopes: Iterable[str]) -> str | None:
        """The header to send proactively, if this host challenged us before."""
        challenge = self._challenges.get(registry)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credential = self._credentials.get(registry)
            return basic_header(credential) if credential and credential.has_password else None
        if challenge.scheme == "bearer":
            return self._bearer(registry, challenge, frozenset(scopes))
        return None

    def on_challenge(self, registry: str, header: str, scopes: Iterable[str], sent: str | None) -> str | None:
        """After a 401: the header to retry with, or None when retrying cannot help."""
        challenges = {c.scheme: c for c in parse_challenges(header)}
        challenge = challenges.get("bearer") or challenges.get("basic")
        if challenge is None:
            return None
        self._challenges[registry] = challenge
        if challenge.scheme == "basic":
            credential = self._credentials.get(registry)
            if credential is None or not credential.has_password:
                return None
            fresh = basic_header(credential)
            return None if fresh == sent else fresh
        wanted = frozenset(scopes) | challenge.scopes
        with self._lock:
            # The token we sent was refused (expired early, revoked, or too narrow): drop it.
            for key, token in list(self._tokens.items()):
                if key[0] == registry and token.header == sent:
                    del self._tokens[key]
        return self._bearer(registry, challenge, wanted)

    def _bearer(self, registry: str, challenge: Challenge, scopes: frozenset[str]) -> str:
        key = (registry, scopes)
        with self._lock:
            cached = self._cached(registry, scopes)
            if cached:
                return cached
            token, lifetime = self._fetch_token(registry, challenge, sorted(scopes))
            margin = min(_EXPIRY_MARGIN, lifetime / 2)
            header = f"Bearer {token}"
            self._tokens[key] = _Token(header, self._clock() + lifetime - margin)
            return header

    def _cached(self, registry: str, scopes: frozenset[str]) -> str | None:
        """A live token for exactly these scopes, else one whose scopes cover them."""
        now = self._clock()
        exact = self._tokens.get((registry, scopes))
        if exact and exact.expires_at > now:
            return exact.header
        for (host, granted), token in self._tokens.items():
            if host == registry and token.expires_at > now and scopes_cover(granted, scopes):
                return token.header
        return None

    def _fetch_token(self, registry: str, challenge: Challenge, scopes: list[str]) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"registry {registry} asked for a bearer token without naming a realm")
        service = challenge.params.get("service")
        credential = self._credentials.get(registry)
        if credential and credential.identity_token:
            response = self._oauth2_post(realm, service, scopes, credential.identity_token)
            if response.status not in (404, 405):
                return self._parse_token(registry, response, credential)
            # The realm has no OAuth2 endpoint: docker's fallback is GET with the token as password.
            credential = Credential(username=credential.username or "<token>", password=credential.identity_token)
        params: list[tuple[str, str]] = [("service", service)] if service else []
        params += [("scope", scope) for scope in scopes]
        headers = {"Authorization": basic_header(credential)} if credential and credential.has_password else {}
        response = self._token_request("GET", realm, params=params, headers=headers)
        return self._parse_token(registry, response, credential)

    def _oauth2_post(self, realm: str, service: str | None, scopes: list[str], refresh: str) -> _TokenReply:
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": _CLIENT_ID}
        if service:
            form["service"] = service
        if scopes:
            form["scope"] = " ".join(scopes)
        return self._token_request("POST", realm, data=form)

    def _token_request(self, method: str, realm: str, **kwargs: Any) -> _TokenReply:
        try:
            # One deadline for the whole exchange: the answer is small, a trickle is an attack.
            with self._timeouts.deadline(), self._http.stream(method, realm, **kwargs) as response:
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > _MAX_TOKEN_RESPONSE:
                        raise RegistryError(f"token server {realm} sent an oversized answer; refusing it")
                return _TokenReply(response.status_code, bytes(body))
        except httpx.TimeoutException:
            raise NetworkError(
                f"token server {realm} did not answer within {self._timeouts.response:g} s "
                "(--timeout / OCIMODEL_TIMEOUT sets the limit)"
            ) from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"cannot reach token server {realm}: {type(exc).__name__}: {exc}") from None

    def _parse_token(self, registry: str, response: _TokenReply, credential: Credential | None) -> tuple[str, float]:
        if response.status in (401, 403):
            if credential is None:
                raise AuthError(f"authentication required for {registry}: {self.login_hint(registry)}", status=response.status)
            raise AuthError(f"wrong username or password for {registry}", status=response.status)
        if response.status != 200:
            raise RegistryError(
                f"token server for {registry} answered {response.status} to a token request",
                status=response.status,
            )
        try:
            reply = json.loads(response.body)
            token = reply.get("token") or reply.get("access_token")
            lifetime = float(reply.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError, RecursionError):
            raise RegistryError(f"token server for {registry} sent a malformed answer") from None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server for {registry} sent no token")
        return token, max(lifetime, 1.0)
