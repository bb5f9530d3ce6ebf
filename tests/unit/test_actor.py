"""Who promoted: CI identities, explicit names, the local user."""

from __future__ import annotations

import socket

from ocimodel.lifecycle.actor import detect_actor

CI_VARS = (
    "GITHUB_ACTOR",
    "GITHUB_WORKFLOW_REF",
    "GITHUB_RUN_ID",
    "GITHUB_REPOSITORY",
    "GITHUB_SERVER_URL",
    "GITLAB_USER_LOGIN",
    "CI_PIPELINE_URL",
    "CI_JOB_URL",
    "CI_PROJECT_PATH",
)


def test_actor_from_github_gitlab_local_and_explicit(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_WORKFLOW_REF", "acme/iris/.github/workflows/release.yml@refs/heads/main")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/iris")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    github = detect_actor()
    assert (github.name, github.source) == ("octocat", "github")
    assert github.details == {
        "workflowRef": "acme/iris/.github/workflows/release.yml@refs/heads/main",
        "runId": "42",
        "repository": "acme/iris",
        "runUrl": "https://github.com/acme/iris/actions/runs/42",
    }
    explicit = detect_actor("release-bot")
    assert (explicit.name, explicit.source, explicit.details["runId"]) == ("release-bot", "explicit", "42")
    for name in CI_VARS:
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setenv("GITLAB_USER_LOGIN", "tanuki")
    monkeypatch.setenv("CI_PIPELINE_URL", "https://gitlab.com/acme/iris/-/pipelines/7")
    gitlab = detect_actor()
    assert (gitlab.name, gitlab.source) == ("tanuki", "gitlab")
    assert gitlab.details == {"pipelineUrl": "https://gitlab.com/acme/iris/-/pipelines/7"}
    monkeypatch.delenv("GITLAB_USER_LOGIN")

    monkeypatch.setenv("USER", "dev")
    monkeypatch.setenv("LOGNAME", "dev")
    local = detect_actor()
    assert (local.name, local.source) == (f"dev@{socket.gethostname()}", "local")
