"""Given credentials are bound to one registry: checked without a registry."""

from __future__ import annotations

from pathlib import Path

from ocimodel.registry.credentials import Credential, CredentialStore


def test_given_credential_is_for_its_registry_only(docker_config: Path) -> None:
    stored = Credential("stored", "stored-pw")
    CredentialStore().login("other.example.com", "stored", "stored-pw")
    given = CredentialStore().given_to("Registry.Example.com:5000", Credential("ci", "ci-pw"))
    assert given.get("registry.example.com:5000") == Credential("ci", "ci-pw")
    assert given.get("registry.example.com") is None  # another port is another registry
    assert given.get("other.example.com") == stored  # a stored login still applies to its host
    assert given.config_only().get("registry.example.com:5000") is None
    hub = CredentialStore().given_to("docker.io", Credential("ci", "ci-pw"))
    assert hub.get("registry-1.docker.io") == Credential("ci", "ci-pw")  # Docker Hub's API host


def test_environment_credentials_apply_to_no_host_by_themselves(docker_config: Path, monkeypatch) -> None:
    monkeypatch.setenv("OCIMODEL_USERNAME", "ci")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "ci-pw")
    assert CredentialStore().get("anything.example.com") is None
    bound = CredentialStore.for_registry("ghcr.io")
    assert bound.get("ghcr.io") == Credential("ci", "ci-pw") and bound.get("quay.io") is None
    explicit = CredentialStore.for_registry("ghcr.io", "flag-user", "flag-pw")
    assert explicit.get("ghcr.io") == Credential("flag-user", "flag-pw")
