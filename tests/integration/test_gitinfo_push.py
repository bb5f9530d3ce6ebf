"""Git lineage in a real push: remotes given or detected are stored without credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_given_and_detected_remotes_are_stripped_in_config_and_manifest(registry, repo, tmp_path, docker_config):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "w.bin").write_bytes(b"weights")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    for cmd in (["init", "-q"], ["remote", "add", "origin", "https://oauth2:TOKEN1@gitlab.com/g/r.git?private_token=TOKEN2"],
                ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, env=env)

    def push_and_inspect(tag: str, *extra: str) -> dict:
        ref = f"{registry.host}/{repo}:{tag}"
        pushed = subprocess.run([sys.executable, "-m", "ocimodel", "push", str(root), ref, *extra],
                                capture_output=True, text=True, env=env, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        shown = subprocess.run([sys.executable, "-m", "ocimodel", "inspect", ref, "--json"],
                               capture_output=True, text=True, env=env, timeout=120)
        assert "TOKEN" not in pushed.stdout + pushed.stderr + shown.stdout
        return json.loads(shown.stdout)

    detected = push_and_inspect("detected")
    assert detected["config"]["lineage"]["code"]["remote"] == "https://gitlab.com/g/r.git"
    assert detected["annotations"]["org.opencontainers.image.source"] == "https://gitlab.com/g/r.git"
    given_remote = push_and_inspect("given", "--git-remote", "https://me:p@ss@git.example.com/r.git?access_token=TOKEN3")
    assert given_remote["config"]["lineage"]["code"]["remote"] == "https://git.example.com/r.git"
    assert given_remote["annotations"]["org.opencontainers.image.source"] == "https://git.example.com/r.git"
