"""Real registries for tests: the distribution 2.8.2 binary, plus tiny local HTTP servers.

Nothing here mocks the registry. ``RegistryServer`` runs ``docker-registry serve`` on a free
127.0.0.1 port; ``LocalServer`` is a scripted ``http.server`` used for the token endpoint and
for behaviour distribution cannot show (redirects to storage, 429 with Retry-After).

Session fixtures: ``registry`` (plain http, anonymous), ``tls_basic_registry`` (TLS with a
test CA + htpasswd Basic auth), ``token_registry`` (Bearer tokens from a local token server),
``proxy_registry`` (a pull-through cache of ``registry``: a real mirror).
Function fixtures: ``repo`` (a fresh repository name), ``docker_config`` (an empty
``DOCKER_CONFIG``, no ``OCIMODEL_*`` credentials), ``client`` (RegistryClient for ``registry``).
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.registry.retry import RetryPolicy

REGISTRY_BINARY = os.environ.get("OCIMODEL_TEST_REGISTRY_BINARY", "/usr/bin/docker-registry")
STARTUP_TIMEOUT = 20.0
TOKEN_SERVICE = "ocimodel-test-registry"
TOKEN_ISSUER = "ocimodel-test-token-server"

if TYPE_CHECKING:
    from faultproxy import FaultProxy

__all__ = [
    "LocalServer",
    "RecordedRequest",
    "RegistryServer",
    "Reply",
    "TestCA",
    "TokenRegistry",
    "TokenServer",
    "client",
    "docker_config",
    "fast_retry",
    "fault_proxy",
    "proxy_client",
    "proxy_registry",
    "retry_sleeps",
    "registry",
    "repo",
    "tls_basic_registry",
    "token_registry",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (tiny race accepted: tests only)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when pytest dies, even by SIGKILL, so no registry is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the fixtures' own stop() still runs on normal exits


def fast_retry(sleeps: list[float] | None = None) -> RetryPolicy:
    """A RetryPolicy that records its sleeps instead of sleeping."""
    record = sleeps if sleeps is not None else []
    return RetryPolicy(sleep=record.append, jitter=lambda: 0.0)


# -- a test certificate authority --------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class TestCA:
    """A CA and one server certificate for 127.0.0.1 / localhost, written as PEM files."""

    __test__ = False  # not a test class, despite the name

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path) -> "TestCA":
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("ocimodel test CA", ca_key, None, ca_key, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        server_cert = _certificate("127.0.0.1", server_key, ca_cert, ca_key, ca=False, san=san)
        ca = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        ca.ca_file.write_bytes(_pem(ca_cert))
        ca.cert_file.write_bytes(_pem(server_cert))
        ca.key_file.write_bytes(_key_pem(server_key))
        return ca


# -- the registry ------------------------------------------------------------------------------


class RegistryServer:
    """``docker-registry serve`` on a free 127.0.0.1 port with its own storage directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        auth: dict[str, Any] | None = None,
        tls: TestCA | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir = workdir / "storage"
        self.log_path = workdir / "registry.log"
        self.config_path = workdir / "config.yml"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._auth = auth
        self._extra = extra or {}
        self._process: subprocess.Popen[bytes] | None = None
        # Set by the fixtures that configure TLS or auth.
        self.ca_file: Path | None = tls.ca_file if tls else None
        self.username: str | None = None
        self.password: str | None = None

    def _config(self) -> dict[str, Any]:
        http: dict[str, Any] = {"addr": self.host, "secret": "ocimodel-tests"}
        if self.tls:
            http["tls"] = {"certificate": str(self.tls.cert_file), "key": str(self.tls.key_file)}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage_dir)}, "delete": {"enabled": True}},
            "http": http,
        }
        if self._auth:
            config["auth"] = self._auth
        config.update(self._extra)
        return config

    def start(self) -> "RegistryServer":
        """Start the binary and wait until ``/v2/`` answers (any status)."""
        # YAML is a superset of JSON, so no YAML library is needed to write the config.
        self.config_path.write_text(json.dumps(self._config(), indent=2))
        log = open(self.log_path, "ab")
        try:
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(verify=False, timeout=1.0) as probe:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    break
                try:
                    probe.get(f"{self.url}/v2/")
                    return
                except httpx.TransportError:
                    time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"registry on {self.host} did not start; log tail:\n{tail}")

    def stop(self) -> None:
        """Stop the process (idempotent)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and storage."""
        self.stop()
        self.start()

    def wait_cached(self, digest: str, timeout: float = 10.0) -> Path:
        """For a proxy: wait until it has stored ``digest`` (it caches in the background)."""
        path = self.blob_path(digest)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.host} did not cache {digest} within {timeout}s")
            time.sleep(0.05)
        return path

    def blob_path(self, digest: str) -> Path:
        """The data file of a blob (manifests are blobs too) in the storage directory."""
        algorithm, hexdigest = digest.split(":", 1)
        return (
            self.storage_dir / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"
        )

    def ref(self, repository: str, tag: str | None = "latest", digest: str | None = None) -> Reference:
        """A Reference into this registry."""
        return Reference(registry=self.host, repository=repository, tag=tag, digest=digest)


