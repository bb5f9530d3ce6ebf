"""Credentials go only where they were given: never to a host named by untrusted content.

``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD`` (and ``--username``/``--password``) are for the
registry of the reference on the command line; the docker config holds credentials for that
registry too. A hostile server on another loopback address (127.0.0.2) or another port records
every ``Authorization`` header it receives while real commands reach it as a lineage parent, a
mirror, or a redirect target. It challenges (Basic or Bearer, its token realm on itself) and
never grants anything, so a client that leaks would show it: it must receive no header at all.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
from registry_fixtures import LocalServer, RecordedRequest, RegistryServer, Reply, TokenRegistry, fast_retry
from test_hostile_registry import Scripted

from ocimodel.errors import AuthError, UsageError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import Credential, CredentialStore

HOSTILE_IP = "127.0.0.2"  # another loopback address: Linux answers on all of 127.0.0.0/8
FAKE_DIGEST = "sha256:" + "ab" * 32


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Hostile:
    """A registry on another host that challenges every request and records what it is sent."""

    def __init__(self, ip: str) -> None:
        self.scheme = "bearer"
        self.server = LocalServer(self._handle, host=ip).start()

    @property
    def host(self) -> str:
        return self.server.host

    def _handle(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/token"):
            return Reply(401, {"Content-Type": "application/json"}, b'{"details":"no token for you"}')
        if self.scheme == "basic":
            challenge = 'Basic realm="hostile"'
        else:
            challenge = f'Bearer realm="{self.server.url}/token",service="hostile",scope="repository:evil/parent:pull"'
        return Reply(401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                     b'{"errors":[{"code":"UNAUTHORIZED","message":"authenticate"}]}')

    def reset(self, scheme: str) -> None:
        self.scheme = scheme
        self.server.requests.clear()

    @property
    def authorizations(self) -> list[str]:
        return [f"{r.method} {r.path}: {r.headers['authorization']}" for r in self.server.requests
                if "authorization" in r.headers]


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-http distribution registry with htpasswd Basic auth (plain http reaches 127.0.0.2 too)."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    username, password = "carol", "c4rol-Pa55word"
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    server = RegistryServer(workdir, auth={"htpasswd": {"realm": "ocimodel-test", "path": str(htpasswd)}})
    server.username, server.password = username, password
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_servers() -> Iterator[dict[str, Hostile]]:
    servers = {"other-ip": Hostile(HOSTILE_IP), "other-port": Hostile("127.0.0.1")}
    yield servers
    for hostile in servers.values():
        hostile.server.stop()


@pytest.fixture(params=["basic", "bearer"])
def hostile(request: pytest.FixtureRequest, hostile_servers: dict[str, Hostile]) -> Hostile:
    """The server on 127.0.0.2, challenging with ``Basic`` or ``Bearer``."""
    server = hostile_servers["other-ip"]
    server.reset(request.param)
    return server


@pytest.fixture
def env(basic_registry: RegistryServer, docker_config: Path) -> dict[str, str]:
    """The registry's credentials twice: in the environment (CI) and in the docker config."""
    reg = basic_registry
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    return {
        "DOCKER_CONFIG": str(docker_config),
        "OCIMODEL_PLAIN_HTTP": "1",
        "OCIMODEL_USERNAME": str(reg.username),
        "OCIMODEL_PASSWORD": str(reg.password),
    }


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    (path / "weights.bin").write_bytes(os.urandom(2048))
    return path


