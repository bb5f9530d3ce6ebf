"""Sending requests to a registry: the httpx client, auth, redirects, retries, errors, mirrors.

Every request of :class:`~.client.RegistryClient` goes through :meth:`Transport.open`:

- redirects are followed by hand so ``Authorization`` is only ever sent to the registry
  itself, and only the registry's own 401 challenge is answered (:meth:`Transport._follow`);
- retryable failures (408, 429, 5xx, connection errors) are retried under the
  :class:`~.retry.RetryPolicy`, within a time budget; a mirror is never retried (the next
  source is);
- every wait is bounded (:mod:`.timeouts`): a deadline for response headers and small bodies,
  an idle limit and a minimum progress for streamed bodies;
- an unexpected answer becomes one :mod:`ocimodel.errors` error whose message names the
  operation and the fix (:meth:`Transport.error`); raw httpx exceptions never escape;
- reads may go through pull-through mirrors first (:meth:`Transport.read`); writes never do.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import httpx

from ..errors import (
    AuthError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    OcimodelError,
    RegistryError,
    SchemaError,
    StalledError,
)
from ..reference import Reference
from .auth import Authenticator, repository_scope
from .connection import PLAIN_HTTP_ENV, Connection
from .credentials import CredentialStore
from .mirrors import Mirror, MirrorHealth, registry_key, resolve_mirrors
from .retry import RetryableFailure, RetryPolicy, is_retryable_status, parse_retry_after
from .timeouts import ResponseTooSlow, guard, slowness
from .tls import ssl_verify

logger = logging.getLogger(__name__)

BodyFactory = Callable[[], Iterable[bytes]]
T = TypeVar("T")

MAX_ERROR_BODY = 64 * 1024
# An unread body up to this size is read before closing, so that httpcore returns the connection
# to the pool (closing a response mid-body drops the connection: a new TCP handshake per request).
DRAIN_LIMIT = 64 * 1024
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_WARNING_RE = re.compile(r'^\s*299\s+\S+\s+"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Operation:
    """One logical request, named for error messages: ``verb`` + ``noun``, on ``host``.

    ``mirror`` is set when the request goes to a mirror of the registry instead of to it.
    """

    verb: str
    noun: str
    host: str
    scopes: tuple[str, ...] = ()
    scheme: str = "https"
    mirror: Mirror | None = None


def content_media_type(content_type: str | None) -> str | None:
    """The media type of a ``Content-Type`` value (parameters dropped), or None."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None


