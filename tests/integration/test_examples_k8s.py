"""examples/k8s is executed, not just shipped: the YAML must be valid Kubernetes objects, and
the init container's own command, args and env (paths mapped to temp volumes, the registry
address substituted) run against the real registry with credentials from a docker config
written like the Secret and the policy from the ConfigMap."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_examples_yaml import load

from ocimodel.api import Client
from ocimodel.registry.connection import Connection
from ocimodel.transfer.installed import STATE_NAME

pytest_plugins = ["sigstore_fixtures"]

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
RELEASE_WORKFLOW = "acme/churn/.github/workflows/release.yml@refs/heads/main"


# ------------------------------------------------------------------------- object validity


# --------------------------------------------------------------------- the init container


class InitContainer:
    """Runs the Deployment's init container locally: same args and env, volumes as temp dirs."""

    def __init__(self, tmp_path: Path, registry: Any, ref: str, extra_env: dict[str, str]) -> None:
        spec = load("deployment.yaml")["spec"]["template"]["spec"]
        self.container = spec["initContainers"][0]
        self.volumes = {m["mountPath"]: tmp_path / "volumes" / m["name"] for m in self.container["volumeMounts"]}
        for directory in self.volumes.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.ref = ref
        self.extra_env = extra_env
        self.model = self.volume("/models")

    def volume(self, mount_path: str) -> Path:
        return self.volumes[mount_path]

    def _map(self, value: str) -> str:
        for mount, local in self.volumes.items():
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount):]
        return value

    def env(self) -> dict[str, str]:
        env = {e["name"]: self._map(e["value"]) for e in self.container["env"]}
        return {**os.environ, **env, **self.extra_env}

    def args(self) -> list[str]:
        args = [self._map(a) for a in self.container["args"]]
        assert args[1].startswith("ghcr.io/acme/churn/model:")
        args[1] = self.ref  # the registry address substituted
        return args

    def run(self) -> tuple[int, list[dict[str, Any]], str]:
        # The image's ENTRYPOINT is `ocimodel`; its args come from the Deployment.
        done = subprocess.run([sys.executable, "-m", "ocimodel", *self.args()], env=self.env(),
                              capture_output=True, text=True, timeout=300)
        log = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        return done.returncode, log, done.stderr


@pytest.fixture
def cluster(tmp_path, tls_basic_registry, sigstore_standin, repo, monkeypatch):
    """The Secret's docker config, the ConfigMap's policy, and a client to publish models."""
    reg = tls_basic_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "publisher"))
    monkeypatch.setenv("OCIMODEL_USERNAME", reg.username)
    monkeypatch.setenv("OCIMODEL_PASSWORD", reg.password)
    ref = f"{reg.host}/{repo}:prod"
    init = InitContainer(tmp_path, reg, ref, {
        "OCIMODEL_CA_FILE": str(reg.ca_file),
        "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path),  # the stand-in, not production
        "OCIMODEL_USERNAME": "", "OCIMODEL_PASSWORD": "",  # credentials only from the mounted Secret
    })
    secret_config = {"auths": {reg.host: {"auth": base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()}}}
    (init.volume("/etc/ocimodel/docker") / "config.json").write_text(json.dumps(secret_config))
    policy = load("configmap-policy.yaml")["data"]["policy.yaml"]
    (init.volume("/etc/ocimodel/policy") / "policy.yaml").write_text(policy)
    client = Client(Connection(ca_file=reg.ca_file, credentials_for=reg.host))  # OCIMODEL_USERNAME/PASSWORD, for this registry
    yield init, client, sigstore_standin
    client.close()


def publish(client: Client, standin: Any, ref: str, tmp_path: Path, content: bytes, *, signed: bool = True) -> str:
    model = tmp_path / f"model-{content[:4].hex()}"
    model.mkdir()
    (model / "weights.bin").write_bytes(content)
    (model / "config.json").write_text('{"threshold": 0.5}')
    digest = client.push(model, ref, code=False).digest
    if signed:
        token = standin.mint_token("repo:acme/churn:ref:refs/heads/main", GITHUB_ISSUER,
                                   **standin.github_claims("acme/churn", RELEASE_WORKFLOW))
        client.sign(ref, identity_token=token, trust_config=standin.trust_config_path)
    return digest


