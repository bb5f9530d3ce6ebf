"""The CLI as a user runs it: a real process, real registry, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from process_helpers import read_until_closed, run


@pytest.fixture
def cli_env(docker_config) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}


def test_push_inspect_tags_pull(registry, repo, tmp_path, cli_env):
    model = tmp_path / "m"
    (model / "d").mkdir(parents=True)
    (model / "d" / "w.bin").write_bytes(os.urandom(5000))
    (model / "README.md").write_text("hi")
    ref = f"{registry.host}/{repo}:1.0"
    pushed = run("push", str(model), ref, "--metric", "acc=0.5", "--label", "team=ml", "--author", "Ann",
                 "--license", "MIT", "--no-git", env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71

    info = run("inspect", ref, "--json", env=cli_env)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["digest"] == digest and data["config"]["metrics"] == {"acc": 0.5}
    assert sorted(f["path"] for f in data["files"]) == ["README.md", "d/w.bin"]
    human = run("inspect", ref, env=cli_env)
    assert digest in human.stdout and "d/w.bin" in human.stdout and "acc=0.5" in human.stdout

    listed = run("tags", f"{registry.host}/{repo}", env=cli_env)
    assert listed.stdout.split() == ["1.0"]
    assert json.loads(run("tags", f"{registry.host}/{repo}", "--json", env=cli_env).stdout) == ["1.0"]

    # Positional arguments from the environment, as an init container would set them.
    dest = tmp_path / "out"
    pulled = run("pull", "--json", env={**cli_env, "OCIMODEL_REF": ref, "OCIMODEL_DEST": str(dest)})
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == digest
    assert (dest / "d" / "w.bin").read_bytes() == (model / "d" / "w.bin").read_bytes()


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["pull", "UPPER/case:x", "/tmp/ocimodel-never"], 2, "must be lowercase"),
        (["push", "/nonexistent/model", "localhost:1/x:y"], 2, "does not exist"),
        (["pull", "{host}/{repo}:missing", "{tmp}/out"], 4, "not found"),
        (["pull", "127.0.0.1:1/x:y", "{tmp}/out"], 7, "127.0.0.1:1"),
        (["push", "{tmp}", "{host}/{repo}:x", "--metric", "novalue"], 2, "KEY=VALUE"),
    ],
)
def test_expected_failures_one_line_no_traceback(registry, repo, tmp_path, cli_env, args, code, fragment):
    args = [a.format(host=registry.host, repo=repo, tmp=tmp_path) for a in args]
    (tmp_path / "f").write_text("x")
    out = run(*args, env=cli_env)
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], out.stderr
    assert not (tmp_path / "out").exists()


def test_integrity_failure_exit_code(registry, repo, tmp_path, cli_env):
    src = tmp_path / "w"
    src.write_bytes(os.urandom(10_000))
    digest = run("push", str(src), f"{registry.host}/{repo}:1", "--no-git", env=cli_env).stdout.strip()
    from ocimodel.api import Client
    from ocimodel.registry.connection import Connection

    with Client(Connection(plain_http=True)) as c:
        layer_digest = c.inspect(f"{registry.host}/{repo}@{digest}").files[0].digest
    registry.blob_path(layer_digest).write_bytes(b"tampered" * 1250)
    out = run("pull", f"{registry.host}/{repo}:1", str(tmp_path / "out"), env=cli_env)
    assert out.returncode == 6 and "digest mismatch" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_login_tls_basic_then_push_pull_logout(tls_basic_registry, repo, tmp_path, docker_config):
    reg = tls_basic_registry
    env = {"DOCKER_CONFIG": str(docker_config), "OCIMODEL_CA_FILE": str(reg.ca_file)}
    bad = run("login", reg.host, "-u", reg.username, "--password-stdin", env=env, stdin="wrong-password\n")
    assert bad.returncode == 3 and "wrong-password" not in bad.stderr + bad.stdout
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert not (docker_config / "config.json").exists()

    ok = run("login", reg.host, "-u", reg.username, "--password-stdin", env=env, stdin=reg.password + "\n")
    assert ok.returncode == 0, ok.stderr
    stored = json.loads((docker_config / "config.json").read_text())
    assert reg.host in stored["auths"]
    assert oct((docker_config / "config.json").stat().st_mode & 0o777) == "0o600"

    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(4096))
    ref = f"{reg.host}/{repo}:1"
    assert run("push", str(src), ref, "--no-git", env=env).returncode == 0
    no_ca = run("pull", ref, str(tmp_path / "x"), env={"DOCKER_CONFIG": str(docker_config)})
    assert no_ca.returncode == 7 and "--ca-file" in no_ca.stderr
    insecure = run("pull", ref, str(tmp_path / "y"), "--insecure", env={"DOCKER_CONFIG": str(docker_config)})
    assert insecure.returncode == 0, insecure.stderr
    assert (tmp_path / "y" / "w.bin").read_bytes() == src.read_bytes()

    out = run("logout", reg.host, env=env)
    assert out.returncode == 0
    denied = run("pull", ref, str(tmp_path / "z"), env=env)
    assert denied.returncode == 3 and "ocimodel login" in denied.stderr


def _imported_by(*args: str, env: dict[str, str]) -> set[str]:
    """The modules ``ocimodel ARGS`` imports (it must succeed)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "ocimodel", *args], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


def test_plain_push_and_pull_import_only_what_they_use(registry, repo, tmp_path, cli_env):
    """A push or pull without signing, stages or TLS stays quick to start (measured: 0.21 s for
    a 1 KB model): no Sigstore, cryptography, stages, nor pydantic (typer 0.29+ coerces every
    option through it, +0.13 s; pinned below). Checked by imports, not a timer; the lazily
    loaded CA bundle is checked in test_auth."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(os.urandom(1000))
    ref = f"{registry.host}/{repo}:1"
    heavy = {"sigstore", "cryptography", "ocimodel.lifecycle", "ocimodel.provenance", "pydantic"}
    pushed = _imported_by("push", str(tmp_path / "m"), ref, "--no-git", env=cli_env)
    pulled = _imported_by("pull", ref, str(tmp_path / "out"), env=cli_env)
    assert not heavy & pushed, heavy & pushed
    assert not heavy & pulled, heavy & pulled


def test_progress_bars_on_a_terminal_only(registry, repo, tmp_path, cli_env):
    """rich progress bars when stderr is a terminal (a pty here); nothing of them otherwise."""
    import pty

    src = tmp_path / "w.raw"
    src.write_bytes(os.urandom(64 * 1024 * 1024))
    args = [sys.executable, "-m", "ocimodel", "push", str(src), f"{registry.host}/{repo}:tty", "--no-git", "--no-cache"]
    env = {**os.environ, **cli_env, "COLUMNS": "100", "TERM": "xterm"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = read_until_closed(master)
    proc.wait(timeout=120)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "w.raw" in text and "━" in text and "MiB" in text  # a bar with the file's name and size (binary units)

    plain = run("push", str(src), f"{registry.host}/{repo}:notty", "--no-git", "--no-cache", env=cli_env)
    assert plain.returncode == 0 and "━" not in plain.stderr and plain.stderr.count("\n") == 1
