"""Round trips of a push, counted on the wire: connections reused (one per worker, never one per
request), and a bounded number of requests per file, so a regression in round trips fails here.
Driven through :class:`faultproxy.Relay` (a transparent TCP relay that counts connections) in
front of the real registry; requests are counted by the client's own httpx event hook."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from faultproxy import Relay
from registry_fixtures import fast_retry
from transfer_helpers import model_tree, pull_model, push_model, write_random

from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore

N_FILES = 12


class Requests:
    """Every request the client sent (method and path), tokens included."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def hook(self, request: httpx.Request) -> None:
        self.sent.append((request.method, request.url.path))

    def methods(self) -> Counter[str]:
        return Counter(method for method, _ in self.sent)


@pytest.fixture
def relay(registry) -> Iterator[Relay]:
    with Relay(registry.host) as r:
        yield r


@pytest.fixture
def requests() -> Requests:
    return Requests()


@pytest.fixture
def relay_client(relay: Relay, requests: Requests, docker_config) -> Iterator[RegistryClient]:
    hooks = {"request": [requests.hook]}
    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry(), event_hooks=hooks) as c:
        yield c


def _model(root: Path, n: int = N_FILES) -> dict[str, bytes]:
    # Sizes differ so the order of uploads matters; all small (monolithic uploads).
    return {f"f{i:02d}.bin": write_random(root / f"f{i:02d}.bin", 1000 + 3000 * i) for i in range(n)}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_push_uses_one_connection_per_worker(relay, relay_client, requests, repo, tmp_path, concurrency):
    _model(tmp_path / "model")
    push_model(relay_client, tmp_path / "model", Reference(relay.host, repo, "v1"), concurrency=concurrency)
    assert len(requests.sent) > 2 * N_FILES  # many requests...
    assert relay.connections <= concurrency  # ...over one kept-alive connection per worker


def test_push_to_an_empty_repository_makes_at_most_2n_plus_3_requests(relay, relay_client, requests, repo, tmp_path):
    files = _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    pushed = push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    assert (pushed.uploaded, pushed.skipped) == (N_FILES, 0)
    assert len(requests.sent) <= 2 * N_FILES + 3, requests.methods()
    pull_model(relay_client, ref, tmp_path / "out")
    assert model_tree(tmp_path / "out") == files


def test_repush_of_an_unchanged_model_makes_at_most_n_plus_2_requests(relay, relay_client, requests, repo, tmp_path):
    _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    requests.sent.clear()
    pushed = push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    assert (pushed.uploaded, pushed.skipped) == (0, N_FILES)
    assert len(requests.sent) <= N_FILES + 2, requests.methods()