def test_init_container_installs_skips_and_switches_versions(cluster, tmp_path):
    init, client, standin = cluster
    v1 = publish(client, standin, init.ref, tmp_path, b"v1-weights" * 1000)

    code, log, stderr = init.run()
    assert code == 0, stderr
    steps = [entry["step"] for entry in log]
    assert steps == ["resolved", "verified", "downloaded", "installed"]
    assert all(entry["level"] == "info" and entry["time"] for entry in log)
    current = init.model / "current"
    assert os.readlink(current) == f"versions/{v1.split(':')[1]}"
    assert (current / "weights.bin").read_bytes() == b"v1-weights" * 1000
    state = json.loads((init.model / STATE_NAME).read_text())
    assert state["digest"] == v1 and state["verification"]["verified"] is True
    assert state["reference"] == init.ref and state["layout"] == "versioned"

    # A pod restart: same digest already complete -> checked, nothing downloaded.
    code, log, stderr = init.run()
    assert code == 0, stderr
    assert [entry["step"] for entry in log] == ["resolved", "verified", "up-to-date"]

    # A corrupted file is noticed (size) and repaired.
    (current / "weights.bin").write_bytes(b"short")
    code, log, stderr = init.run()
    assert code == 0 and "repairing" in [entry["step"] for entry in log]
    assert (current / "weights.bin").read_bytes() == b"v1-weights" * 1000

    # The tag moves to a new version: installed beside, then `current` switches atomically.
    v2 = publish(client, standin, init.ref, tmp_path, b"v2-weights" * 2000)
    code, log, stderr = init.run()
    assert code == 0, stderr
    assert os.readlink(current) == f"versions/{v2.split(':')[1]}"
    assert (current / "weights.bin").read_bytes() == b"v2-weights" * 2000
    versions = sorted(p.name for p in (init.model / "versions").iterdir())
    assert versions == sorted([v1.split(":")[1], v2.split(":")[1]])  # the previous one is kept for open readers
    # Nothing else in the volume: the versions, the link, and ocimodel's state.
    assert sorted(p.name for p in init.model.iterdir()) == [STATE_NAME, "current", "versions"]


def test_unsigned_model_never_reaches_the_volume(cluster, tmp_path):
    init, client, standin = cluster
    publish(client, standin, init.ref, tmp_path, b"unsigned" * 100, signed=False)
    code, log, stderr = init.run()
    assert code == 5, stderr  # ExitCode.VERIFICATION, documented in README
    assert log[-1]["level"] == "error" and log[-1]["exitCode"] == 5 and "no signature" in log[-1]["message"]
    assert list(init.model.iterdir()) == []  # the emptyDir stays empty


def test_model_signed_by_another_workflow_is_refused(cluster, tmp_path):
    init, client, standin = cluster
    model = tmp_path / "m"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"fork")
    client.push(model, init.ref, code=False)
    token = standin.mint_token("repo:evil/fork:ref:refs/heads/main", GITHUB_ISSUER,
                               **standin.github_claims("evil/fork", "evil/fork/.github/workflows/release.yml@refs/heads/main"))
    client.sign(init.ref, identity_token=token, trust_config=standin.trust_config_path)
    code, log, stderr = init.run()
    assert code == 5 and "wrong identity" in log[-1]["message"]
    assert list(init.model.iterdir()) == []


@pytest.mark.parametrize("broken", ["empty-variable", "templated-empty-rule"])
def test_a_policy_that_lost_its_values_stops_the_pod(cluster, tmp_path, broken):
    """A Helm value that went missing must not turn verification off: exit 2, nothing pulled."""
    init, client, standin = cluster
    publish(client, standin, init.ref, tmp_path, b"unsigned" * 100, signed=False)
    if broken == "empty-variable":
        init.extra_env["OCIMODEL_POLICY"] = ""  # `value: ""` in the Deployment
        fragment = "OCIMODEL_POLICY is set but empty"
    else:
        (init.volume("/etc/ocimodel/policy") / "policy.yaml").write_text(
            'certificate-identity-regexp: ""\ncertificate-oidc-issuer: ""\n')
        fragment = "certificate-identity-regexp is empty"
    code, _, stderr = init.run()
    assert code == 2, stderr
    assert stderr.startswith("error: ") and fragment in stderr and len(stderr.splitlines()) == 1
    assert list(init.model.iterdir()) == []


