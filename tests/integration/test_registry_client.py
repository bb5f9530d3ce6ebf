"""RegistryClient against a real distribution 2.8.2 registry (and tiny local servers)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from registry_fixtures import LocalServer, RecordedRequest, RegistryServer, Reply, fast_retry

from ocimodel.descriptor import (
    CONFIG_MEDIA_TYPE,
    EMPTY_JSON,
    EMPTY_V1,
    INDEX_V1,
    LAYER_MEDIA_TYPE,
    MANIFEST_V1,
    Descriptor,
    Index,
    Manifest,
    sha256_digest,
)
from ocimodel.errors import (
    DigestMismatchError,
    NetworkError,
    NotFoundError,
    RegistryError,
    SchemaError,
    SizeMismatchError,
    UnsafeContentError,
    UsageError,
)
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore

MiB = 1024 * 1024


def _ref(server: RegistryServer, repo: str, tag: str | None = "v1", digest: str | None = None) -> Reference:
    return Reference(registry=server.host, repository=repo, tag=tag, digest=digest)


def _counting_client(counts: dict[str, int], **kwargs: object) -> RegistryClient:
    """A client whose every request (method + path kind) is counted via an httpx event hook."""

    def hook(request: httpx.Request) -> None:
        key = f"{request.method} {'uploads' if '/blobs/uploads/' in request.url.path else request.url.path.split('/')[-2]}"
        counts[key] = counts.get(key, 0) + 1

    return RegistryClient(Connection(plain_http=True), retry=fast_retry(), event_hooks={"request": [hook]}, **kwargs)  # type: ignore[arg-type]


def _push_model(client: RegistryClient, ref: Reference, payload: bytes = b"weights") -> Manifest:
    """A small manifest with a config and one layer, pushed (blobs first) under ref's tag."""
    config = client.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, b'{"name":"m"}')
    layer = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, payload)
    manifest = Manifest.build(config, [layer], artifact_type="application/vnd.ocimodel.model.v1+json")
    client.put_manifest(ref, manifest.raw, MANIFEST_V1)
    return manifest


