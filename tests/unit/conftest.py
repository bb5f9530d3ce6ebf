"""The unit tests stay fast and self-contained: no registry or server fixture, no network.

A unit test that asks for a server fixture fails at collection; one that opens an internet
socket in this process fails when it does. Such a test belongs in ``tests/integration``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

UNIT = Path(__file__).parent
#: Fixtures that start a registry, a token or sigstore server, or a proxy.
SERVER_FIXTURES = frozenset({
    "registry", "tls_basic_registry", "token_registry", "proxy_registry", "client", "fault_proxy", "proxy_client",
    "sigstore_standin", "basic_registry",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT not in Path(str(item.fspath)).parents:
            continue
        callspec = getattr(item, "callspec", None)
        parameters = set(callspec.params) if callspec is not None else set()  # test_parse's "registry" column
        servers = (SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))) - parameters
        if servers:
            raise pytest.UsageError(
                f"{item.nodeid} is in tests/unit but uses {', '.join(sorted(servers))}: move it to tests/integration"
            )


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse internet sockets (local unix sockets stay allowed)."""

    def refused(original: Any) -> Any:
        def check(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise RuntimeError("a unit test opened a network socket: move it to tests/integration")
            return original(self, *args, **kwargs)

        return check

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refused(getattr(socket.socket, name)))