# ------------------------------------------------------------- KServe storage initializer

KSERVE = Path(__file__).resolve().parents[2] / "examples" / "kserve"
SHIM = KSERVE / "ocimodel-storage-initializer"


def run_storage_initializer(init: InitContainer, argv: list[str], **env_changes: str) -> subprocess.CompletedProcess[str]:
    """The ClusterStorageContainer's container as KServe runs it: its command with KServe's
    args, its env, the policy and docker config mounted (here: the Deployment's temp volumes)."""
    csc = load("../kserve/clusterstoragecontainer.yaml")["spec"]["container"]
    assert csc["command"] == [SHIM.name]
    mounts = {"/etc/ocimodel/policy": init.volume("/etc/ocimodel/policy"),
              "/etc/ocimodel/docker": init.volume("/etc/ocimodel/docker")}
    assert {m["mountPath"] for m in csc["volumeMounts"]} == set(mounts)
    env = {e["name"]: e["value"] for e in csc["env"]}
    for name, value in env.items():
        for mount, local in mounts.items():
            if value.startswith(mount):
                env[name] = str(local) + value[len(mount):]
    bindir = Path(sys.executable).parent  # `ocimodel` on PATH, as in the image
    full = {**os.environ, **env, **init.extra_env, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", **env_changes}
    return subprocess.run([str(SHIM), *argv], env=full, capture_output=True, text=True, timeout=300)


def test_kserve_argv_pulls_the_verified_model(cluster, tmp_path):
    """KServe's exact argv, [storageUri, /mnt/models], with the InferenceService's storageUri
    (registry address substituted), into an existing empty volume."""
    init, client, standin = cluster
    digest = publish(client, standin, init.ref, tmp_path, b"kserve-weights" * 500)
    isvc = load("../kserve/inferenceservice.yaml")
    uri = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["containers"][0]["env"]}["STORAGE_URI"]
    assert uri == "ocimodel://ghcr.io/acme/churn/model:staging"
    uri = "ocimodel://" + init.ref
    mnt = tmp_path / "mnt-models"
    mnt.mkdir()  # KServe's emptyDir exists before the init container runs
    done = run_storage_initializer(init, [uri, str(mnt)])
    assert done.returncode == 0, done.stderr
    assert (mnt / "weights.bin").read_bytes() == b"kserve-weights" * 500
    assert json.loads((mnt / STATE_NAME).read_text())["digest"] == digest
    steps = [json.loads(line)["step"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert steps[:2] == ["resolved", "verified"]

    # Multi-model form: SRC DEST pairs repeated.
    second = tmp_path / "second"
    second.mkdir()
    done = run_storage_initializer(init, [uri, str(mnt), f"ocimodel://{init.ref.rsplit(':', 1)[0]}@{digest}", str(second)])
    assert done.returncode == 0, done.stderr
    assert (second / "weights.bin").read_bytes() == b"kserve-weights" * 500


@pytest.mark.parametrize("case", ["unsigned", "no-policy", "wrong-scheme", "odd-argc", "option-as-ref", "relative-dest"])
def test_kserve_initializer_refuses_and_writes_nothing(cluster, tmp_path, case):
    init, client, standin = cluster
    publish(client, standin, init.ref, tmp_path, b"unsigned" * 100, signed=False)
    mnt = tmp_path / "mnt-models"
    mnt.mkdir()
    argv, env, code, fragment = [f"ocimodel://{init.ref}", str(mnt)], {}, 2, ""
    if case == "unsigned":
        code, fragment = 5, "no signature"
    elif case == "no-policy":
        env, fragment = {"OCIMODEL_POLICY": ""}, "OCIMODEL_POLICY is not set"
    elif case == "wrong-scheme":
        argv[0], fragment = f"oci://{init.ref}", "not an ocimodel:// URI"
    elif case == "odd-argc":
        argv, fragment = argv[:1], "expected SOURCE DEST pairs"
    elif case == "option-as-ref":
        argv[0], fragment = "ocimodel://--help", "not a model reference"
    else:
        argv[1], fragment = "mnt-models", "absolute path"
    done = run_storage_initializer(init, argv, **env)
    assert done.returncode == code, done.stderr
    assert fragment in done.stderr
    assert list(mnt.iterdir()) == []