# -- scripted local HTTP servers ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request a LocalServer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """What a LocalServer handler answers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes


Handler = Callable[[RecordedRequest], Reply]


class LocalServer:
    """A threaded ``http.server`` on ``host`` answering via ``handler``; records requests."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self.host = f"{host}:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: it refused a reply, or was done with the connection

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(request)
                reply = server.handler(request)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.send_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_HEAD = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass  # keep pytest output clean

        return _Handler

    def start(self) -> "LocalServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the token server --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """Issues ES256 JWTs the registry accepts, for one user/password or refresh token.

    Anonymous requests get a token granting nothing (as Docker Hub does); wrong credentials
    get 401. ``bad_tokens = N`` makes the next N tokens unacceptable to the registry (wrong
    audience), to exercise "refused token → fetch a new one". ``allow_post = False`` answers
    the OAuth2 POST with 404 so clients must fall back to GET.
    """

    def __init__(self, workdir: Path, username: str, password: str, refresh_token: str) -> None:
        self.username, self.password, self.refresh_token = username, password, refresh_token
        self.expires_in = 300
        self.bad_tokens = 0
        self.allow_post = True
        self.token_requests = 0
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate("ocimodel test token signer", self._key, None, self._key, ca=True)
        self.cert_file = workdir / "token-signer.pem"
        self.cert_file.write_bytes(_pem(cert))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self._lock = threading.Lock()
        self.server = LocalServer(self._handle)
        self.realm = f"{self.server.url}/token"

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.token_requests += 1
        url = urlsplit(request.path)
        authorised: bool | None
        if url.path != "/token":
            return Reply(404)
        if request.method == "POST":
            if not self.allow_post:
                return Reply(404)
            form = parse_qs(request.body.decode())
            authorised = form.get("refresh_token") == [self.refresh_token]
            params = form
            scopes = " ".join(form.get("scope", [])).split()
            if not authorised:
                return Reply(401, body=b'{"details":"bad refresh token"}')
        else:
            params = parse_qs(url.query)
            scopes = params.get("scope", [])
            authorised = self._check_basic(request.headers.get("authorization"))
            if authorised is None:
                return Reply(401, body=b'{"details":"wrong credentials"}')
        token = self._token(scopes if authorised else [], params.get("service", [TOKEN_SERVICE])[0])
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.expires_in})
        return Reply(200, {"Content-Type": "application/json"}, body.encode())

    def _check_basic(self, header: str | None) -> bool | None:
        """True: right credentials; False: anonymous; None: wrong credentials."""
        if not header:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        if (user, password) == (self.username, self.password):
            return True
        if password == self.refresh_token:  # GET fallback for identity tokens
            return True
        return None

    def _token(self, scopes: list[str], service: str) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        with self._lock:
            audience = "someone-else" if self.bad_tokens > 0 else service
            self.bad_tokens = max(0, self.bad_tokens - 1)
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "aud": audience,
            "sub": self.username,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# -- fixtures ----------------------------------------------------------------------------------


def _require_binary() -> None:
    if not shutil.which(REGISTRY_BINARY):
        pytest.fail(f"{REGISTRY_BINARY} not installed: run 'make test' (it installs it) or apt-get install docker-registry")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-http, anonymous distribution registry for the whole session."""
    _require_binary()
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