def _error_detail(body: bytes) -> tuple[str | None, str]:
    """The first OCI error's code and a ``CODE: message`` summary, from an error body."""
    try:
        errors = json.loads(body).get("errors")
        first = errors[0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, TypeError, IndexError, KeyError, RecursionError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return None, (text[0][:200] if text else "")
    return code or None, ": ".join(part for part in (code, message) if part)


def _small_rest(response: httpx.Response) -> bool:
    """True if the unread body is known to be empty or at most :data:`DRAIN_LIMIT` bytes."""
    if response.request.method == "HEAD" or response.status_code in (204, 304):
        return True
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= DRAIN_LIMIT


def _same_origin(url: httpx.URL, op: Operation) -> bool:
    """True if ``url`` is on the scheme, host and port ``op`` is addressed to (its credentials' origin)."""
    return url.scheme == op.scheme and url.netloc.decode("ascii") == op.host


class Transport:
    """The httpx client of one :class:`~.client.RegistryClient`, and everything about sending.

    Thread-safe for concurrent transfers (one connection pool, a locked token cache, locked
    mirror health).
    """

    def __init__(
        self,
        connection: Connection,
        credentials: CredentialStore,
        retry: RetryPolicy,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self.scheme = connection.scheme
        self.timeouts = connection.timeouts()
        self.mirrors = resolve_mirrors(connection.mirrors)
        self.retry = retry
        self.health = MirrorHealth()
        self.http = httpx.Client(
            verify=ssl_verify(connection.insecure, connection.ca_file),
            timeout=self.timeouts.for_httpx(),
            headers={"User-Agent": connection.user_agent},
            follow_redirects=False,  # done by hand: see _follow
            event_hooks=dict(event_hooks or {}),
        )
        guard(self.http, self.timeouts)
        self._auth = Authenticator(credentials, self.http, timeouts=self.timeouts)
        # Mirrors authenticate with their own docker-config entry, never the registry's.
        self._mirror_auth = Authenticator(credentials.config_only(), self.http, timeouts=self.timeouts)

    def close(self) -> None:
        """Close pooled connections."""
        self.http.close()

    # -- addressing ------------------------------------------------------------------------

    def op(self, ref: Reference, verb: str, noun: str, *actions: str, scopes: Sequence[str] = ()) -> Operation:
        """The operation ``verb noun`` on ``ref``'s registry, needing ``actions`` (or ``scopes``)."""
        wanted = tuple(scopes) or (repository_scope(ref.repository, *actions),)
        return Operation(verb, noun, ref.api_host, wanted, self.scheme)

    def url(self, op: Operation, ref: Reference, *parts: str) -> httpx.URL:
        """The URL of ``parts`` in ``ref``'s repository, on the registry or mirror ``op`` goes to."""
        prefix = op.mirror.prefix if op.mirror else ""
        url = httpx.URL(f"{op.scheme}://{op.host}{prefix}/v2/{ref.repository}/" + "/".join(parts))
        # Like containerd: tell a mirror which registry is meant (Spegel, Dragonfly need it).
        return url.copy_merge_params({"ns": ref.registry}) if op.mirror else url

    # -- mirrors ---------------------------------------------------------------------------

    def read(self, ref: Reference, verb: str, noun: str, call: Callable[[Operation], T], digest: str | None = None) -> T:
        """``call(op)`` on each usable mirror of ``ref``'s registry in turn, then on the registry.

        Any failure of a mirror is logged and the next source tried; the registry's own answer,
        or error, is final. ``digest`` (of the content read) skips mirrors that served it wrong.
        """
        origin = self.op(ref, verb, noun, "pull")
        mirrors = self.mirrors.get(registry_key(ref.registry), ())
        for mirror in mirrors:
            if not self.health.usable(mirror, digest):
                continue
            op = replace(origin, host=mirror.host, scheme=mirror.scheme, mirror=mirror)
            try:
                result = call(op)
            except (OcimodelError, RetryableFailure) as exc:
                self._mirror_failed(mirror, exc, op)
                continue
            logger.info("%s %s: served by mirror %s", verb, noun, mirror)
            return result
        result = call(origin)
        if mirrors:
            logger.info("%s %s: served by registry %s", verb, noun, origin.host)
        return result

    def _mirror_failed(self, mirror: Mirror, exc: Exception, op: Operation) -> None:
        error = exc.error if isinstance(exc, RetryableFailure) else exc
        if isinstance(error, IntegrityError):
            logger.warning("mirror %s served bad content for %s (%s); using the next source", mirror, op.noun, error)
            return
        if isinstance(exc, RetryableFailure) or isinstance(error, (NetworkError, StalledError)):
            # Unreachable, failing (5xx, 429) or too slow: skip it for a while instead of waiting on every read.
            self.health.cool_down(mirror)
        logger.info("mirror %s failed %s %s (%s); using the next source", mirror, op.verb, op.noun, error)

    def auth_for(self, op: Operation) -> Authenticator:
        """The authenticator for ``op``'s host: the registry's, or the mirrors' (stored logins only)."""
        return self._mirror_auth if op.mirror else self._auth

    # -- sending ---------------------------------------------------------------------------

    @contextmanager
    def open(
        self,
        method: str,
        url: httpx.URL,
        op: Operation,
        *,
        headers: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        retry: bool = True,
    ) -> Iterator[httpx.Response]:
        """Send with auth and redirects; yields the open (streaming) response, closed after.

        Retryable failures (408/429/5xx, connection errors) are retried here when ``retry``;
        otherwise they propagate as RetryableFailure so the caller can restart a larger unit
        (an upload restarts from its POST). A mirror is never retried: the next source is.
        """

        def attempt() -> httpx.Response:
            try:
                response = self._authorized(method, url, op, dict(headers or {}), body)
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, op) from None
            if is_retryable_status(response.status_code):
                error = self.error(response, op)
                self.release(response)
                raise RetryableFailure(NetworkError(str(error)), parse_retry_after(response.headers.get("retry-after")))
            return response

        if retry and op.mirror is None:
            response = self.retry.run(attempt, budget=self.timeouts.retry_budget)
        else:
            response = attempt()
        try:
            yield response
        finally:
            self.release(response)

    def release(self, response: httpx.Response) -> None:
        """Close ``response``, first reading what is left of a small body so the connection is reused.

        Only a body whose end is known and near (no body, or a ``Content-Length`` of at most
        :data:`DRAIN_LIMIT`) is read, within the response deadline; anything else, or any
        failure reading it, closes the connection instead.
        """
        if not response.is_closed and not response.is_stream_consumed and _small_rest(response):
            try:
                with self.timeouts.deadline():
                    for _ in response.iter_raw():
                        pass
            except (httpx.HTTPError, httpx.StreamError):
                pass  # the connection is dropped by close(): nothing lost but a reuse
        response.close()

    def _authorized(
        self, method: str, url: httpx.URL, op: Operation, headers: dict[str, str], body: BodyFactory | None
    ) -> httpx.Response:
        auth = self.auth_for(op)
        sent = auth.authorization(op.host, op.scopes)
        response = self._follow(method, url, op, headers, body, sent)
        challenge = response.headers.get("www-authenticate")
        # Only the registry's own challenge counts: one from a host it redirected to would
        # have us send the registry's credentials to that host's token realm.
        if response.status_code != 401 or not challenge or not _same_origin(response.url, op):
            return response
        retry_with = auth.on_challenge(op.host, challenge, op.scopes, sent)
        if retry_with is None:
            return response  # unread: error() reports its body
        self.release(response)
        return self._follow(method, url, op, headers, body, retry_with)

    def _follow(
        self,
        method: str,
        url: httpx.URL,
        op: Operation,
        headers: dict[str, str],
        body: BodyFactory | None,
        authorization: str | None,
    ) -> httpx.Response:
        """Send, following redirects; ``Authorization`` goes to the registry's own origin only."""
        for _ in range(_MAX_REDIRECTS + 1):
            hop_headers = dict(headers)
            if authorization and _same_origin(url, op):
                hop_headers["Authorization"] = authorization
            request = self.http.build_request(method, url, headers=hop_headers, content=body() if body else None)
            with self.timeouts.deadline():
                response = self.http.send(request, stream=True)
            self._log_warnings(response, op)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                return response
            self.release(response)
            url = response.url.join(location)
            if response.status_code == 303:
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
        raise NetworkError(f"registry {op.host} redirected {op.verb} {op.noun} more than {_MAX_REDIRECTS} times")

    @staticmethod
    def _log_warnings(response: httpx.Response, op: Operation) -> None:
        for value in response.headers.get_list("warning"):
            match = _WARNING_RE.match(value)
            if match:
                logger.warning("registry %s: %s", op.host, match.group(1))

    def _transport_failure(self, exc: httpx.TransportError, op: Operation) -> Exception:
        """A connection-level failure as an error with a hint; retryable ones wrapped."""
        text = str(exc)
        host = op.host
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return NetworkError(f"certificate verify failed for {host}: pass --ca-file or --insecure")
        if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text or "wrong version number" in text:
            return NetworkError(f"TLS handshake with {host} failed: if it serves plain http, pass --plain-http")
        limits = "--timeout / OCIMODEL_TIMEOUT sets the limit"
        if isinstance(slowness(exc), ResponseTooSlow):
            error = NetworkError(
                f"registry {host} did not answer {op.verb} {op.noun} within {self.timeouts.response:g} s "
                f"(no complete response headers; {limits})"
            )
        elif isinstance(exc, httpx.ConnectTimeout):
            error = NetworkError(
                f"cannot connect to registry {host} within {self.timeouts.connect:g} s ({op.verb} {op.noun}): "
                f"check the host, port and network ({limits})"
            )
        elif isinstance(exc, httpx.TimeoutException):
            error = NetworkError(f"timed out talking to registry {host} ({op.verb} {op.noun}; {limits}); try again later")
        elif isinstance(exc, httpx.ConnectError):
            error = NetworkError(f"cannot connect to registry {host} ({text}): check the host, port and network")
        else:
            error = NetworkError(
                f"connection to registry {host} failed during {op.verb} {op.noun}: {type(exc).__name__}: {text}"
            )
        return RetryableFailure(error)

    # -- reading answers -------------------------------------------------------------------

    def read_bounded(self, response: httpx.Response, limit: int, op: Operation) -> bytes:
        """The whole (decoded) body, refusing to buffer more than ``limit`` bytes."""
        body = bytearray()
        try:
            with self.timeouts.deadline():
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > limit:
                        raise SchemaError(f"{op.noun} from {op.host} is over the {limit}-byte limit; refusing it")
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException):
                raise NetworkError(
                    f"registry {op.host} sent {op.noun} too slowly: not complete within {self.timeouts.response:g} s "
                    "(--timeout sets the limit)"
                ) from None
            raise NetworkError(f"connection to {op.host} lost reading {op.noun} ({type(exc).__name__})") from None
        return bytes(body)

    def error(self, response: httpx.Response, op: Operation) -> RegistryError:
        """The error for an unexpected answer: one line naming the operation and the fix."""
        status, host = response.status_code, op.host
        try:
            body = b"" if response.request.method == "HEAD" else self.read_bounded(response, MAX_ERROR_BODY, op)
        except OcimodelError:
            body = b""
        code, detail = _error_detail(body)
        suffix = f": {detail}" if detail else ""
        if status == 401:
            auth = self.auth_for(op)
            if not auth.has_credentials(host):
                return AuthError(f"authentication required for {host}: {auth.login_hint(host)}", status, code)
            if response.headers.get("www-authenticate", "").lower().startswith("basic"):
                return AuthError(f"wrong username or password for {host}", status, code)
            return AuthError(
                f"registry {host} denied {op.verb} {op.noun}{suffix} (401): check the account's access "
                f"or run 'ocimodel login {host}' again",
                status,
                code,
            )
        if status == 403:
            return AuthError(
                f"registry {host} forbids {op.verb} {op.noun}{suffix} (403): check the account's permissions",
                status,
                code,
            )
        if status == 404:
            return NotFoundError(f"{op.noun} not found on registry {host}{suffix}", status, code)
        if status == 400 and b"HTTP request to an HTTPS server" in body:
            return RegistryError(f"registry {host} speaks https: drop --plain-http / {PLAIN_HTTP_ENV}", status)
        return RegistryError(f"registry {host} refused {op.verb} {op.noun}{suffix} ({status})", status, code, f"registry {host}")
