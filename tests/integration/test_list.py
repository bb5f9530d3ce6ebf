"""``ocimodel list REGISTRY[/PREFIX]`` against the real registry, and against registries that
close their catalog or send hostile pages (small local servers)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.registry_fixtures import LocalServer, RecordedRequest, Reply


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.fixture
def env(docker_config) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_KEY_PASSWORD": "pw",
            "GITHUB_ACTIONS": "", "GITLAB_CI": "", "OCIMODEL_USERNAME": "", "OCIMODEL_PASSWORD": ""}


def push(env, ref: str, tmp_path, epoch: int, *extra: str) -> str:
    """Push a small model in-process (quicker than the CLI; the CLI is what ``list`` tests)."""
    import ocimodel

    src = tmp_path / f"model-{abs(hash(ref))}.bin"
    src.write_bytes(os.urandom(1024))
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        connection = ocimodel.Connection(plain_http=env.get("OCIMODEL_PLAIN_HTTP") == "1", ca_file=env.get("OCIMODEL_CA_FILE"),
                                         username=env.get("OCIMODEL_USERNAME") or None,
                                         password=env.get("OCIMODEL_PASSWORD") or None)
        return ocimodel.push(src, ref, connection=connection, code=False).digest
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH")
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def one_error_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def test_list_finds_models_with_stages_latest_and_signatures(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    # "2.0" was created before "1.0": latest follows the created time, not the tag order.
    v2 = push(env, f"{base}/iris:2.0", tmp_path, 1_000)
    v1 = push(env, f"{base}/iris:1.0", tmp_path, 2_000)
    churn = push(env, f"{base}/churn:0.1", tmp_path, 1_000)
    assert run("promote", f"{base}/iris:2.0", "prod", "--actor", "ci", env=env).returncode == 0
    assert run("keygen", "--output-prefix", str(tmp_path / "k"), env=env).returncode == 0
    assert run("sign", f"{base}/iris:1.0", "--key", str(tmp_path / "k.key"), env=env).returncode == 0

    out = run("list", base, "--json", env=env)
    assert out.returncode == 0, out.stderr
    listed = {r["repository"]: r for r in json.loads(out.stdout)}
    assert sorted(listed) == [f"{base}/churn", f"{base}/iris"]
    iris = listed[f"{base}/iris"]
    assert (iris["latest"]["tag"], iris["latest"]["digest"]) == ("1.0", v1)
    assert iris["latest"]["signature"]["status"] == "signed"  # attached, not verified: no policy
    assert iris["stages"]["prod"]["digest"] == v2 and iris["stages"]["prod"]["signature"]["status"] == "unsigned"
    assert iris["models"] == 2 and iris["error"] is None
    assert listed[f"{base}/churn"]["latest"]["digest"] == churn and listed[f"{base}/churn"]["stages"] == {}

    text = run("list", base, env=env)
    assert text.returncode == 0 and f"{base}/iris  latest 1.0 {v1[:19]} [signed]" in text.stdout
    assert f"prod={v2[:19]} [unsigned]" in text.stdout

    # A prefix is whole path components: "iri" names neither iris nor irises.
    narrowed = run("list", f"{base}/iris", "--json", env=env)
    assert [r["repository"] for r in json.loads(narrowed.stdout)] == [f"{base}/iris"]
    assert json.loads(run("list", f"{base}/iri", "--json", env=env).stdout) == []

    # With a policy: the signed latest is verified, the unsigned stage is not: exit 5.
    checked = run("list", f"{base}/iris", "--key", str(tmp_path / "k.pub"), "--json", env=env)
    assert checked.returncode == 5, checked.stderr
    iris = json.loads(checked.stdout)[0]
    assert iris["latest"]["signature"]["status"] == "verified"
    assert iris["stages"]["prod"]["signature"]["status"] == "not-verified"
    assert "no signature found" in iris["stages"]["prod"]["signature"]["detail"]
    assert run("sign", f"{base}/iris:2.0", "--key", str(tmp_path / "k.key"), env=env).returncode == 0
    assert run("list", f"{base}/iris", "--key", str(tmp_path / "k.pub"), env=env).returncode == 0


def test_list_sends_given_credentials_to_a_bare_registry_host(tls_basic_registry, repo, tmp_path, docker_config):
    """``list 127.0.0.1:PORT`` names a registry, not the Docker Hub image ``127.0.0.1`` tag PORT:
    --username/--password must reach it."""
    reg = tls_basic_registry
    env = {"DOCKER_CONFIG": str(docker_config), "OCIMODEL_CA_FILE": str(reg.ca_file), "OCIMODEL_PLAIN_HTTP": "",
           "OCIMODEL_USERNAME": reg.username, "OCIMODEL_PASSWORD": reg.password, "GITHUB_ACTIONS": "", "GITLAB_CI": ""}
    digest = push(env, f"{reg.host}/{repo}/m:1", tmp_path, 1_000)
    out = run("list", reg.host, "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert {r["repository"]: r["latest"]["digest"] for r in json.loads(out.stdout)}[f"{reg.host}/{repo}/m"] == digest
    anonymous = run("list", reg.host, env={**env, "OCIMODEL_USERNAME": "", "OCIMODEL_PASSWORD": ""})
    assert anonymous.returncode == 3 and reg.host in one_error_line(anonymous)


def _catalog_server(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> LocalServer:
    return LocalServer(lambda request: Reply(status, headers or {"Content-Type": "application/json"}, body))


@pytest.mark.parametrize("status, body, headers, code, words", [
    (404, b'{"errors":[{"code":"NOT_FOUND"}]}', {}, 4, "has no catalog API"),
    (405, b"", {}, 4, "has no catalog API"),
    (400, b'{"errors":[{"code":"UNSUPPORTED","message":"catalog disabled"}]}', {}, 4, "UNSUPPORTED"),
    (401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": 'Basic realm="r"'}, 3, "anonymous users"),
    (403, b'{"errors":[{"code":"DENIED"}]}', {}, 3, "does not let"),
])
def test_a_closed_catalog_is_one_line_and_its_exit_code(status, body, headers, code, words, env):
    with _catalog_server(status, body, headers) as server:
        out = run("list", server.host, env=env)
    assert out.returncode == code
    line = one_error_line(out)
    assert words in line and server.host in line and "ocimodel tags" in line


def test_a_bad_registry_argument_is_a_usage_error(env):
    for bad in ("models", "localhost:5000/Bad Name", ""):
        out = run("list", bad, env=env)
        assert out.returncode == 2 and "REGISTRY[/PREFIX]" in one_error_line(out) or "invalid" in out.stderr


@pytest.mark.parametrize("body, words", [
    (b"x" * (1024 * 1024 + 10), "limit"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"[" * 100_000, "not JSON"),
    (b'{"repositories": "a"}', "list of repository names"),
    (b'{"repositories": [1, 2]}', "list of repository names"),
    (b'{"repositories": {"a": 1}}', "list of repository names"),
    (b'["a"]', "list of repository names"),
    (b'{"repositories": ["ok", "../etc"]}', "not a repository name"),
    (b'{"repositories": ["a\\n--> b"]}', "not a repository name"),
])
def test_hostile_catalog_pages_are_refused_in_one_line(body, words, env):
    with _catalog_server(200, body) as server:
        out = run("list", server.host, env=env)
    assert out.returncode == 6, out.stderr
    assert words in one_error_line(out)


def test_endless_or_looping_pagination_is_refused(env):
    counter = iter(range(10**9))

    def endless(request: RecordedRequest) -> Reply:
        return Reply(200, {"Link": f'</v2/_catalog?n=1000&last=r{next(counter)}>; rel="next"'}, b'{"repositories":[]}')

    with LocalServer(endless) as server:
        out = run("list", server.host, env=env)
        pages = len(server.requests)
    assert out.returncode == 1 and "past 100 pages" in one_error_line(out)
    assert pages == 100

    with _catalog_server(200, b'{"repositories":[]}', {"Link": '</v2/_catalog?n=1000>; rel="next"'}) as server:
        out = run("list", server.host, env=env)
        assert len(server.requests) == 1
    assert out.returncode == 6 and "already read" in one_error_line(out)


def test_a_next_link_to_another_host_gets_nothing_not_even_credentials(env):
    other = LocalServer(lambda request: Reply(200, {}, b'{"repositories":["stolen"]}')).start()
    seen: list[str | None] = []

    def first(request: RecordedRequest) -> Reply:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") is None:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})
        return Reply(200, {"Link": f'<{other.url}/v2/_catalog?last=a>; rel="next"'}, b'{"repositories":["a"]}')

    try:
        with LocalServer(first) as server:
            out = run("list", server.host, "--username", "u", "--password", "p", env=env)
    finally:
        other.stop()
    assert seen[-1] == "Basic " + base64.b64encode(b"u:p").decode()  # the registry got them
    assert out.returncode == 6 and "another host" in one_error_line(out)
    assert other.requests == []


def test_repositories_are_read_a_bounded_number_at_a_time(env):
    names = [f"r{i:02d}" for i in range(12)]
    lock = threading.Lock()
    inflight, peak = [0], [0]

    def handler(request: RecordedRequest) -> Reply:
        if request.path.startswith("/v2/_catalog"):
            return Reply(200, {"Content-Type": "application/json"}, json.dumps({"repositories": names}).encode())
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(0.2)  # long enough for the others to pile up if nothing bounds them
        with lock:
            inflight[0] -= 1
        return Reply(200, {"Content-Type": "application/json"}, b'{"name":"x","tags":[]}')

    with LocalServer(handler) as server:
        out = run("list", server.host, env=env)
        tag_lists = [r for r in server.requests if r.path.endswith("/tags/list") or "/tags/list?" in r.path]
    assert out.returncode == 0, out.stderr
    assert "no ocimodel models" in out.stderr
    assert len(tag_lists) == 12
    assert 1 <= peak[0] <= 4
