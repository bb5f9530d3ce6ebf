"""The examples a platform engineer applies are valid, restricted and agree with each other.

Every Kubernetes YAML is validated against the Kubernetes JSON schemas (kubernetes-validate,
offline, strict), KServe's ClusterStorageContainer against a schema written from its CRD;
every pod spec (the Deployment's, and the pod KServe builds from the InferenceService and the
ClusterStorageContainer) passes the Pod Security "restricted" rules; the GitHub workflow passes
zizmor; the CI examples, the policy and the cluster name the same signer, stage and registry.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ocimodel.signing.policy import VerificationPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
K8S = EXAMPLES / "k8s"
KSERVE = EXAMPLES / "kserve"
WORKFLOW = EXAMPLES / "ci" / "github-actions.yml"
GITLAB = EXAMPLES / "ci" / "gitlab-ci.yml"
K8S_VERSION = "1.33"
#: Every Kubernetes manifest shipped, the Secret template included (it must stay valid).
MANIFESTS = sorted([*K8S.glob("*.yaml"), K8S / "secret-registry.yaml.template", *KSERVE.glob("*.yaml")])


def load(name: str) -> dict[str, Any]:
    """One manifest of examples/k8s (or a path relative to examples/)."""
    path = K8S / name if (K8S / name).exists() else EXAMPLES / name
    return yaml.safe_load(path.read_text())


def _require(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"missing {path}"
        value = value[key]
    return value


# ---------------------------------------------------------------- schema validation

#: Written from KServe's CRD (config/crd/full/clusterstoragecontainer/
#: serving.kserve.io_clusterstoragecontainers.yaml): required container + supportedUriFormats,
#: each format a prefix or a regex, workloadType an enum; `disabled` sits beside spec. The
#: container itself is a core/v1 Container, validated with the Kubernetes schemas below.
CSC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
        "kind": {"const": "ClusterStorageContainer"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string", "minLength": 1}, "namespace": False}},
        "disabled": {"type": "boolean"},
        "spec": {
            "type": "object",
            "required": ["container", "supportedUriFormats"],
            "additionalProperties": False,
            "properties": {
                "container": {"type": "object", "required": ["name"]},
                "supportedUriFormats": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "object", "additionalProperties": False, "minProperties": 1,
                              "properties": {"prefix": {"type": "string"}, "regex": {"type": "string"}}},
                },
                "workloadType": {"enum": ["initContainer", "localModelDownloadJob"]},
                "supportsMultiModelDownload": {"type": "boolean"},
            },
        },
    },
}

#: The v1beta1 PodSpec fields an InferenceService predictor accepts beside KServe's own.
PREDICTOR_OWN_FIELDS = {"model", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "logger",
                        "batcher", "canaryTrafficPercent", "timeout", "containerConcurrency",
                        "storageContainerName", "labels", "annotations"}


def _as_pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def validate_manifest(obj: dict[str, Any]) -> None:
    kind = obj.get("kind")
    if kind == "ClusterStorageContainer":
        jsonschema.validate(obj, CSC_SCHEMA)
        kubernetes_validate.validate(_as_pod({"containers": [obj["spec"]["container"]]}), K8S_VERSION, strict=True)
    elif kind == "InferenceService":
        # The InferenceService CRD's schema is thousands of lines of generated KServe types; not
        # vendored. What a cluster would reject here is the pod part: the predictor's PodSpec
        # fields are validated as a real Pod, KServe's own fields are only allowed by name.
        assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["metadata"]["name"]
        predictor = obj["spec"]["predictor"]
        pod_fields = {k: v for k, v in predictor.items() if k not in PREDICTOR_OWN_FIELDS}
        kubernetes_validate.validate(_as_pod(pod_fields), K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_validates_against_its_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs
    for doc in docs:
        validate_manifest(doc)


@pytest.mark.parametrize("breakage", ["unknown-field", "bad-type", "csc-format"])
def test_schema_validation_catches_mistakes(breakage: str) -> None:
    """The validation above is not vacuous: a typo or a wrong type is refused."""
    if breakage == "csc-format":
        obj = load("kserve/clusterstoragecontainer.yaml")
        obj["spec"]["supportedUriFormats"] = [{"prefx": "ocimodel://"}]
    else:
        obj = load("deployment.yaml")
        container = obj["spec"]["template"]["spec"]["initContainers"][0]
        if breakage == "unknown-field":
            container["volumeMount"] = container.pop("volumeMounts")
        else:
            container["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(obj)


# ------------------------------------------------------------ Pod Security "restricted"

ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                        "persistentVolumeClaim", "projected", "secret"}
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Pod Security "restricted" (pod-security-admission's checks, baseline included), plus
    what these examples promise beyond it: a read-only root filesystem for every container
    and a size limit on every emptyDir."""
    bad: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"pod: {field}")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            bad.append(f"volume {volume['name']}: {sorted(kinds - ALLOWED_VOLUME_TYPES)}")
        if "emptyDir" in volume and not (volume["emptyDir"] or {}).get("sizeLimit"):
            bad.append(f"volume {volume['name']}: emptyDir without sizeLimit")
    for sysctl in pod_sc.get("sysctls", []):
        bad.append(f"pod: sysctl {sysctl['name']}")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod: runAsUser 0")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        bad.append("pod: seccomp Unconfined")
    if pod_sc.get("seLinuxOptions", {}).get("user") or pod_sc.get("seLinuxOptions", {}).get("role"):
        bad.append("pod: seLinuxOptions user/role")
    containers = [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]
    assert containers, "a pod spec without containers"
    for c in containers:
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is None)):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities.drop must include ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities.add {caps['add']}")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
    return bad