def _generated(size: int, seed: bytes = b"seed") -> Iterator[bytes]:
    """Deterministic pseudo-random content in uneven pieces (some over 1 MiB)."""
    block = hashlib.sha256(seed).digest() * (3 * MiB // 32 + 1)
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        sent += len(piece)
        yield piece


def _digest_of(pieces: Iterator[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    for piece in pieces:
        h.update(piece)
        n += len(piece)
    return "sha256:" + h.hexdigest(), n


# -- blobs ---------------------------------------------------------------------------------


def test_blob_push_head_and_skip_second_push(registry: RegistryServer, repo: str, docker_config: Path) -> None:
    counts: dict[str, int] = {}
    ref = _ref(registry, repo)
    data = b"hello blob"
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    with _counting_client(counts) as client:
        assert not client.blob_exists(ref, desc.digest)
        assert client.push_blob(ref, desc, lambda: [data]) is True
        assert client.blob_exists(ref, desc.digest)
        assert client.push_blob(ref, desc, lambda: [data]) is False
        assert client.fetch_blob_bytes(ref, desc) == data
    assert counts["POST uploads"] == 1
    assert counts["PUT uploads"] == 1


def test_streamed_upload_of_50_mib_and_download(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    size = 50 * MiB + 123
    digest, _ = _digest_of(_generated(size))
    desc = Descriptor(LAYER_MEDIA_TYPE, digest, size)
    progress: list[int] = []
    ref = _ref(registry, repo)
    assert client.push_blob(ref, desc, lambda: _generated(size), progress=progress.append)
    assert sum(progress) == size and max(progress) <= MiB
    assert registry.blob_path(digest).stat().st_size == size
    with client.open_blob(ref, desc) as stream:
        assert stream.status == 200 and stream.offset == 0
        assert _digest_of(stream.chunks()) == (digest, size)


def test_upload_body_is_streamed_in_small_pieces(registry: RegistryServer, repo: str, docker_config: Path) -> None:
    seen: list[str | None] = []
    hook = lambda request: seen.append(request.headers.get("transfer-encoding"))  # noqa: E731
    data = os.urandom(3 * MiB)
    with RegistryClient(Connection(plain_http=True), event_hooks={"request": [hook]}) as client:
        desc = client.push_blob_bytes(_ref(registry, repo), LAYER_MEDIA_TYPE, data)
    assert registry.blob_path(desc.digest).read_bytes() == data
    # A streamed body with an explicit Content-Length, never chunked transfer encoding.
    assert None in seen and "chunked" not in seen


def test_chunked_patch_upload(registry: RegistryServer, repo: str, docker_config: Path) -> None:
    counts: dict[str, int] = {}
    data = os.urandom(2 * MiB + 7)
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    ref = _ref(registry, repo)
    with _counting_client(counts, chunk_size=MiB) as client:
        assert client.push_blob(ref, desc, lambda: [data], chunked=True)
        assert client.fetch_blob_bytes(ref, desc, max_size=10 * MiB) == data
    assert counts["PATCH uploads"] == 3  # 1 MiB + 1 MiB + 7 bytes
    assert counts["PUT uploads"] == 1


def test_monolithic_put_refused_falls_back_to_chunks(docker_config: Path) -> None:
    """A registry answering 413 to the monolithic PUT gets the data in PATCHes instead."""
    stored = bytearray()

    def handler(request: RecordedRequest) -> Reply:
        path = request.path.split("?")[0]
        if request.method == "HEAD":
            return Reply(404)
        if request.method == "POST":
            return Reply(202, {"Location": "/v2/r/blobs/uploads/u1?_state=a", "OCI-Chunk-Min-Length": "6"})
        if request.method == "PUT" and request.body:
            return Reply(413)
        if request.method == "PATCH":
            stored.extend(request.body)
            # An absolute Location this time, with a new state.
            return Reply(202, {"Location": f"http://{request.headers['host']}{path}?_state=b{len(stored)}"})
        if request.method == "PUT":
            assert f"_state=b{len(stored)}" in request.path and "digest=sha256" in request.path
            return Reply(201)
        return Reply(500)

    data = b"0123456789abcdef"
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True), chunk_size=4, retry=fast_retry()) as client:
        assert client.push_blob(Reference(server.host, "r"), desc, lambda: iter([data]))
    assert bytes(stored) == data
    patches = [r for r in server.requests if r.method == "PATCH"]
    assert [len(r.body) for r in patches] == [6, 6, 4]  # OCI-Chunk-Min-Length beats chunk_size
    assert [r.headers["content-range"] for r in patches] == ["0-5", "6-11", "12-15"]


def test_failed_upload_reopens_the_body(docker_config: Path) -> None:
    """A 503 on the PUT restarts from the POST with a freshly opened body."""
    puts: list[bytes] = []

    def handler(request: RecordedRequest) -> Reply:
        if request.method == "HEAD":
            return Reply(404)
        if request.method == "POST":
            return Reply(202, {"Location": "/v2/r/blobs/uploads/x"})
        puts.append(request.body)
        return Reply(503 if len(puts) == 1 else 201)

    data = b"some content"
    opened: list[int] = []

    def open_chunks() -> Iterator[bytes]:
        opened.append(1)
        yield data

    progress: list[int] = []
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True), retry=fast_retry()) as client:
        assert client.push_blob(Reference(server.host, "r"), desc, open_chunks, progress=progress.append)
    # Opened for the single POST this server refuses (202), then afresh for each PUT.
    assert puts == [data, data] and len(opened) == 3
    assert sum(progress) == len(data)


def test_content_longer_than_descriptor_is_refused(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, b"short")
    with pytest.raises(SizeMismatchError, match="longer than its declared 5 bytes"):
        client.push_blob(_ref(registry, repo), desc, lambda: [b"short and then some"])


def test_wrong_digest_is_refused_by_registry(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    desc = Descriptor(LAYER_MEDIA_TYPE, sha256_digest(b"other"), 5)
    with pytest.raises(DigestMismatchError, match="computed another digest"):
        client.push_blob(_ref(registry, repo), desc, lambda: [b"bytes"])


def test_cross_repo_mount(registry: RegistryServer, repo: str, docker_config: Path) -> None:
    counts: dict[str, int] = {}
    data = os.urandom(1000)
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)
    with _counting_client(counts) as client:
        client.push_blob(_ref(registry, repo), desc, lambda: [data])
        target = _ref(registry, repo + "-copy")
        assert client.push_blob(target, desc, lambda: pytest.fail("mount must not read content"), mount_from=repo)
        assert client.blob_exists(target, desc.digest)
    assert counts["PUT uploads"] == 1  # only the first push sent content


