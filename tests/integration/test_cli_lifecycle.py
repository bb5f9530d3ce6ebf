"""The lifecycle verbs as a user runs them: promote, stages, history, rollback, delete, lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.fixture
def env(docker_config, tmp_path) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_KEY_PASSWORD": "pw",
            "GITHUB_ACTIONS": "", "GITLAB_CI": ""}


def push(env, registry, repo, tmp_path, tag: str, *extra: str) -> str:
    src = tmp_path / f"model-{tag}.bin"
    src.write_bytes(os.urandom(2048))
    out = run("push", str(src), f"{registry.host}/{repo}:{tag}", "--no-git", *extra, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_promote_history_rollback_stages(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    v1 = push(env, registry, repo, tmp_path, "1.0")
    v2 = push(env, registry, repo, tmp_path, "2.0")

    first = run("promote", f"{base}:1.0", "prod", "--reason", "first release", "--actor", "alice", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == v1
    second = run("promote", f"{base}:2.0", "prod", "--reason", "better auc", "--actor", "bob", "--json", env=env)
    assert json.loads(second.stdout)["previousDigest"] == v1

    # The stage tag holds the same manifest digest as the version tag; internal tags are hidden.
    assert run("tags", base, env=env).stdout.split() == ["1.0", "2.0", "prod"]
    assert "ocimodel.history.prod" in run("tags", base, "--all", env=env).stdout

    listed = json.loads(run("stages", base, "--json", env=env).stdout)
    assert [(s["stage"], s["digest"], s["reason"]) for s in listed] == [("prod", v2, "better auc")]
    assert "2.0" in listed[0]["tags"]

    back = run("rollback", base, "prod", "--reason", "regression", "--actor", "carol", env=env)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == v1

    hist = run("history", base, "prod", "--json", env=env)
    assert hist.returncode == 0, hist.stderr
    report = json.loads(hist.stdout)
    assert report["ok"] is True
    assert [(e["actor"]["name"], e["from"], e["to"]) for e in report["entries"]] == [
        ("carol", v2, v1), ("bob", v1, v2), ("alice", None, v1)]
    assert "rollback" in report["entries"][0]["reason"]
    text = run("history", base, "prod", env=env).stdout
    assert "carol" in text and "better auc" in text


def test_delete_refuses_staged_digest(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    digest = push(env, registry, repo, tmp_path, "1.0")
    assert run("promote", f"{base}:1.0", "prod", env=env).returncode == 0
    refused = run("delete", f"{base}@{digest}", "--yes", env=env)
    assert refused.returncode != 0 and "prod" in refused.stderr and "Traceback" not in refused.stderr
    assert run("inspect", f"{base}@{digest}", env=env).returncode == 0
    forced = run("delete", f"{base}@{digest}", "--yes", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert run("inspect", f"{base}@{digest}", env=env).returncode == 4


def test_gated_promotion_refuses_unsigned_and_passes_signed(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    keys = tmp_path / "k"
    assert run("keygen", "--output-prefix", str(keys), env=env).returncode == 0
    v1 = push(env, registry, repo, tmp_path, "1.0")
    v2 = push(env, registry, repo, tmp_path, "2.0")
    assert run("sign", f"{base}:1.0", "--key", f"{keys}.key", env=env).returncode == 0
    assert run("promote", f"{base}:1.0", "prod", "--key", f"{keys}.pub", env=env).returncode == 0

    refused = run("promote", f"{base}:2.0", "prod", "--key", f"{keys}.pub", env=env)
    assert refused.returncode == 5 and "Traceback" not in refused.stderr
    assert json.loads(run("stages", base, "--json", env=env).stdout)[0]["digest"] == v1
    assert len(json.loads(run("history", base, "prod", "--json", env=env).stdout)["entries"]) == 1

    # A signed promotion record shows as signed (and verified with the policy).
    assert run("sign", f"{base}:2.0", "--key", f"{keys}.key", env=env).returncode == 0
    ok = run("promote", f"{base}:2.0", "prod", "--key", f"{keys}.pub", "--sign", "--sign-key", f"{keys}.key", env=env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(run("history", base, "prod", "--json", "--key", f"{keys}.pub", env=env).stdout)
    assert report["entries"][0]["to"] == v2
    assert report["entries"][0]["signed"] is True and report["entries"][0]["signatureVerified"] is True
    assert report["entries"][1]["signed"] is False


def test_lineage_cli(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    parent = push(env, registry, repo, tmp_path, "base")
    push(env, registry, repo, tmp_path, "ft", "--parent", f"{base}:base")
    out = run("lineage", f"{base}:ft", "--json", env=env)
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert tree["parents"][0]["digest"] == parent and tree["parents"][0]["status"] == "ok"
    text = run("lineage", f"{base}:ft", env=env).stdout
    assert f"{base}:ft" in text and parent[:19] in text