def _push(model: Path, ref: str, env: dict[str, str], *args: str) -> str:
    out = run("push", str(model), ref, "--no-git", *args, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_push_with_a_parent_in_another_registry(basic_registry, hostile, model, repo, env):
    parent = f"{hostile.host}/evil/parent:1"
    out = run("push", str(model), f"{basic_registry.host}/{repo}:1", "--no-git", "--parent", parent, env=env)
    assert out.returncode == 2 and f"cannot resolve parent {parent!r}" in out.stderr, out.stderr
    assert hostile.server.requests, "the parent was looked up"
    assert hostile.authorizations == []


def test_lineage_walk_into_another_registry(basic_registry, hostile, model, repo, env):
    reg = basic_registry.host
    # The same registry's parent resolves with the given credentials: they are used where they belong.
    _push(model, f"{reg}/{repo}:1", env)
    _push(model, f"{reg}/{repo}:2", env, "--parent", f"{reg}/{repo}:1",
          "--parent", f"{hostile.host}/evil/parent@{FAKE_DIGEST}")
    out = run("lineage", f"{reg}/{repo}:2", "--json", env=env)
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    states = {p["reference"].split("@")[0]: p["status"] for p in tree["parents"]}
    assert states == {f"{reg}/{repo}:1": "ok", f"{hostile.host}/evil/parent": "unresolved"}
    assert hostile.server.requests and hostile.authorizations == []


def test_pull_through_a_mirror_on_another_host(basic_registry, hostile, model, repo, env, tmp_path):
    ref = f"{basic_registry.host}/{repo}:1"
    _push(model, ref, env)
    out = run("pull", ref, str(tmp_path / "out"), "--mirror", f"{basic_registry.host}=http://{hostile.host}", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    assert hostile.server.requests and hostile.authorizations == []


def test_username_and_password_flags(basic_registry, hostile, model, repo, docker_config):
    """The flags work like the environment: for the reference's registry, and no other host."""
    reg = basic_registry
    env = {"DOCKER_CONFIG": str(docker_config), "OCIMODEL_PLAIN_HTTP": "1"}
    flags = ["--username", str(reg.username), "--password", str(reg.password)]
    ref = f"{reg.host}/{repo}:1"
    anonymous = run("push", str(model), ref, "--no-git", env=env)
    assert anonymous.returncode == 3 and "ocimodel login" in anonymous.stderr
    _push(model, ref, env, *flags)
    out = run("lineage", ref, *flags, env=env)
    assert out.returncode == 0, out.stderr
    denied = run("inspect", f"{hostile.host}/evil/parent:1", env={**env, "OCIMODEL_USERNAME": "u"})
    assert denied.returncode == 2 and "a username needs a password" in denied.stderr
    out = run("push", str(model), ref, "--no-git", *flags, "--parent", f"{hostile.host}/evil/parent:1", env=env)
    assert out.returncode == 2 and "cannot resolve parent" in out.stderr
    assert hostile.server.requests and hostile.authorizations == []


def test_push_parent_through_the_python_api(basic_registry, hostile, model, repo, env, monkeypatch):
    """``ocimodel.push`` binds OCIMODEL_USERNAME/PASSWORD to its own reference, like the CLI."""
    import ocimodel

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageError, match="cannot resolve parent"):
        ocimodel.push(model, f"{basic_registry.host}/{repo}:1", parents=[f"{hostile.host}/evil/parent:1"], code=False)
    assert hostile.server.requests and hostile.authorizations == []
    result = ocimodel.push(model, f"{basic_registry.host}/{repo}:1", code=False)
    assert result.digest.startswith("sha256:")


# -- redirects --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def front() -> Iterator[LocalServer]:
    with LocalServer(lambda request: Reply(404)) as server:
        yield server


@pytest.mark.parametrize("where", ["other-ip", "other-port"])
@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_registry_redirect_to_another_host(front, hostile_servers, where, scheme, tmp_path, docker_config):
    """A registry answers 307 to a host that challenges: the challenge is not the registry's.

    Neither the registry's Basic credentials nor a token fetched with them may reach that host
    (a 307 to another port of the same IP is another host too).
    """
    hostile = hostile_servers[where]
    hostile.reset(scheme)
    script = Scripted()
    manifest = script.model({"w.bin": b"weights"})
    expected = _basic("dave", "d4ve-pw")

    def handle(request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") != expected:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="front"'})
        if manifest.config.digest in request.path:
            return Reply(307, {"Location": f"http://{hostile.host}/storage/{manifest.config.digest}?sig=x"})
        return script.handle(request)

    front.handler = handle
    front.requests.clear()
    env = {"DOCKER_CONFIG": str(docker_config), "OCIMODEL_PLAIN_HTTP": "1",
           "OCIMODEL_USERNAME": "dave", "OCIMODEL_PASSWORD": "d4ve-pw"}
    out = run("pull", f"{front.host}/evil/model:v1", str(tmp_path / "out"), env=env)
    assert out.returncode == 3, out.stderr
    assert any(r.headers.get("authorization") == expected for r in front.requests)  # given to the registry
    assert hostile.server.requests and hostile.authorizations == []
    assert not (tmp_path / "out").exists()


# -- tokens -----------------------------------------------------------------------------------


def test_token_for_one_registry_never_goes_to_another(token_registry: TokenRegistry, hostile, repo, docker_config):
    """A token cached for the token registry is not offered to a host asking for the same scope."""
    given = CredentialStore().given_to(token_registry.host, Credential(token_registry.username, token_registry.password))
    with RegistryClient(Connection(plain_http=True), credentials=given, retry=fast_retry()) as client:
        client.push_blob_bytes(Reference(token_registry.host, repo), "application/octet-stream", b"x")
        with pytest.raises(AuthError):
            client.head_manifest(Reference(hostile.host, repo, tag="1"))
    assert hostile.server.requests and hostile.authorizations == []


# -- the rule, at the credential store --------------------------------------------------------


def test_python_client_uses_given_credentials_only_for_credentials_for(basic_registry, model, repo, env, monkeypatch):
    from ocimodel.api import Client

    for key in ("OCIMODEL_USERNAME", "OCIMODEL_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("DOCKER_CONFIG", str(Path(env["DOCKER_CONFIG"]) / "empty"))
    ref = f"{basic_registry.host}/{repo}:1"
    with Client(Connection(plain_http=True)) as client, pytest.raises(AuthError, match="credentials_for"):
        client.push(model, ref, code=False)  # the environment names no registry by itself
    with Client(Connection(plain_http=True, credentials_for=basic_registry.host)) as client:
        assert client.push(model, ref, code=False).digest.startswith("sha256:")
    with pytest.raises(UsageError, match="credentials_for"):
        Client(Connection(username="u", password="p"))
