"""Variables a CI job happens to set do not change what a command does."""

from __future__ import annotations

import json

from process_helpers import run


def test_ci_version_variable_does_not_become_the_model_version(registry, repo, tmp_path, docker_config):
    model = tmp_path / "w.bin"
    model.write_bytes(b"weights")
    env = {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_VERSION": "0.1.0",
           "OCIMODEL_NAME": "from-env", "OCIMODEL_LABEL": "team=env", "OCIMODEL_NO_SCAN": "1"}
    ref = f"{registry.host}/{repo}:2.0"
    pushed = run("push", str(model), ref, "--no-git", env=env)
    assert pushed.returncode == 0, pushed.stderr
    config = json.loads(run("inspect", ref, "--json", env=env).stdout)["config"]
    assert config["version"] == "2.0" and config["name"] != "from-env" and not config.get("labels")
    assert config.get("scan"), "OCIMODEL_NO_SCAN must not turn the scan off"
