"""``ocimodel scan`` and the scan at ``push``, as a user runs them: real process, real registry.

Malicious pickles are generated here with ``__reduce__`` -> ``os.system("touch MARKER")``; the
marker proves nothing ever unpickles them.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from process_helpers import run
from test_safety import SYSTEM, evil_pickle, torch_zip


@pytest.fixture
def cli_env(docker_config) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_scan_reference_exits_5_and_writes_nothing(registry, repo, evil_model, tmp_path, cli_env):
    ref = f"{registry.host}/{repo}:1"
    (evil_model / "ckpt.pt").write_bytes(torch_zip(evil_pickle(tmp_path / "pwned")))
    assert run("push", str(evil_model), ref, "--no-git", "--no-scan", env=cli_env).returncode == 0
    work, tmp, cache = (tmp_path / "cwd", tmp_path / "tmpdir", tmp_path / "cache")
    for d in (work, tmp, cache):
        d.mkdir()
    env = {**cli_env, "TMPDIR": str(tmp), "OCIMODEL_CACHE_DIR": str(cache)}

    out = _run_in(work, "scan", ref, env=env)

    assert out.returncode == 5, out.stderr
    assert f"sub/evil.pkl: DANGEROUS {SYSTEM}" in out.stdout
    assert f"ckpt.pt:archive/data.pkl: DANGEROUS {SYSTEM}" in out.stdout
    assert "w.safetensors: SAFE safetensors" in out.stdout
    assert f"sub/evil.pkl imports {SYSTEM}" in out.stderr
    assert (listing(work), listing(tmp), listing(cache)) == ([], [], [])
    assert not (tmp_path / "pwned").exists()

    data = json.loads(_run_in(work, "scan", ref, "--json", env=env).stdout)
    assert data["subject"].startswith(f"{ref}@sha256:")
    assert {f["path"]: f["verified"] for f in data["files"]}["sub/evil.pkl"] is True


def _run_in(cwd: Path, *args: str, env: dict[str, str]):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=cwd, timeout=120)


def test_push_warns_and_records_the_scan(registry, repo, evil_model, cli_env):
    ref = f"{registry.host}/{repo}:1"
    pushed = run("push", str(evil_model), ref, "--no-git", env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    warnings = [l for l in pushed.stderr.splitlines() if l.startswith("warning: ")]
    assert len(warnings) == 1 and f"sub/evil.pkl imports {SYSTEM}" in warnings[0]

    info = json.loads(run("inspect", ref, "--json", env=cli_env).stdout)
    record = info["config"]["scan"]
    assert record["dangerous"] is True
    assert [(f["file"], f["call"]) for f in record["findings"]] == [("sub/evil.pkl", SYSTEM)]
    formats = {f["path"]: (f["format"], f["verdict"]) for f in record["files"]}
    assert formats["w.safetensors"] == ("safetensors", "safe") and formats["sub/evil.pkl"] == ("pickle", "dangerous")
    assert record["verdict"] == "dangerous" and record["schema"] == 2


def test_push_no_scan_records_nothing(registry, repo, evil_model, cli_env):
    ref = f"{registry.host}/{repo}:1"
    pushed = run("push", str(evil_model), ref, "--no-git", "--no-scan", env=cli_env)
    assert pushed.returncode == 0 and "warning" not in pushed.stderr
    assert "scan" not in json.loads(run("inspect", ref, "--json", env=cli_env).stdout)["config"]
    both = run("push", str(evil_model), ref, "--no-scan", "--deny-unsafe", env=cli_env)
    assert both.returncode == 2 and both.stderr.startswith("error: ")


def test_push_deny_unsafe_refuses_and_uploads_nothing(registry, repo, evil_model, cli_env, tmp_path):
    ref = f"{registry.host}/{repo}:1"
    out = run("push", str(evil_model), ref, "--no-git", "--deny-unsafe", env=cli_env)
    assert out.returncode == 5, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"sub/evil.pkl imports {SYSTEM}" in lines[0]
    assert run("inspect", ref, env=cli_env).returncode == 4  # tag absent
    import hashlib

    for f in ("sub/evil.pkl", "w.safetensors"):
        assert not registry.blob_path("sha256:" + hashlib.sha256((evil_model / f).read_bytes()).hexdigest()).exists()
    assert not (tmp_path / "pwned").exists()

    safe = run("push", str(evil_model / "w.safetensors"), ref, "--no-git", env={**cli_env, "OCIMODEL_DENY_UNSAFE": "1"})
    assert safe.returncode == 0, safe.stderr


def test_pull_allow_global_option(registry, repo, tmp_path, cli_env):
    from test_safety import Net

    model = tmp_path / "net.pkl"
    model.write_bytes(pickle.dumps({"net": Net(), "nonce": os.urandom(8).hex()}))
    ref = f"{registry.host}/{repo}:1"
    pushed = run("push", str(model), ref, "--no-git", env=cli_env)
    assert pushed.returncode == 0 and "warning: net.pkl imports test_safety.Net" in pushed.stderr
    refused = run("pull", ref, str(tmp_path / "a"), "--deny-unsafe", env=cli_env)
    assert refused.returncode == 5 and "test_safety.Net" in refused.stderr and not (tmp_path / "a").exists()
    allowed = run("pull", ref, str(tmp_path / "b"), "--deny-unsafe", "--allow-global", "test_safety.Net", env=cli_env)
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "b" / "net.pkl").read_bytes() == model.read_bytes()


def test_policy_file_allow_globals_reach_pull_deny_unsafe(registry, repo, tmp_path, cli_env):
    """An init container's policy ConfigMap carries allowGlobals next to the signature rules."""
    from test_safety import Net

    model = tmp_path / "net.pkl"
    model.write_bytes(pickle.dumps({"net": Net(), "nonce": os.urandom(8).hex()}))
    ref = f"{registry.host}/{repo}:1"
    env = {**cli_env, "OCIMODEL_KEY_PASSWORD": "pw"}
    assert run("push", str(model), ref, "--no-git", env=env).returncode == 0
    assert run("keygen", "--output-prefix", str(tmp_path / "k"), env=env).returncode == 0
    signed = run("sign", ref, "--key", str(tmp_path / "k.key"), env=env)
    assert signed.returncode == 0, signed.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"key: {tmp_path / 'k.pub'}\n")
    trusting = tmp_path / "trusting.yaml"
    trusting.write_text(f"key: {tmp_path / 'k.pub'}\nallowGlobals: [test_safety.Net]\n")

    refused = run("pull", ref, str(tmp_path / "a"), "--deny-unsafe", "--policy", str(plain), env=env)
    assert refused.returncode == 5 and "test_safety.Net" in refused.stderr and not (tmp_path / "a").exists()
    allowed = run("pull", ref, str(tmp_path / "b"), "--deny-unsafe", "--policy", str(trusting), env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "b" / "net.pkl").read_bytes() == model.read_bytes()
    # allowGlobals alone is no signature rule: still a usable-policy error, nothing written.
    only = tmp_path / "only.yaml"
    only.write_text("allowGlobals: [test_safety.Net]\n")
    empty = run("pull", ref, str(tmp_path / "c"), "--deny-unsafe", "--policy", str(only), env=env)
    assert empty.returncode == 2 and "Traceback" not in empty.stderr and not (tmp_path / "c").exists()
