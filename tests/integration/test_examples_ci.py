"""The examples are executed, not just shipped: the CI workflow's `run:` steps and the
training script run against the real registry and the local Sigstore stand-in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ocimodel.api import Client
from ocimodel.registry.connection import Connection

pytest_plugins = ["sigstore_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
# Steps that reach the outside world (PyPI, GHCR): the test has ocimodel installed already
# and the local registry needs no login.
OFFLINE_SKIPPED_STEPS = {"install", "login"}


def _python_bin_env() -> dict[str, str]:
    """PATH with this interpreter's bin dir first, so `python` and `ocimodel` are ours."""
    bindir = str(Path(sys.executable).parent)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_train_and_push_example(registry, repo, docker_config):
    ref = f"{registry.host}/{repo}:1.0"
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_and_push.py"), ref, "--plain-http", "--run-id", "r-7"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    pushed = json.loads(out.stdout)
    assert pushed["accuracy"] > 0.8  # a real model learned something
    with Client(Connection(plain_http=True)) as client:
        info = client.inspect(ref)
    config = info.config
    assert info.digest == pushed["digest"]
    assert sorted(f.path for f in info.files) == ["config.json", "model.safetensors"]
    assert config.metrics["accuracy"] == round(pushed["accuracy"], 4)
    assert config.params == {"epochs": 200, "learning_rate": 1.0, "seed": 42}
    assert config.format == "safetensors" and config.license == "Apache-2.0"
    assert config.lineage.run.id == "r-7"
    assert config.lineage.datasets[0].uri.startswith("synthetic://churn") and config.lineage.datasets[0].digest
    # Run from this checkout: the code lineage names its commit.
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert config.lineage.code.commit == head.stdout.strip()


def test_github_actions_workflow_runs_push_sign_promote(registry, repo, docker_config, sigstore_standin, tmp_path):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["release"]["steps"]
    run_steps = [s for s in steps if "run" in s and s.get("id") not in OFFLINE_SKIPPED_STEPS]
    assert [s["id"] for s in run_steps] == ["push", "sign", "promote"]

    gh_repo, workflow_ref = "acme/churn", "acme/churn/.github/workflows/model-release.yml@refs/heads/main"
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {
        **os.environ,
        **_python_bin_env(),
        **sigstore_standin.github_env(gh_repo, workflow_ref),
        "GITHUB_REPOSITORY": gh_repo,
        "GITHUB_WORKFLOW_REF": workflow_ref,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_ENV": str(github_env),
        "MODEL_REPO": f"{registry.host}/{repo}",  # the workflow's env, pointed at the local registry
        # The local stand-ins instead of the public Sigstore instance:
        "OCIMODEL_TRUST_CONFIG": str(sigstore_standin.trust_config_path),
        "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path),
        "OCIMODEL_PLAIN_HTTP": "1",
        "DOCKER_CONFIG": str(docker_config),
    }
    workdir = tmp_path / "checkout"  # the job runs in a checkout holding the examples
    shutil.copytree(ROOT / "examples", workdir / "examples")
    for step in run_steps:
        # GITHUB_ENV lines become environment for later steps, as on GitHub.
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"step {step['id']} failed:\n{done.stdout}\n{done.stderr}"

    digest = dict(line.split("=", 1) for line in github_env.read_text().splitlines())["MODEL_DIGEST"]
    with Client(Connection(plain_http=True)) as client:
        staged = client.stages(f"{registry.host}/{repo}")
        signatures = client.inspect(f"{registry.host}/{repo}@{digest}").signatures
    assert [(s.stage, s.digest) for s in staged] == [("staging", digest)]
    assert "4242" in staged[0].reason
    assert signatures and signatures[0]["signer"] == f"https://github.com/{workflow_ref}"


def test_github_actions_gate_refuses_other_identity(registry, repo, docker_config, sigstore_standin, tmp_path):
    """The promote step's gate is real: a model signed by another workflow is not promoted."""

    src = tmp_path / "m.bin"
    src.write_bytes(b"weights")
    ref = f"{registry.host}/{repo}:x"
    with Client(Connection(plain_http=True)) as client:
        digest = client.push(src, ref, code=False).digest
        token = sigstore_standin.mint_token(
            "repo:evil/fork:ref:refs/heads/main", "https://token.actions.githubusercontent.com",
            **sigstore_standin.github_claims("evil/fork", "evil/fork/.github/workflows/x.yml@refs/heads/main"))
        client.sign(ref, identity_token=token, trust_config=sigstore_standin.trust_config_path)
    promote = next(s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["release"]["steps"] if s.get("id") == "promote")
    env = {**os.environ, **_python_bin_env(), "MODEL_REPO": f"{registry.host}/{repo}", "MODEL_DIGEST": digest,
           "GITHUB_RUN_ID": "1", "GITHUB_SHA": "0" * 40,
           "GITHUB_WORKFLOW_REF": "acme/churn/.github/workflows/model-release.yml@refs/heads/main",
           "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path), "OCIMODEL_PLAIN_HTTP": "1",
           "DOCKER_CONFIG": str(docker_config)}
    done = subprocess.run(["bash", "-e", "-c", promote["run"]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "wrong identity" in done.stderr
    with Client(Connection(plain_http=True)) as client:
        assert client.stages(f"{registry.host}/{repo}") == []
