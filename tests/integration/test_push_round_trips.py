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
from registry_fixtures import LocalServer, RecordedRequest, Reply, fast_retry
from transfer_helpers import model_tree, pull_model, push_model, write_random

from ocimodel.descriptor import Descriptor, sha256_digest
from ocimodel.errors import DigestMismatchError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.transfer.upload import SMALL_IN_FLIGHT, small_workers

N_FILES = 12


class Requests:
    """Every request the client sent (method and path), tokens included."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def hook(self, request: httpx.Request) -> None:
        self.sent.append((request.method, request.url.raw_path.decode("ascii")))  # with the query

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


@pytest.mark.parametrize("concurrency", [1, 16])
def test_push_uses_one_connection_per_worker(relay, relay_client, requests, repo, tmp_path, concurrency):
    _model(tmp_path / "model")
    push_model(relay_client, tmp_path / "model", Reference(relay.host, repo, "v1"), concurrency=concurrency)
    assert len(requests.sent) > 2 * N_FILES  # many requests...
    # ...over one kept-alive connection per worker (small blobs use up to SMALL_IN_FLIGHT workers)
    assert relay.connections <= min(small_workers(concurrency), N_FILES)


def test_push_to_an_empty_repository_makes_at_most_3n_plus_4_requests(relay, relay_client, requests, repo, tmp_path):
    # A HEAD per blob (all issued together up front), POST + PUT per missing blob (distribution
    # refuses the single-POST upload), the same for the config, then the manifest.
    files = _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    pushed = push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    assert (pushed.uploaded, pushed.skipped) == (N_FILES, 0)
    assert requests.methods()["HEAD"] == N_FILES + 1  # no second HEAD inside the upload
    assert len(requests.sent) <= 3 * N_FILES + 4, requests.methods()
    pull_model(relay_client, ref, tmp_path / "out")
    assert model_tree(tmp_path / "out") == files


def test_repush_of_an_unchanged_model_makes_at_most_n_plus_2_requests(relay, relay_client, requests, repo, tmp_path):
    # A HEAD per blob (all issued together) and the config's, then the manifest.
    _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    requests.sent.clear()
    pushed = push_model(relay_client, tmp_path / "model", ref, concurrency=4)
    assert (pushed.uploaded, pushed.skipped) == (0, N_FILES)
    assert len(requests.sent) <= N_FILES + 2, requests.methods()


def test_bearer_token_is_fetched_once_for_the_whole_push(token_registry, repo, tmp_path, docker_config):
    _model(tmp_path / "model")
    connection = Connection(plain_http=True, username=token_registry.username, password=token_registry.password,
                            credentials_for=token_registry.host)
    before = token_registry.token_requests
    with RegistryClient(connection, retry=fast_retry()) as client:
        pushed = push_model(client, tmp_path / "model", token_registry.ref(repo, "v1"), concurrency=4)
    assert pushed.uploaded == N_FILES
    # One token for repository:<name>:pull,push reused by every request; with 8 workers the first
    # wave of challenges may each ask once before the cache fills, never once per blob.
    assert token_registry.token_requests - before <= SMALL_IN_FLIGHT


def _push_use_case(client: RegistryClient, model: Path, ref: Reference):
    from ocimodel.registry.target import target_ref
    from ocimodel.transfer.push import ModelInfo, push

    def no_parents(text: str):
        raise AssertionError(f"no lineage here, asked for {text}")

    return push(target_ref(client, ref), model, info=ModelInfo(code=False), locate=no_parents, scan=False, concurrency=4)


def test_a_time_stamped_config_is_uploaded_without_a_head(relay, relay_client, requests, repo, tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    _push_use_case(relay_client, tmp_path / "model", ref)
    requests.sent.clear()
    result = _push_use_case(relay_client, tmp_path / "model", ref)  # a re-push: only the config is new
    assert (result.uploaded_blobs, result.skipped_blobs) == (0, N_FILES)
    config = sha256_digest(result.config.to_bytes())
    heads = [path for method, path in requests.sent if method == "HEAD"]
    assert len(heads) == N_FILES and not any(h.endswith(config) for h in heads)
    assert any("/blobs/uploads/" in path for method, path in requests.sent if method == "POST")
    assert len(requests.sent) <= N_FILES + 3, requests.methods()  # HEADs, config POST + PUT, manifest


def test_a_reproducible_config_is_checked_first(relay, relay_client, requests, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same config bytes each push
    _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    _push_use_case(relay_client, tmp_path / "model", ref)
    requests.sent.clear()
    result = _push_use_case(relay_client, tmp_path / "model", ref)
    assert result.uploaded_blobs == 0
    assert requests.methods() == Counter({"HEAD": N_FILES + 1, "PUT": 1})  # N + 2: nothing uploaded


# -- the single-POST upload of small blobs ------------------------------------------------------


def _single_posts(requests: Requests) -> list[str]:
    return [path for method, path in requests.sent if method == "POST" and "digest=" in path]


def test_a_registry_refusing_the_single_post_gets_post_then_put_and_is_not_asked_again(
    relay, relay_client, requests, repo, tmp_path
):
    # distribution 2.8 answers POST ?digest= with an upload session: the blob goes in its PUT.
    files = _model(tmp_path / "model")
    ref = Reference(relay.host, repo, "v1")
    pushed = push_model(relay_client, tmp_path / "model", ref, concurrency=1)
    assert pushed.uploaded == N_FILES
    assert len(_single_posts(requests)) == 1  # the refusal is remembered for the host
    pull_model(relay_client, ref, tmp_path / "out")
    assert model_tree(tmp_path / "out") == files


def _blob_server(single_post: bool) -> tuple[LocalServer, dict[str, bytes]]:
    """A minimal registry of blobs: the single POST stored (checked) or refused with a session."""
    stored: dict[str, bytes] = {}

    def handle(request: RecordedRequest) -> Reply:
        url = httpx.URL(request.path)
        digest = url.params.get("digest")
        if request.method == "POST" and digest and single_post:
            if sha256_digest(request.body) != digest:
                return Reply(400, body=b'{"errors":[{"code":"DIGEST_INVALID","message":"bad"}]}')
            stored[digest] = request.body
            return Reply(201, {"Docker-Content-Digest": digest, "Location": f"/v2/r/blobs/{digest}"})
        if request.method == "POST":
            return Reply(202, {"Location": "/v2/r/blobs/uploads/session-1"})
        if request.method == "PUT" and digest:
            stored[digest] = request.body
            return Reply(201, {"Docker-Content-Digest": digest})
        return Reply(404)

    return LocalServer(handle), stored


@pytest.mark.parametrize("single_post", [True, False])
def test_a_small_blob_goes_in_one_post_where_the_registry_takes_it(single_post, docker_config):
    server, stored = _blob_server(single_post)
    data = b"small blob " * 100
    descriptor = Descriptor.from_bytes("application/octet-stream", data)
    with server, RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
        assert c.push_blob(Reference(server.host, "r", "v1"), descriptor, lambda: (data,), checked=True)
    assert stored == {descriptor.digest: data}
    methods = [r.method for r in server.requests]
    assert methods == (["POST"] if single_post else ["POST", "PUT"])


def test_a_single_post_stored_under_another_digest_is_refused(docker_config):
    def handle(request: RecordedRequest) -> Reply:
        return Reply(201, {"Docker-Content-Digest": "sha256:" + "0" * 64})

    data = b"x" * 1000
    descriptor = Descriptor.from_bytes("application/octet-stream", data)
    with LocalServer(handle) as server, RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
        with pytest.raises(DigestMismatchError, match="not " + descriptor.digest):
            c.push_blob(Reference(server.host, "r", "v1"), descriptor, lambda: (data,), checked=True)