def start_proxy(workdir: Path, remote: RegistryServer) -> RegistryServer:
    """A distribution registry in proxy mode: a pull-through cache of ``remote`` (read-only)."""
    return RegistryServer(workdir, extra={"proxy": {"remoteurl": remote.url}}).start()


@pytest.fixture(scope="session")
def proxy_registry(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A pull-through cache (mirror) of the session ``registry``, plain http, anonymous."""
    _require_binary()
    server = start_proxy(tmp_path_factory.mktemp("proxy-registry"), registry)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """TLS (test CA in ``.ca_file``) + htpasswd Basic auth (``.username`` / ``.password``)."""
    _require_binary()
    workdir = tmp_path_factory.mktemp("tls-basic-registry")
    ca = TestCA.create(workdir / "pki")
    username, password = "alice", "s3cret-Pa55word"
    htpasswd = workdir / "htpasswd"
    # Cost 4: the registry checks the hash on every request; the default cost makes tests slow.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{username}:{hashed}\n")
    auth = {"htpasswd": {"realm": "ocimodel-test", "path": str(htpasswd)}}
    server = RegistryServer(workdir, auth=auth, tls=ca)
    server.username, server.password = username, password
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator["TokenRegistry"]:
    """Bearer-token auth; ``.token_server`` (a TokenServer), ``.username``, ``.password``,
    ``.refresh_token``; ``.token_requests`` reads the token server's request counter."""
    _require_binary()
    workdir = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(workdir, "bob", "t0ken-Pa55word", "refresh-" + uuid.uuid4().hex)
    auth = {
        "token": {
            "realm": tokens.realm,
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(tokens.cert_file),
        }
    }
    server = TokenRegistry(workdir, tokens, auth=auth)
    tokens.server.start()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        tokens.server.stop()


class TokenRegistry(RegistryServer):
    """A RegistryServer whose auth is a TokenServer's bearer tokens."""

    def __init__(self, workdir: Path, tokens: TokenServer, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.token_server = tokens
        self.username, self.password, self.refresh_token = tokens.username, tokens.password, tokens.refresh_token

    @property
    def token_requests(self) -> int:
        """How many requests the token server has answered so far."""
        return self.token_server.token_requests


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses."""
    return f"test/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``DOCKER_CONFIG`` directory; the real ``~/.docker`` and env creds stay unread."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    for name in ("OCIMODEL_USERNAME", "OCIMODEL_PASSWORD", "OCIMODEL_PLAIN_HTTP"):
        monkeypatch.delenv(name, raising=False)
    return directory


@pytest.fixture
def client(registry: RegistryServer, docker_config: Path) -> Iterator[RegistryClient]:
    """A RegistryClient for the plain-http ``registry`` (retries recorded, not slept)."""
    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
        yield c


@pytest.fixture
def fault_proxy(registry: RegistryServer) -> "Iterator[FaultProxy]":
    """A :class:`faultproxy.FaultProxy` in front of ``registry``, to inject faults and see requests."""
    from faultproxy import FaultProxy

    with FaultProxy(registry.host) as p:
        yield p


@pytest.fixture
def retry_sleeps() -> list[float]:
    """The sleeps ``proxy_client``'s retry policy asked for (recorded, not slept)."""
    return []


@pytest.fixture
def proxy_client(fault_proxy: "FaultProxy", docker_config: Path, retry_sleeps: list[float]) -> Iterator[RegistryClient]:
    """A client talking to the registry through ``fault_proxy``; short timeout, retries not slept."""
    with RegistryClient(Connection(plain_http=True, timeout=5.0), credentials=CredentialStore(), retry=fast_retry(retry_sleeps)) as c:
        yield c
