"""``ocimodel pull --deny-unsafe`` and ``--allow-license``: refused models leave nothing in DEST.

Malicious pickles are generated with ``__reduce__`` -> ``os.system("touch MARKER")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from process_helpers import run
from test_safety import SYSTEM, evil_pickle, safetensors, torch_zip


@pytest.fixture
def cli_env(docker_config) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}


def push(path: Path, ref: str, env: dict[str, str], *args: str) -> str:
    out = run("push", str(path), ref, "--no-git", *args, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pull_allow_license(registry, repo, tmp_path, cli_env):
    model = tmp_path / "w.safetensors"
    model.write_bytes(safetensors())
    host = f"{registry.host}/{repo}"
    push(model, f"{host}:dual", cli_env, "--license", "Apache-2.0 OR MIT")
    push(model, f"{host}:gpl", cli_env, "--license", "GPL-3.0-only")
    push(model, f"{host}:both", cli_env, "--license", "MIT AND GPL-3.0-only")
    push(model, f"{host}:none", cli_env)

    ok = run("pull", f"{host}:dual", str(tmp_path / "dual"), "--allow-license", "MIT", env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "dual" / "w.safetensors").read_bytes() == model.read_bytes()

    for tag, fragment in (("gpl", "GPL-3.0-only"), ("both", "gpl-3.0-only"), ("none", "no license")):
        dest = tmp_path / tag
        out = run("pull", f"{host}:{tag}", str(dest), "--allow-license", "MIT", "--allow-license", "Apache-2.0", env=cli_env)
        assert out.returncode == 5, (tag, out.stderr)
        assert fragment in out.stderr and "Traceback" not in out.stderr
        assert not dest.exists()

    from_env = run("pull", f"{host}:gpl", str(tmp_path / "env"), env={**cli_env, "OCIMODEL_ALLOW_LICENSE": "MIT Apache-2.0"})
    assert from_env.returncode == 5 and not (tmp_path / "env").exists()
    allowed = run("pull", f"{host}:gpl", str(tmp_path / "env2"), env={**cli_env, "OCIMODEL_ALLOW_LICENSE": "mit gpl-3.0-only"})
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("recorded", [False, True], ids=["scanned-on-pull", "refused-from-push-record"])
def test_pull_deny_unsafe_refuses_before_writing(registry, repo, tmp_path, cli_env, recorded):
    marker = tmp_path / "pwned"
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "evil.pkl").write_bytes(evil_pickle(marker))
    (model / "ckpt.pt").write_bytes(torch_zip(evil_pickle(marker)))
    (model / "w.safetensors").write_bytes(safetensors())
    ref = f"{registry.host}/{repo}:1"
    push(model, ref, cli_env, *([] if recorded else ["--no-scan"]))

    dest = tmp_path / "out"
    out = run("pull", ref, str(dest), "--deny-unsafe", env=cli_env)
    assert out.returncode == 5, out.stderr
    assert f"sub/evil.pkl imports {SYSTEM}" in out.stderr and "Traceback" not in out.stderr
    assert not dest.exists() and not marker.exists()

    via_env = run("pull", ref, str(dest), env={**cli_env, "OCIMODEL_DENY_UNSAFE": "1"})
    assert via_env.returncode == 5 and not dest.exists()

    # Without the option the model is pulled as is (and still never unpickled).
    plain = run("pull", ref, str(dest), env=cli_env)
    assert plain.returncode == 0, plain.stderr
    assert (dest / "sub" / "evil.pkl").read_bytes() == (model / "sub" / "evil.pkl").read_bytes()
    assert not marker.exists()


def test_pull_deny_unsafe_into_existing_dest_keeps_its_content(registry, repo, tmp_path, cli_env):
    model = tmp_path / "evil.pkl"
    model.write_bytes(evil_pickle())
    ref = f"{registry.host}/{repo}:1"
    push(model, ref, cli_env, "--no-scan")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    out = run("pull", ref, str(dest), "--deny-unsafe", env=cli_env)
    assert out.returncode == 5, out.stderr
    assert {n for n in os.listdir(dest) if not n.startswith(".ocimodel")} == {"keep.txt"}
    assert (dest / "keep.txt").read_text() == "mine"


def test_pull_deny_unsafe_lets_a_safe_model_through(registry, repo, tmp_path, cli_env):
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.safetensors").write_bytes(safetensors())
    (model / "config.json").write_text(json.dumps({"layers": 2}))
    ref = f"{registry.host}/{repo}:1"
    push(model, ref, cli_env, "--license", "MIT")
    out = run("pull", ref, str(tmp_path / "out"), "--deny-unsafe", "--allow-license", "MIT", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert {n for n in os.listdir(tmp_path / "out") if not n.startswith(".ocimodel")} == {"config.json", "w.safetensors"}


@pytest.mark.parametrize("variable", ["OCIMODEL_DENY_UNSAFE", "OCIMODEL_ALLOW_LICENSE"])
def test_an_empty_safety_variable_is_a_usage_error_not_switched_off(registry, repo, tmp_path, cli_env, variable):
    # click reads an empty variable as unset: a ConfigMap that lost its value must not pull
    # an unscanned (or unlicensed) model into the pod.
    model = tmp_path / "evil.pkl"
    model.write_bytes(evil_pickle())
    ref = f"{registry.host}/{repo}:1"
    push(model, ref, cli_env, "--no-scan")
    dest = tmp_path / "out"
    out = run("pull", ref, str(dest), env={**cli_env, variable: " "})
    assert out.returncode == 2, out.stderr
    assert f"{variable} is set but empty" in out.stderr and "Traceback" not in out.stderr
    assert not dest.exists()
