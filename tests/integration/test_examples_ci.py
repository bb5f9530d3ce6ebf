"""The examples are executed, not just shipped: the CI workflow's `run:` steps and the
training script run against the real registry and the local Sigstore stand-in."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from ocimodel.api import Client
from ocimodel.registry.connection import Connection
from ocimodel.transfer.installed import STATE_NAME

pytest_plugins = ["sigstore_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
# The install step builds ocimodel from git: run on its own (test_install_step_...).
OFFLINE_SKIPPED_STEPS = {"install"}


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


def _run_workflow(registry, docker_config, sigstore_standin, tmp_path, gh_repo: str) -> tuple[dict[str, str], str]:
    """Every `run:` step but the install (tested on its own below), in order, as GitHub would:
    the workflow's `env:`, GitHub's variables, GITHUB_ENV lines carried to later steps. Only
    REGISTRY is pointed at the local registry. Returns the final environment and the digest."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["jobs"]["release"]["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["release"]["steps"]
    run_steps = [s for s in steps if "run" in s and s.get("id") not in OFFLINE_SKIPPED_STEPS]
    assert [s["id"] for s in run_steps] == ["name", "login", "push", "sign", "promote"]

    workflow_ref = f"{gh_repo}/.github/workflows/release.yml@refs/heads/main"
    tmp_path.mkdir(parents=True, exist_ok=True)
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {
        **os.environ,
        **_python_bin_env(),
        **workflow["env"],
        **sigstore_standin.github_env(gh_repo, workflow_ref),
        "GITHUB_REPOSITORY": gh_repo,
        "GITHUB_ACTOR": "release-bot",
        "GITHUB_WORKFLOW_REF": workflow_ref,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_ENV": str(github_env),
        "REGISTRY": registry.host,  # the workflow's ghcr.io, pointed at the local registry
        # The local stand-ins instead of the public Sigstore instance:
        "OCIMODEL_TRUST_CONFIG": str(sigstore_standin.trust_config_path),
        "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path),
        "OCIMODEL_PLAIN_HTTP": "1",
        "DOCKER_CONFIG": str(docker_config),
    }
    workdir = tmp_path / "checkout"  # the job runs in a checkout holding the examples
    shutil.copytree(ROOT / "examples", workdir / "examples")
    for step in run_steps:
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        step_env = {**env, **{k: v for k, v in step.get("env", {}).items()}}
        if step["id"] == "login":
            step_env["REGISTRY_TOKEN"] = "job-token"  # ${{ secrets.GITHUB_TOKEN }}
        done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=workdir, env=step_env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"step {step['id']} failed:\n{done.stdout}\n{done.stderr}"
    final = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
    return {**env, **final}, final["MODEL_DIGEST"]


def test_github_actions_workflow_runs_push_sign_promote(registry, docker_config, sigstore_standin, tmp_path):
    owner = f"Acme{uuid.uuid4().hex[:6]}"  # capitals: GitHub allows them, registries do not
    env, digest = _run_workflow(registry, docker_config, sigstore_standin, tmp_path, f"{owner}/Churn")
    model_repo = f"{registry.host}/{owner.lower()}/churn/model"
    assert env["MODEL_REPO"] == model_repo
    # The login step stored the job's token for the registry.
    auths = json.loads((docker_config / "config.json").read_text())["auths"]
    assert base64.b64decode(auths[registry.host]["auth"]).decode() == "release-bot:job-token"
    with Client(Connection(plain_http=True)) as client:
        staged = client.stages(model_repo)
        signatures = client.inspect(f"{model_repo}@{digest}").signatures
    assert [(s.stage, s.digest) for s in staged] == [(env["STAGE"], digest)]
    assert "4242" in staged[0].reason
    assert signatures and signatures[0]["signer"] == f"https://github.com/{owner}/Churn/.github/workflows/release.yml@refs/heads/main"