def test_open_blob_with_offset_resumes(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    data = os.urandom(10_000)
    ref = _ref(registry, repo)
    desc = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, data)
    with client.open_blob(ref, desc, offset=4000) as stream:
        assert (stream.status, stream.offset) == (206, 4000)
        assert b"".join(stream.chunks()) == data[4000:]


def test_tampered_blob_is_detected(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo)
    desc = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, b"original content")
    registry.blob_path(desc.digest).write_bytes(b"tampered content")  # same length
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        client.fetch_blob_bytes(ref, desc)


def test_longer_body_than_descriptor_is_cut_off(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo)
    data = b"x" * 100
    real = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, data)
    lying = Descriptor(real.media_type, real.digest, 10)  # claims fewer bytes than served
    with pytest.raises(SizeMismatchError, match="announced 100 bytes"):
        client.fetch_blob_bytes(ref, lying)


def test_hostile_body_without_length_stops_at_size(docker_config: Path) -> None:
    """A server streaming more than promised (no Content-Length) is cut off at the size."""

    def handler(request: RecordedRequest) -> Reply:
        return Reply(200, {"Content-Type": "application/octet-stream"}, b"A" * 5000, send_length=False)

    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, b"A" * 100)
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        with client.open_blob(Reference(server.host, "r"), desc) as stream:
            received = bytearray()
            with pytest.raises(SizeMismatchError, match="more than the 100 bytes"):
                for piece in stream.chunks():
                    received += piece
    assert len(received) == 100


