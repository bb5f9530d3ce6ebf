"""Who promoted: a name, where it came from (explicit, github, gitlab, local) and CI details."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import SchemaError


@dataclass(frozen=True)
class Actor:
    """Who promoted: a name, where it came from (explicit, github, gitlab, local) and CI details."""

    name: str
    source: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, obj: Any) -> "Actor":
        """Parse the record's ``actor`` object."""
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("source"), str):
            raise SchemaError("promotion record field 'actor' needs string 'name' and 'source'")
        details = obj.get("details") or {}
        if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
            raise SchemaError("promotion record field 'actor.details' must map strings to strings")
        return cls(name=obj["name"], source=obj["source"], details=dict(details))

    def __str__(self) -> str:
        return self.name if self.source in ("explicit", "local") else f"{self.name} ({self.source})"


def _pick(environ: Mapping[str, str], **names: str) -> dict[str, str]:
    return {key: environ[var] for key, var in names.items() if environ.get(var)}


def _ci_details(environ: Mapping[str, str]) -> tuple[str, str, dict[str, str]] | None:
    """(source, user, details) from GitHub Actions or GitLab CI variables, else None."""
    if environ.get("GITHUB_ACTOR"):
        details = _pick(
            environ, workflowRef="GITHUB_WORKFLOW_REF", runId="GITHUB_RUN_ID", repository="GITHUB_REPOSITORY"
        )
        if all(environ.get(v) for v in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
            details["runUrl"] = (
                f"{environ['GITHUB_SERVER_URL']}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
            )
        return "github", environ["GITHUB_ACTOR"], details
    if environ.get("GITLAB_USER_LOGIN"):
        details = _pick(environ, pipelineUrl="CI_PIPELINE_URL", jobUrl="CI_JOB_URL", project="CI_PROJECT_PATH")
        return "gitlab", environ["GITLAB_USER_LOGIN"], details
    return None


def _local_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER/LOGNAME
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def detect_actor(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Actor:
    """``explicit`` if given, else the CI identity (GitHub, GitLab), else ``user@host``.

    CI details (workflow ref, run, pipeline URL) are kept even with an explicit name.
    """
    env = os.environ if environ is None else environ
    ci = _ci_details(env)
    if explicit:
        return Actor(name=explicit, source="explicit", details=ci[2] if ci else {})
    if ci:
        return Actor(name=ci[1], source=ci[0], details=ci[2])
    return Actor(name=_local_user(), source="local")
