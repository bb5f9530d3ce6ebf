"""Which credentials each side of a copy gets (no network: the binding only)."""

from __future__ import annotations

import pytest

from ocimodel.errors import UsageError
from ocimodel.registry.connection import Connection, copy_connections
from ocimodel.registry.credentials import Credential


@pytest.fixture(autouse=True)
def no_env_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def given(connection: Connection | None, host: str) -> Credential | None:
    return None if connection is None else connection.credential_store().get(host)


def test_each_side_gets_its_own_and_no_other():
    src, dst = copy_connections(Connection(username="a", password="1"), Connection(username="b", password="2"),
                                "one.example", "two.example")
    assert given(src, "one.example") == Credential("a", "1") and given(src, "two.example") is None
    assert given(dst, "two.example") == Credential("b", "2") and given(dst, "one.example") is None


def test_without_a_destination_connection_the_source_credentials_stay_at_the_source():
    src, dst = copy_connections(Connection(username="a", password="1"), None, "one.example", "two.example")
    assert given(src, "one.example") == Credential("a", "1")
    assert dst is not None and given(dst, "two.example") is None and given(dst, "one.example") is None


def test_one_registry_shares_the_session():
    src, dst = copy_connections(Connection(username="a", password="1"), None, "one.example", "one.example")
    assert dst is None and given(src, "one.example") == Credential("a", "1")
    src, dst = copy_connections(Connection(username="a", password="1"), None, "one.example", None)
    assert dst is None  # the destination is no registry


def test_a_layout_source_gives_the_credentials_to_the_destination_registry():
    src, dst = copy_connections(Connection(username="a", password="1"), None, None, "two.example")
    assert given(src, "two.example") is None
    assert given(dst, "two.example") == Credential("a", "1")


def test_environment_credentials(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OCIMODEL_USERNAME", "env")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "pw")
    src, dst = copy_connections(Connection(), None, "one.example", "one.example")
    assert given(src, "one.example") == Credential("env", "pw")
    with pytest.raises(UsageError, match="two registries"):
        copy_connections(Connection(), None, "one.example", "two.example")
    with pytest.raises(UsageError, match="two registries"):  # the destination's are still ambiguous
        copy_connections(Connection(username="a", password="1"), None, "one.example", "two.example")
    src, dst = copy_connections(Connection(username="a", password="1"), Connection(username="b", password="2"),
                                "one.example", "two.example")
    assert given(src, "one.example") == Credential("a", "1") and given(dst, "two.example") == Credential("b", "2")