def test_fetch_blob_bytes_refuses_large_descriptors(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    desc = Descriptor(LAYER_MEDIA_TYPE, sha256_digest(b""), 5 * MiB)
    with pytest.raises(UnsafeContentError, match="over the"):
        client.fetch_blob_bytes(_ref(registry, repo), desc)


def test_missing_blob_is_not_found(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, b"never pushed")
    with pytest.raises(NotFoundError, match=f"blob {desc.digest} in {repo} not found"):
        client.fetch_blob_bytes(_ref(registry, repo), desc)


# -- manifests -----------------------------------------------------------------------------


def test_manifest_put_get_head_delete(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "v1")
    manifest = _push_model(client, ref)
    fetched = client.get_manifest(ref)
    assert fetched.raw == manifest.raw
    assert fetched.media_type == MANIFEST_V1
    assert fetched.digest == manifest.digest
    assert client.get_manifest(ref.with_digest(manifest.digest)).raw == manifest.raw
    head = client.head_manifest(ref)
    assert head == Descriptor(MANIFEST_V1, manifest.digest, len(manifest.raw))
    client.delete_manifest(ref.with_digest(manifest.digest))
    assert client.head_manifest(ref) is None
    with pytest.raises(NotFoundError, match=f"manifest {repo}:v1 not found"):
        client.get_manifest(ref)


def test_custom_media_types_served_back_byte_identical(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "empty")
    client.push_blob_bytes(ref, EMPTY_V1, EMPTY_JSON)
    config = Descriptor.from_bytes(EMPTY_V1, EMPTY_JSON)
    raw = Manifest.build(config, [], artifact_type="application/x.test").raw
    digest = client.put_manifest(ref, raw, MANIFEST_V1)
    assert digest == sha256_digest(raw)
    assert client.get_manifest(ref).raw == raw


def test_put_manifest_reports_no_subject_on_distribution(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "base")
    base = _push_model(client, ref)
    config = client.push_blob_bytes(ref, EMPTY_V1, EMPTY_JSON)
    referrer = Manifest.build(config, [], artifact_type="application/x.sig", subject=base.descriptor())
    result = client.put_manifest_result(ref.with_digest(referrer.digest), referrer.raw, MANIFEST_V1)
    assert result.digest == referrer.digest and result.subject is None
    assert client.referrers(ref, base.digest) is None  # distribution 2.8.2 has no referrers API


def test_manifest_tampered_in_storage_is_detected(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "v1")
    manifest = _push_model(client, ref)
    path = registry.blob_path(manifest.digest)
    tampered = manifest.raw.replace(b"ocimodel.model", b"ocimodel.modex")  # same length, still valid
    assert tampered != manifest.raw
    path.write_bytes(tampered)
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        client.get_manifest(ref)  # by tag: checked against Docker-Content-Digest
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        client.get_manifest(ref.with_digest(manifest.digest))


def test_oversized_manifest_refused_with_clear_message(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "big")
    config = client.push_blob_bytes(ref, EMPTY_V1, EMPTY_JSON)
    raw = Manifest.build(config, [], annotations={"pad": "x" * (4 * MiB + 10)}).raw
    with pytest.raises(RegistryError, match="over its size limit"):
        client.put_manifest(ref, raw, MANIFEST_V1)


def test_invalid_manifest_error_is_one_line(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    ref = _ref(registry, repo, "bad")
    missing = Descriptor.from_bytes(LAYER_MEDIA_TYPE, b"not pushed")
    raw = Manifest.build(missing, []).raw
    with pytest.raises(RegistryError) as info:
        client.put_manifest(ref, raw, MANIFEST_V1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"registry {registry.host} refused PUT manifest {repo}:bad: MANIFEST_BLOB_UNKNOWN")
    assert message.endswith("(400)")


def test_manifest_over_4_mib_from_registry_is_refused(docker_config: Path) -> None:
    def handler(request: RecordedRequest) -> Reply:
        return Reply(200, {"Content-Type": MANIFEST_V1}, b" " * (4 * MiB + 1))

    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        with pytest.raises(SchemaError, match="over the 4 MiB limit"):
            client.get_manifest(Reference(server.host, "r", "t"))


def test_delete_disabled_has_clear_message(docker_config: Path) -> None:
    body = json.dumps({"errors": [{"code": "UNSUPPORTED", "message": "The operation is unsupported."}]})

    def handler(request: RecordedRequest) -> Reply:
        return Reply(405, {"Content-Type": "application/json"}, body.encode())

    ref = Reference("h", "r", digest=sha256_digest(b"m"))
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        with pytest.raises(RegistryError, match="has deletion disabled"):
            client.delete_manifest(Reference(server.host, "r", digest=ref.digest))


# -- tags and referrers --------------------------------------------------------------------


def test_delete_tag_refused_by_distribution(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    """distribution 2.8.2 deletes manifests by digest only: DELETE by tag is 400 DIGEST_INVALID."""
    ref = _ref(registry, repo, "v1")
    manifest = _push_model(client, ref)
    with pytest.raises(RegistryError) as refused:
        client.delete_tag(ref)
    assert (refused.value.status, refused.value.code) == (400, "DIGEST_INVALID")
    assert str(refused.value) == (
        f"registry {registry.host} cannot delete the tag v1 alone (it deletes manifests by digest only)"
    )
    assert client.head_manifest(ref) == Descriptor(MANIFEST_V1, manifest.digest, len(manifest.raw))
    with pytest.raises(UsageError, match="needs a tag"):
        client.delete_tag(Reference(registry.host, repo, digest=manifest.digest))


def test_delete_tag_where_supported(docker_config: Path) -> None:
    """OCI distribution 1.1 allows DELETE /v2/<name>/manifests/<tag>; 202 means done."""
    with LocalServer(lambda request: Reply(202)) as server, RegistryClient(Connection(plain_http=True)) as client:
        client.delete_tag(Reference(server.host, "team/model", "old"))
    assert [(r.method, r.path) for r in server.requests] == [("DELETE", "/v2/team/model/manifests/old")]


def test_list_tags_sorted(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    manifest = _push_model(client, _ref(registry, repo, "zeta"))
    for tag in ("beta", "alpha", "2.0", "gamma"):
        client.put_manifest(_ref(registry, repo, tag), manifest.raw, MANIFEST_V1)
    assert client.list_tags(_ref(registry, repo, None)) == ["2.0", "alpha", "beta", "gamma", "zeta"]


def test_list_tags_unknown_repository(client: RegistryClient, registry: RegistryServer, repo: str) -> None:
    with pytest.raises(NotFoundError, match=f"tags of {repo} not found"):
        client.list_tags(_ref(registry, repo, None))


def test_list_tags_follows_link_pagination(docker_config: Path) -> None:
    pages = {
        "/v2/r/tags/list?n=1000": ({"Link": '</v2/r/tags/list?n=1000&last=b>; rel="next"'}, ["c", "b"]),
        "/v2/r/tags/list?n=1000&last=b": ({}, ["a"]),
    }

    def handler(request: RecordedRequest) -> Reply:
        headers, tags = pages[request.path]
        return Reply(200, headers, json.dumps({"name": "r", "tags": tags}).encode())

    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        assert client.list_tags(Reference(server.host, "r")) == ["a", "b", "c"]


def test_referrers_api_when_supported(docker_config: Path) -> None:
    entry = Descriptor(MANIFEST_V1, sha256_digest(b"sig"), 3, artifact_type="application/x.sig")
    index = Index.build([entry])

    def handler(request: RecordedRequest) -> Reply:
        return Reply(200, {"Content-Type": INDEX_V1}, index.raw)

    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        assert client.referrers(Reference(server.host, "r"), sha256_digest(b"subject")) == [entry]


# -- transport: redirects, retries, warnings, errors ---------------------------------------


def test_authorization_not_forwarded_on_redirect_to_another_host(docker_config: Path) -> None:
    data = b"blob served from storage"
    desc = Descriptor.from_bytes(LAYER_MEDIA_TYPE, data)

    def storage(request: RecordedRequest) -> Reply:
        return Reply(200, {"Content-Type": "application/octet-stream"}, data)

    with LocalServer(storage, host="127.0.0.2") as storage_server:

        def front(request: RecordedRequest) -> Reply:
            if "authorization" not in request.headers:
                return Reply(401, {"WWW-Authenticate": 'Basic realm="test"'})
            return Reply(307, {"Location": f"{storage_server.url}/bucket/blob?sig=abc"})

        with LocalServer(front) as front_server:
            CredentialStore().login(front_server.host, "user", "pw")
            with RegistryClient(Connection(plain_http=True)) as client:
                assert client.fetch_blob_bytes(Reference(front_server.host, "r"), desc) == data
    assert front_server.requests[-1].headers["authorization"].startswith("Basic ")
    assert [r.path for r in storage_server.requests] == ["/bucket/blob?sig=abc"]
    assert "authorization" not in storage_server.requests[0].headers


def test_retry_after_is_honoured(docker_config: Path) -> None:
    answers = [Reply(429, {"Retry-After": "3"}), Reply(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), Reply(200)]

    def handler(request: RecordedRequest) -> Reply:
        return answers.pop(0)

    sleeps: list[float] = []
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True), retry=fast_retry(sleeps)) as client:
        client.ping(server.host)
    assert sleeps == [3.0, 0.0]  # a date in the past means "now"


def test_retries_give_up_with_network_error(docker_config: Path) -> None:
    def handler(request: RecordedRequest) -> Reply:
        return Reply(503, body=b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')

    sleeps: list[float] = []
    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True), retry=fast_retry(sleeps)) as client:
        with pytest.raises(NetworkError, match="UNAVAILABLE: try later \\(503\\)"):
            client.ping(server.host)
    assert len(sleeps) == 4 and sleeps == sorted(sleeps)  # 5 attempts, growing backoff


def test_warning_header_is_logged(caplog: pytest.LogCaptureFixture, docker_config: Path) -> None:
    def handler(request: RecordedRequest) -> Reply:
        return Reply(200, {"Warning": '299 - "this registry is deprecated"'})

    with LocalServer(handler) as server, RegistryClient(Connection(plain_http=True)) as client:
        with caplog.at_level(logging.WARNING, logger="ocimodel.registry"):
            client.ping(server.host)
    assert "this registry is deprecated" in caplog.text


def test_connection_refused_is_network_error(docker_config: Path) -> None:
    from registry_fixtures import free_port

    host = f"127.0.0.1:{free_port()}"
    with RegistryClient(Connection(plain_http=True), retry=fast_retry()) as client:
        with pytest.raises(NetworkError, match=f"cannot connect to registry {host}"):
            client.ping(host)


def test_plain_http_against_tls_server(tls_basic_registry: RegistryServer, docker_config: Path) -> None:
    with RegistryClient(Connection(plain_http=True), retry=fast_retry()) as client:
        with pytest.raises(RegistryError, match="speaks https: drop --plain-http"):
            client.ping(tls_basic_registry.host)


def test_https_against_plain_server(registry: RegistryServer, docker_config: Path) -> None:
    with RegistryClient(retry=fast_retry()) as client:
        with pytest.raises(NetworkError, match="pass --plain-http"):
            client.ping(registry.host)


# -- retry policy --------------------------------------------------------------------------


