"""The Kubernetes example's YAML files are valid objects."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from ocimodel.signing.policy import VerificationPolicy

K8S = Path(__file__).resolve().parents[2] / "examples" / "k8s"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())


def _require(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"missing {path}"
        value = value[key]
    return value


def test_yaml_files_are_valid_kubernetes_objects():
    deployment, secret, configmap = load("deployment.yaml"), load("secret-registry.yaml"), load("configmap-policy.yaml")
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    assert (configmap["apiVersion"], configmap["kind"]) == ("v1", "ConfigMap")
    for obj in (deployment, secret, configmap):
        assert _require(obj, "metadata.name")

    spec = _require(deployment, "spec.template.spec")
    labels = _require(deployment, "spec.template.metadata.labels")
    assert _require(deployment, "spec.selector.matchLabels").items() <= labels.items()
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["initContainers"] + spec["containers"]:
        assert container["name"] and container["image"]
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts unknown volume {mount['name']}"
            assert mount["mountPath"].startswith("/")
        for env in container.get("env", []):
            assert set(env) <= {"name", "value", "valueFrom"} and env["name"]
            assert isinstance(env.get("value", ""), str), f"env {env['name']} must be a string"
    assert "emptyDir" in volumes["model"]
    assert volumes["policy"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert volumes["registry-credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    # The serving container sees the model read-only and only through the atomic link.
    server = spec["containers"][0]
    assert all(m.get("readOnly") for m in server["volumeMounts"])
    assert "/models/current" in " ".join(server["command"])

    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert all("auth" in entry for entry in config["auths"].values())

    policy = yaml.safe_load(configmap["data"]["policy.yaml"])
    parsed = VerificationPolicy.from_mapping(policy)
    parsed.validate()
    assert parsed.has_certificate_rules