def test_what_ci_promotes_is_what_the_cluster_pulls(registry, docker_config, sigstore_standin, tmp_path):
    """The examples agree, run end to end: the workflow as acme/churn runs it, then the
    Deployment's init container with the ConfigMap's policy pulls the stage CI promoted."""
    env, digest = _run_workflow(registry, docker_config, sigstore_standin, tmp_path / "ci", "acme/churn")
    deployment = yaml.safe_load((ROOT / "examples/k8s/deployment.yaml").read_text())
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    ref = init["args"][1]
    assert ref == f"ghcr.io/acme/churn/model:{env['STAGE']}" and env["MODEL_REPO"].startswith(registry.host + "/")
    local_ref = registry.host + ref.removeprefix("ghcr.io")  # the registry address substituted
    policy = tmp_path / "policy.yaml"
    configmap = yaml.safe_load((ROOT / "examples/k8s/configmap-policy.yaml").read_text())
    policy.write_text(configmap["data"]["policy.yaml"])
    dest = tmp_path / "models"
    dest.mkdir()
    pull_env = {**os.environ, **{e["name"]: e["value"] for e in init["env"]}, "OCIMODEL_POLICY": str(policy),
                "TMPDIR": str(tmp_path), "DOCKER_CONFIG": str(docker_config), "OCIMODEL_PLAIN_HTTP": "1",
                "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path)}
    args = [str(dest) if a == "/models" else a for a in init["args"]]
    args[1] = local_ref
    done = subprocess.run([sys.executable, "-m", "ocimodel", *args], env=pull_env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    state = json.loads((dest / STATE_NAME).read_text())
    assert state["digest"] == digest and state["verification"]["verified"] is True
    assert (dest / "current" / "model.safetensors").is_file()


def test_install_step_installs_from_the_pinned_commit(tmp_path):
    """The install step as written, with TOOL_REPO/TOOL_COMMIT pointed at this checkout's HEAD:
    pip builds ocimodel from the git commit into a fresh virtual environment."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # ocimodel's dependencies (and pip) come from this interpreter's environment: no network.
    site = next((venv / "lib").glob("python*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "httpx").is_dir())
    (site / "deps.pth").write_text(str(deps) + "\n")
    install = next(s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["release"]["steps"] if s.get("id") == "install")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "TOOL_REPO": f"file://{ROOT}",
           "TOOL_COMMIT": head, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "-e", "-c", install["run"]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import ocimodel, sys; print(ocimodel.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv)  # the installed copy, not this editable checkout
    assert (venv / "bin" / "ocimodel").is_file()


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
           "GITHUB_WORKFLOW_REF": "acme/churn/.github/workflows/release.yml@refs/heads/main", "STAGE": "staging",
           "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path), "OCIMODEL_PLAIN_HTTP": "1",
           "DOCKER_CONFIG": str(docker_config)}
    done = subprocess.run(["bash", "-e", "-c", promote["run"]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "wrong identity" in done.stderr
    with Client(Connection(plain_http=True)) as client:
        assert client.stages(f"{registry.host}/{repo}") == []


GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"


def test_gitlab_pipeline_runs_push_sign_promote(registry, repo, docker_config, sigstore_standin, tmp_path):
    """The GitLab job's `script:` as one shell, as the runner runs it, after the install line
    (the same command as the GitHub install step, run by test_install_step_...)."""
    job = yaml.safe_load(GITLAB.read_text())["model-release"]
    install, *script = job["script"]
    assert install.startswith("python -m pip install ")
    server = "https://gitlab.example.com"
    identity = f"{server}/acme/churn//.gitlab-ci.yml@refs/heads/main"
    env = {
        **os.environ, **_python_bin_env(), **job["variables"],
        "GITLAB_CI": "true", "CI_SERVER_URL": server, "CI_PROJECT_PATH": "acme/churn", "CI_COMMIT_REF_NAME": "main",
        "CI_COMMIT_SHA": "0" * 40, "CI_PIPELINE_ID": "777",
        "CI_REGISTRY": registry.host, "CI_REGISTRY_IMAGE": f"{registry.host}/{repo}",
        "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "job-token",
        "SIGSTORE_ID_TOKEN": sigstore_standin.mint_token(identity, server),  # id_tokens: SIGSTORE_ID_TOKEN
        "OCIMODEL_TRUST_CONFIG": str(sigstore_standin.trust_config_path),
        "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path),
        "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config),
    }
    workdir = tmp_path / "checkout"
    shutil.copytree(ROOT / "examples", workdir / "examples")
    done = subprocess.run(["bash", "-c", "set -eo pipefail\n" + "\n".join(script) + '\necho "DIGEST=$MODEL_DIGEST"'],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    digest = done.stdout.strip().splitlines()[-1].removeprefix("DIGEST=")
    model_repo = f"{registry.host}/{repo}/model"
    with Client(Connection(plain_http=True)) as client:
        staged = client.stages(model_repo)
        signatures = client.inspect(f"{model_repo}@{digest}").signatures
    assert [(s.stage, s.digest) for s in staged] == [(job["variables"]["STAGE"], digest)]
    assert "777" in staged[0].reason
    assert signatures and signatures[0]["signer"] == identity
