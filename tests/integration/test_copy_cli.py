"""``ocimodel copy`` as a user runs it: two registries with different options and credentials
for each side, what it prints, and credentials that must not cross to the other side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from process_helpers import run, run_with_rusage
from registry_fixtures import LocalServer, RecordedRequest, Reply

from ocimodel.api import Client
from ocimodel.registry.connection import Connection


@pytest.fixture
def cli_env(docker_config) -> dict[str, str]:
    return {"DOCKER_CONFIG": str(docker_config)}


def tls_side(server, side: str) -> list[str]:
    return [f"--{side}-ca-file", str(server.ca_file), f"--{side}-username", server.username,
            f"--{side}-password", server.password]


@pytest.fixture
def tls_model(tls_basic_registry, repo, docker_config, tmp_path) -> tuple[str, str]:
    """A model in the TLS + Basic registry: (reference, digest)."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(4000))
    connection = Connection(ca_file=tls_basic_registry.ca_file, username=tls_basic_registry.username,
                            password=tls_basic_registry.password, credentials_for=tls_basic_registry.host)
    ref = f"{tls_basic_registry.host}/{repo}:1.0"
    with Client(connection) as client:
        return ref, client.push(model, ref, code=False).digest


def test_tls_with_basic_auth_to_plain_and_back(registry, tls_basic_registry, tls_model, repo, cli_env):
    ref, digest = tls_model
    plain = f"{registry.host}/{repo}:1.0"
    out = run("copy", ref, plain, *tls_side(tls_basic_registry, "from"), "--to-plain-http", "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["digest"] == digest and report["tags"] == ["1.0"]
    assert report["blobs"]["copied"] == 2 and report["blobs"]["skipped"] == 0  # the file and the config
    assert {i["action"] for i in report["items"]} == {"copied"}

    back = f"{tls_basic_registry.host}/{repo}-back:2.0"
    env = {**cli_env, "OCIMODEL_TO_PASSWORD": tls_basic_registry.password}
    out = run("copy", plain, back, "--from-plain-http", "--to-ca-file", str(tls_basic_registry.ca_file),
              "--to-username", tls_basic_registry.username, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == digest
    assert "Copied" in out.stderr and "tags 2.0" in out.stderr


def test_credentials_for_one_side_are_not_used_for_the_other(registry, tls_basic_registry, tls_model, repo, cli_env):
    ref, _ = tls_model
    plain = f"{registry.host}/{repo}:1.0"
    assert run("copy", ref, plain, *tls_side(tls_basic_registry, "from"), "--to-plain-http", env=cli_env).returncode == 0
    # Credentials given for the source (a plain registry that needs none) do not reach the destination.
    out = run("copy", plain, f"{tls_basic_registry.host}/{repo}-x:1.0", "--from-plain-http",
              "--from-username", tls_basic_registry.username, "--from-password", tls_basic_registry.password,
              "--to-ca-file", str(tls_basic_registry.ca_file), env=cli_env)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("error: ") and tls_basic_registry.host in out.stderr


def test_a_destination_never_sees_the_source_credentials(tls_basic_registry, tls_model, cli_env):
    ref, _ = tls_model
    seen: list[RecordedRequest] = []

    def challenge(request: RecordedRequest) -> Reply:
        seen.append(request)
        return Reply(401, {"WWW-Authenticate": 'Basic realm="x"', "Content-Type": "application/json"},
                     b'{"errors":[{"code":"UNAUTHORIZED","message":"who?"}]}')

    with LocalServer(challenge) as other:
        out = run("copy", ref, f"{other.host}/stolen/m:1.0", *tls_side(tls_basic_registry, "from"),
                  "--to-plain-http", env=cli_env)
    assert out.returncode == 3, out.stderr
    assert seen and not [r for r in seen if "authorization" in r.headers]


def test_one_set_of_environment_credentials_between_two_registries_is_refused(
    registry, tls_basic_registry, tls_model, repo, cli_env
):
    ref, _ = tls_model
    env = {**cli_env, "OCIMODEL_USERNAME": tls_basic_registry.username, "OCIMODEL_PASSWORD": tls_basic_registry.password}
    out = run("copy", ref, f"{registry.host}/{repo}-env:1.0", "--from-ca-file", str(tls_basic_registry.ca_file),
              "--to-plain-http", env=env)
    assert out.returncode == 2, out.stderr
    assert "two registries" in out.stderr and "--from-username" in out.stderr
    # Within one registry they are unambiguous: both sides are that registry.
    out = run("copy", ref, f"{tls_basic_registry.host}/{repo}-env:1.0", "--ca-file", str(tls_basic_registry.ca_file),
              "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["blobs"]["mounted"] == 2


def test_usage_errors(registry, repo, cli_env, tmp_path: Path):
    out = run("copy", f"{registry.host}/{repo}:missing", f"{registry.host}/{repo}-y:1.0", "--plain-http", env=cli_env)
    assert out.returncode == 4 and out.stderr.startswith("error: "), out.stderr
    out = run("copy", "UPPER/x:1", f"{registry.host}/{repo}:1.0", "--plain-http", env=cli_env)
    assert out.returncode == 2 and "lowercase" in out.stderr


@pytest.mark.slow
def test_a_large_copy_streams_in_flat_memory(registry, tls_basic_registry, repo, tmp_path, docker_config):
    size = 512 * 1024**2 + 12345  # far beyond what the pieces in flight hold
    model = tmp_path / "big.bin"
    with open(model, "wb") as f:  # random head and tail around a sparse middle
        f.write(os.urandom(4 << 20))
        f.seek(size - (4 << 20))
        f.write(os.urandom(4 << 20))
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    ref = f"{registry.host}/{repo}:big"
    code, _, err, _, _ = run_with_rusage(["push", str(model), ref, "--no-git", "--plain-http"], env)
    assert code == 0, err
    args = ["copy", ref, f"{tls_basic_registry.host}/{repo}:big", "--from-plain-http", "--json",
            *tls_side(tls_basic_registry, "to")]
    code, out, err, rss, _ = run_with_rusage(args, env)
    assert code == 0, err
    assert json.loads(out)["blobs"]["copiedBytes"] > size
    assert rss < 150 * 1024, f"copy peaked at {rss // 1024} MiB"
