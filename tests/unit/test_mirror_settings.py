"""Mirror settings: parsed and checked before anything is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocimodel.errors import UsageError
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.mirrors import Mirror, parse_mirrors


def test_parse_mirrors() -> None:
    assert parse_mirrors(["127.0.0.1:5000=http://127.0.0.1:5001", "docker.io=https://m.local:443/v2/"]) == {
        "127.0.0.1:5000": ["http://127.0.0.1:5001"],
        "docker.io": ["https://m.local"],
    }
    # One environment value may list several, separated by commas or whitespace; order is kept.
    env = "ghcr.io=https://a.local, ghcr.io=http://b.local:8080/cache\nindex.docker.io=https://a.local ghcr.io=https://a.local"
    assert parse_mirrors([env]) == {
        "ghcr.io": ["https://a.local", "http://b.local:8080/cache"],
        "docker.io": ["https://a.local"],
    }
    assert parse_mirrors([]) == {} and parse_mirrors([" "]) == {}
    assert Mirror.parse("HTTPS://Mirror.Local:443/v2") == Mirror("https", "mirror.local", "")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("docker.io", "expected REGISTRY=URL"),
        ("docker.io=", "expected REGISTRY=URL"),
        ("=https://m.local", "expected REGISTRY=URL"),
        ("https://ghcr.io=https://m.local", "not a URL"),
        ("ghcr=https://m.local", "'ghcr' is not a registry name"),
        ("ghcr.io=m.local:5000", "use http://host[:port] or https://host[:port]"),
        ("ghcr.io=ftp://m.local", "use http://host[:port]"),
        ("ghcr.io=https://user:pw@m.local", "no credentials in the URL"),
        ("ghcr.io=https://m.local?x=1", "no query or fragment"),
        ("ghcr.io=https://m.local:99999", "bad host or port"),
    ],
)
def test_parse_mirrors_refuses_bad_input(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mirrors([value])


def test_client_checks_its_mirrors(docker_config: Path) -> None:
    with pytest.raises(UsageError, match="not a URL"):
        RegistryClient(Connection(mirrors={"https://ghcr.io": ["https://m.local"]}))
    with pytest.raises(UsageError, match="a list of URLs"):
        RegistryClient(Connection(mirrors={"ghcr.io": "https://m.local"}))  # type: ignore[dict-item]