def kserve_pod_spec() -> dict[str, Any]:
    """The pod KServe builds: the predictor's PodSpec, the ClusterStorageContainer's container
    injected as init container `storage-initializer` with args [storageUri, /mnt/models], and
    the kserve-provision-location emptyDir (KServe sets no size limit there; the examples'
    own emptyDir rule is applied to the volumes they declare)."""
    isvc = load("kserve/inferenceservice.yaml")
    csc = load("kserve/clusterstoragecontainer.yaml")
    predictor = copy.deepcopy(isvc["spec"]["predictor"])
    pod = {k: v for k, v in predictor.items() if k not in PREDICTOR_OWN_FIELDS}
    uri = storage_uri(isvc)
    init = {**csc["spec"]["container"], "args": [uri, "/mnt/models"]}
    init["volumeMounts"] = [*init.get("volumeMounts", []), {"name": "kserve-provision-location", "mountPath": "/mnt/models"}]
    pod["initContainers"] = [init]
    pod["volumes"] = [*pod.get("volumes", []), {"name": "kserve-provision-location", "emptyDir": {"sizeLimit": "set-by-kserve"}}]
    for c in pod["containers"]:
        c.setdefault("volumeMounts", []).append({"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True})
    return pod


def storage_uri(isvc: dict[str, Any]) -> str:
    predictor = isvc["spec"]["predictor"]
    if "model" in predictor:
        return str(predictor["model"]["storageUri"])
    env = {e["name"]: e.get("value") for e in predictor["containers"][0].get("env", [])}
    return str(env["STORAGE_URI"])


def pod_specs() -> dict[str, dict[str, Any]]:
    return {"deployment": load("deployment.yaml")["spec"]["template"]["spec"], "kserve": kserve_pod_spec()}


@pytest.mark.parametrize("which", ["deployment", "kserve"])
def test_pod_specs_pass_pod_security_restricted(which: str) -> None:
    spec = pod_specs()[which]
    assert restricted_violations(spec) == []
    kubernetes_validate.validate(_as_pod(spec), K8S_VERSION, strict=True)
    volumes = {v["name"] for v in spec["volumes"]}
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, f"{c['name']} mounts a volume the pod lacks"


MUTATIONS = {
    "hostPath": (lambda s: s["volumes"].append({"name": "cache", "hostPath": {"path": "/var/cache"}}), "hostPath"),
    "no-size-limit": (lambda s: s["volumes"].append({"name": "x", "emptyDir": {}}), "sizeLimit"),
    "escalation": (lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    "root": (lambda s: s["initContainers"][0]["securityContext"].update(runAsUser=0), "runAsUser 0"),
    "caps": (lambda s: s["initContainers"][0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop must include ALL"),
    "add-cap": (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "capabilities.add"),
    "seccomp": (lambda s: [c["securityContext"].pop("seccompProfile") for c in s["containers"]]
                and s["securityContext"].pop("seccompProfile"), "seccompProfile None"),
    "unconfined": (lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
    "writable-root": (lambda s: s["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    "privileged": (lambda s: s["initContainers"][0]["securityContext"].update(privileged=True), "privileged"),
    "host-network": (lambda s: s.update(hostNetwork=True), "hostNetwork"),
}


@pytest.mark.parametrize("which", ["deployment", "kserve"])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_pod_security_checker_catches_each_rule(which: str, mutation: str) -> None:
    spec = copy.deepcopy(pod_specs()[which])
    change, expected = MUTATIONS[mutation]
    change(spec)
    assert any(expected in v for v in restricted_violations(spec)), restricted_violations(spec)


# --------------------------------------------------------------- the Secret template


def test_the_secret_is_a_template_kubectl_apply_skips() -> None:
    # `kubectl apply -f DIR` reads only .json, .yaml and .yml files.
    applied = [p for p in K8S.iterdir() if p.suffix in (".json", ".yaml", ".yml")]
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in applied}
    assert "Secret" not in kinds
    template = yaml.safe_load((K8S / "secret-registry.yaml.template").read_text())
    assert template["kind"] == "Secret" and template["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(template["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == [registry_of_deployment()]
    assert "replace-me" in base64.b64decode(config["auths"]["ghcr.io"]["auth"]).decode()
    # The Deployment and the InferenceService use that one secret for the image and the model.
    name = template["metadata"]["name"]
    deployment = load("deployment.yaml")["spec"]["template"]["spec"]
    predictor = load("kserve/inferenceservice.yaml")["spec"]["predictor"]
    for spec in (deployment, predictor):
        assert spec["imagePullSecrets"] == [{"name": name}]
        assert name in [v.get("secret", {}).get("secretName") for v in spec["volumes"]]


# ----------------------------------------------------------------- the examples agree


def registry_of_deployment() -> str:
    return str(deployment_model_ref().split("/")[0])


def deployment_model_ref() -> str:
    init = load("deployment.yaml")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][0] == "pull"
    return str(init["args"][1])


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def signer_identity_of_workflow(repository: str) -> str:
    """The identity Fulcio puts in the workflow's certificate: the workflow file's path in the
    repository (from this example's install instructions) at the ref it runs on."""
    installed_as = re.search(r"Copy to (\.github/workflows/[\w.-]+\.yml)", WORKFLOW.read_text())
    assert installed_as
    (branch,) = workflow()[True]["push"]["branches"]  # PyYAML reads the key `on` as True
    return f"https://github.com/{repository}/{installed_as.group(1)}@refs/heads/{branch}"


def test_workflow_signer_is_what_the_cluster_policy_accepts() -> None:
    policy = VerificationPolicy.from_mapping(yaml.safe_load(load("configmap-policy.yaml")["data"]["policy.yaml"]))
    policy.validate()
    repository = "/".join(deployment_model_ref().split("/")[1:3])  # ghcr.io/<owner>/<repo>/model
    identity = signer_identity_of_workflow(repository)
    assert re.fullmatch(policy.certificate_identity_regexp, identity)
    assert policy.certificate_oidc_issuer == "https://token.actions.githubusercontent.com"
    # ...and the promote gate in the workflow demands exactly that identity and issuer.
    promote = next(s for s in workflow()["jobs"]["release"]["steps"] if s.get("id") == "promote")["run"]
    assert '--certificate-identity "https://github.com/$GITHUB_WORKFLOW_REF"' in promote
    assert f"--certificate-oidc-issuer {policy.certificate_oidc_issuer}" in promote
    # Another branch, workflow file or repository is refused.
    for other in (identity.replace("heads/main", "heads/dev"), identity.replace("release.yml", "x.yml"),
                  identity.replace("acme/churn", "acme/churn2")):
        assert not re.fullmatch(policy.certificate_identity_regexp, other)


def test_one_stage_and_one_registry_throughout() -> None:
    env = workflow()["env"]
    gitlab = yaml.safe_load(GITLAB.read_text())["model-release"]["variables"]
    model_ref = deployment_model_ref()
    repository, _, stage = model_ref.rpartition(":")
    assert stage == env["STAGE"] == gitlab["STAGE"]
    assert '"$STAGE"' in next(s for s in workflow()["jobs"]["release"]["steps"] if s.get("id") == "promote")["run"]
    # The workflow's MODEL_REPO for acme/churn is the repository the cluster pulls.
    name_step = next(s for s in workflow()["jobs"]["release"]["steps"] if s.get("id") == "name")["run"]
    model_repo = subprocess.run(["bash", "-c", f"GITHUB_ENV=/dev/stdout; {name_step}"], capture_output=True, text=True,
                                env={"REGISTRY": env["REGISTRY"], "MODEL_NAME": env["MODEL_NAME"],
                                     "GITHUB_REPOSITORY": "Acme/Churn", "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert model_repo == f"MODEL_REPO={repository}"  # lower-cased from Acme/Churn
    assert storage_uri(load("kserve/inferenceservice.yaml")) == f"ocimodel://{model_ref}"
    images = [c["image"] for c in load("deployment.yaml")["spec"]["template"]["spec"]["initContainers"]]
    images.append(load("kserve/clusterstoragecontainer.yaml")["spec"]["container"]["image"])
    registry = env["REGISTRY"]
    assert registry_of_deployment() == registry
    assert all(image.startswith(f"{registry}/") for image in images)
    assert f"-t {images[0]} " in (EXAMPLES / "Containerfile").read_text()  # the documented build tag
    assert f"push {images[0]}" in (EXAMPLES / "Containerfile").read_text()


def test_policy_configmap_feeds_both_consumers() -> None:
    configmap = load("configmap-policy.yaml")
    name = configmap["metadata"]["name"]
    deployment = load("deployment.yaml")["spec"]["template"]["spec"]
    init = deployment["initContainers"][0]
    policy_path = {e["name"]: e["value"] for e in init["env"]}["OCIMODEL_POLICY"]
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volume = {v["name"]: v for v in deployment["volumes"]}[mounts[str(Path(policy_path).parent)]]
    assert volume["configMap"]["name"] == name and Path(policy_path).name in configmap["data"]
    csc = load("kserve/clusterstoragecontainer.yaml")["spec"]["container"]
    predictor = load("kserve/inferenceservice.yaml")["spec"]["predictor"]
    policy_path = {e["name"]: e["value"] for e in csc["env"]}["OCIMODEL_POLICY"]
    mounts = {m["mountPath"]: m["name"] for m in csc["volumeMounts"]}
    volume = {v["name"]: v for v in predictor["volumes"]}[mounts[str(Path(policy_path).parent)]]
    assert volume["configMap"]["name"] == name
    assert all(m.get("readOnly") for m in csc["volumeMounts"])
    # The serving containers see the model read-only, the Deployment's only through the link.
    server = deployment["containers"][0]
    assert all(m.get("readOnly") for m in server["volumeMounts"])
    assert "/models/current" in " ".join(server["command"])


# ---------------------------------------------------------------------- KServe wiring


def test_cluster_storage_container_claims_the_ocimodel_scheme() -> None:
    csc = load("kserve/clusterstoragecontainer.yaml")
    assert csc["spec"]["supportedUriFormats"] == [{"prefix": "ocimodel://"}]
    container = csc["spec"]["container"]
    assert container["name"] == "storage-initializer"
    assert "args" not in container  # KServe's [storageUri, /mnt/models] must reach the shim
    assert container["command"] == ["ocimodel-storage-initializer"]
    assert "COPY examples/kserve/ocimodel-storage-initializer /usr/local/bin/ocimodel-storage-initializer" in (
        EXAMPLES / "Containerfile").read_text()
    assert storage_uri(load("kserve/inferenceservice.yaml")).startswith("ocimodel://")


# ------------------------------------------------------------------ the CI workflow

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def test_workflow_pins_actions_and_least_privilege() -> None:
    text = WORKFLOW.read_text()
    wf = workflow()
    assert wf["permissions"] == {}
    for name, job in wf["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"job {name} without its own permissions"
        assert set(job["permissions"].values()) <= {"read", "write", "none"}
        for step in job["steps"]:
            if "uses" in step:
                assert SHA_PIN.match(step["uses"]), step["uses"]
                line = next(ln for ln in text.splitlines() if step["uses"] in ln)
                assert re.search(r"# v\d+(\.\d+)*$", line), f"no version comment: {line}"
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
            if "run" in step:
                assert "${{" not in step["run"], f"expression expanded inside run: {step.get('id')}"
    assert wf["jobs"]["release"]["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}


def test_ci_examples_install_ocimodel_from_a_pinned_commit() -> None:
    """ocimodel is not on PyPI: no `pip install ocimodel` from an index."""
    install = next(s for s in workflow()["jobs"]["release"]["steps"] if s.get("id") == "install")["run"]
    gitlab = yaml.safe_load(GITLAB.read_text())["model-release"]
    for env, command in ((workflow()["env"], install), (gitlab["variables"], gitlab["script"][0])):
        assert command == 'python -m pip install "git+${TOOL_REPO}@${TOOL_COMMIT}"'
        assert re.fullmatch(r"[0-9a-f]{40}", env["TOOL_COMMIT"]) and env["TOOL_REPO"].startswith("https://")
    # The GitLab image has git (pip's git install and ocimodel's code lineage need it).
    assert not gitlab["image"].endswith("-slim") and gitlab["image"].startswith("python:")


def test_zizmor_finds_nothing_in_the_workflow() -> None:
    """zizmor, offline, pedantic persona: zero findings (nothing suppressed inline either)."""
    assert "zizmor: ignore" not in WORKFLOW.read_text()
    zizmor = Path(sys.executable).parent / "zizmor"
    done = subprocess.run([str(zizmor), "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr


def test_zizmor_is_not_vacuous(tmp_path: Path) -> None:
    """The same run flags a tag-pinned action and an expression inside `run:`."""
    text = WORKFLOW.read_text()
    bad = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", text)
    bad = bad.replace('"$GITHUB_ACTOR"', '"${{ github.event.head_commit.message }}"')
    path = tmp_path / "release.yml"
    path.write_text(bad)
    zizmor = Path(sys.executable).parent / "zizmor"
    done = subprocess.run([str(zizmor), "--offline", "--persona=pedantic", "--no-progress", str(path)],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "unpinned-uses" in done.stdout and "template-injection" in done.stdout


# ------------------------------------------------------------------- the Containerfile


def containerfile_instructions() -> list[tuple[str, str]]:
    text = (EXAMPLES / "Containerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_containerfile_builds_from_the_repository_and_runs_non_root() -> None:
    steps = containerfile_instructions()
    for op, arg in steps:
        if op == "COPY" and not arg.startswith("--from="):
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    stages = [arg for op, arg in steps if op == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    runs = " ".join(arg for op, arg in final if op == "RUN")
    assert "pip install --no-cache-dir /wheels/*.whl" in runs  # the wheel built from this tree, no cache
    assert "pip install ocimodel" not in runs  # not on PyPI
    user = dict(final)["USER"]
    uid = int(user.split(":")[0])
    assert uid != 0 and f"--uid {uid}" in runs and f"--gid {user.split(':')[1]}" in runs
    deployment = load("deployment.yaml")["spec"]["template"]["spec"]
    assert deployment["securityContext"]["runAsUser"] == uid
    assert load("kserve/clusterstoragecontainer.yaml")["spec"]["container"]["securityContext"]["runAsUser"] == uid
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["ocimodel"]  # the Deployment's args start with `pull`


# ----------------------------------------------------------------------- docs


def test_readme_says_a_moved_tag_does_not_roll_and_how_to() -> None:
    readme = (K8S / "README.md").read_text()
    assert "does not roll" in readme
    assert "models.acme.example/digest" in readme and "@sha256:" in readme
    annotations = load("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert "models.acme.example/digest" in annotations
