"""A registry that lies: every lie is refused with a one-line error, and nothing is written.

The lies come from a scripted HTTP server (``LocalServer``) speaking just enough of the
distribution API, so each can be exact: a 5 MiB manifest, a wrong Content-Type, a body longer
than its descriptor, a layer claiming 2^60 bytes, titles that escape or collide.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from registry_fixtures import LocalServer, RecordedRequest, Reply, fast_retry
from transfer_helpers import everything, pull_model

from ocimodel.config import ModelConfig
from ocimodel.descriptor import (
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    INDEX_V1,
    LAYER_MEDIA_TYPE,
    MANIFEST_V1,
    Descriptor,
    Manifest,
    sha256_digest,
)
from ocimodel.errors import (
    DigestMismatchError,
    OcimodelError,
    SchemaError,
    SizeMismatchError,
    UnsafeContentError,
    UsageError,
)
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore

_PATH_RE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/?]+)$")


@dataclass
class Scripted:
    """What the fake registry serves: manifests by tag or digest, blobs by digest."""

    manifests: dict[str, Reply] = field(default_factory=dict)
    blobs: dict[str, Reply] = field(default_factory=dict)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/v2/":
            return Reply(200, body=b"{}")
        match = _PATH_RE.match(request.path)
        if not match:
            return Reply(404)
        table = self.manifests if match["kind"] == "manifests" else self.blobs
        reply = table.get(match["ref"])
        return reply if reply is not None else Reply(404, body=b'{"errors":[{"code":"NOT_FOUND"}]}')

    def manifest(self, raw: bytes, tag: str = "v1", media_type: str = MANIFEST_V1, **headers: str) -> str:
        digest = sha256_digest(raw)
        reply = Reply(200, {"Content-Type": media_type, "Docker-Content-Digest": digest, **headers}, raw)
        self.manifests[tag] = self.manifests[digest] = reply
        return digest

    def blob(self, data: bytes, media_type: str = LAYER_MEDIA_TYPE) -> Descriptor:
        descriptor = Descriptor.from_bytes(media_type, data)
        self.blobs[descriptor.digest] = Reply(200, {"Content-Type": "application/octet-stream"}, data)
        return descriptor

    def model(self, files: dict[str, bytes], *, config: bytes | None = None, tag: str = "v1") -> Manifest:
        """A well-formed model (the tests then spoil one part of it)."""
        layers = [
            Descriptor.from_bytes(LAYER_MEDIA_TYPE, data, annotations={ANNOTATION_TITLE: title})
            for title, data in files.items()
        ]
        for layer, data in zip(layers, files.values()):
            self.blobs[layer.digest] = Reply(200, {"Content-Type": "application/octet-stream"}, data)
        config_desc = self.blob(config if config is not None else ModelConfig(name="m").to_bytes(), CONFIG_MEDIA_TYPE)
        manifest = Manifest.build(config_desc, layers, artifact_type=ARTIFACT_TYPE)
        self.manifest(manifest.raw, tag)
        return manifest


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    # One server for the module (stopping one takes 0.5 s); each test installs its own script.
    with LocalServer(lambda request: Reply(404)) as local:
        yield local


@pytest.fixture
def fake(server: LocalServer) -> tuple[Scripted, LocalServer]:
    script = Scripted()
    server.handler = script.handle
    server.requests.clear()
    return script, server


@pytest.fixture
def client(docker_config: Path) -> Iterator[RegistryClient]:
    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry()) as c:
        yield c


def _ref(server: LocalServer, tag: str = "v1") -> Reference:
    return Reference.parse(f"{server.host}/evil/model:{tag}")


def _refused(client: RegistryClient, ref: Reference, tmp_path: Path, error: type[Exception], match: str) -> None:
    """Pull must fail with ``error`` and leave no trace at all around the destination."""
    area = tmp_path / "area"
    area.mkdir(exist_ok=True)
    with pytest.raises(error, match=match) as info:
        pull_model(client, ref, area / "dest")
    assert "\n" not in str(info.value)
    assert everything(area) == []


def _blob_gets(server: LocalServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and "/blobs/" in r.path)


# -- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("send_length", [True, False])
def test_manifest_over_4_mib_refused(fake, client, tmp_path, send_length):
    script, server = fake
    raw = json.dumps({"schemaVersion": 2, "pad": "x" * (4 * 1024 * 1024)}).encode()
    script.manifests["v1"] = Reply(200, {"Content-Type": MANIFEST_V1}, raw, send_length=send_length)
    _refused(client, _ref(server), tmp_path, SchemaError, "over the 4 MiB limit|over the 4194304-byte limit")


@pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream", "application/json"])
def test_manifest_with_wrong_content_type_refused(fake, client, tmp_path, content_type):
    script, server = fake
    manifest = script.model({"a.bin": b"a"})
    script.manifests["v1"].headers["Content-Type"] = content_type
    assert manifest.raw
    _refused(client, _ref(server), tmp_path, SchemaError, "not a manifest media type")


def test_manifest_whose_body_contradicts_its_content_type_refused(fake, client, tmp_path):
    script, server = fake
    script.model({"a.bin": b"a"})
    script.manifests["v1"].headers["Content-Type"] = INDEX_V1
    _refused(client, _ref(server), tmp_path, SchemaError, "served as .* but declares")


def test_manifest_digest_mismatch_refused(fake, client, tmp_path):
    script, server = fake
    good = script.model({"a.bin": b"a"})
    other = script.model({"b.bin": b"b"}, tag="other")
    # Asked by digest, the registry answers other bytes.
    script.manifests[good.digest] = script.manifests["other"]
    _refused(client, _ref(server).with_digest(good.digest), tmp_path, DigestMismatchError, "digest mismatch")
    # Asked by tag, the registry's digest header contradicts the bytes.
    script.manifests["v1"].headers["Docker-Content-Digest"] = other.digest
    _refused(client, _ref(server), tmp_path, DigestMismatchError, "registry says")


def test_index_instead_of_model_refused(fake, client, tmp_path):
    script, server = fake
    script.manifest(json.dumps({"schemaVersion": 2, "mediaType": INDEX_V1, "manifests": []}).encode(), media_type=INDEX_V1)
    _refused(client, _ref(server), tmp_path, UsageError, "is an image index")


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, error, match",
    [
        (b"not json{", SchemaError, "not valid JSON"),
        (b"[1, 2]", SchemaError, "not a JSON object"),
        (b'{"schemaVersion": 99, "name": "m"}', SchemaError, "schemaVersion 99 is not supported"),
        (b'{"schemaVersion": 1}', SchemaError, "name"),
    ],
)
def test_config_not_json_or_not_our_schema_refused(fake, client, tmp_path, config, error, match):
    script, server = fake
    script.model({"a.bin": b"a"}, config=config)
    _refused(client, _ref(server), tmp_path, error, match)


def test_config_digest_mismatch_refused(fake, client, tmp_path):
    script, server = fake
    manifest = script.model({"a.bin": b"a"})
    good = script.blobs[manifest.config.digest].body
    script.blobs[manifest.config.digest] = Reply(200, {}, good.replace(b'"m"', b'"x"'))
    _refused(client, _ref(server), tmp_path, DigestMismatchError, "digest mismatch")


# -- blobs ------------------------------------------------------------------------------------


def test_blob_digest_mismatch_refused(fake, client, tmp_path):
    script, server = fake
    manifest = script.model({"a.bin": os.urandom(10_000), "b.bin": b"fine"})
    bad = bytearray(script.blobs[manifest.layers[0].digest].body)
    bad[5] ^= 1
    script.blobs[manifest.layers[0].digest] = Reply(200, {}, bytes(bad))
    _refused(client, _ref(server), tmp_path, DigestMismatchError, "digest mismatch")


@pytest.mark.parametrize("send_length", [True, False])
def test_blob_longer_than_declared_refused(fake, client, tmp_path, send_length):
    script, server = fake
    data = os.urandom(50_000)
    manifest = script.model({"a.bin": data})
    script.blobs[manifest.layers[0].digest] = Reply(200, {}, data + os.urandom(5_000_000), send_length=send_length)
    match = "announced 5050000 bytes" if send_length else "sent more than the 50000 bytes"
    _refused(client, _ref(server), tmp_path, SizeMismatchError, match)


@pytest.mark.parametrize("send_length", [True, False])
def test_blob_shorter_than_declared_refused(fake, client, tmp_path, send_length):
    script, server = fake
    data = os.urandom(50_000)
    manifest = script.model({"a.bin": data})
    script.blobs[manifest.layers[0].digest] = Reply(200, {}, data[:-1], send_length=send_length)
    _refused(client, _ref(server), tmp_path, SizeMismatchError, "49999")


def test_absurd_declared_size_refused_before_downloading(fake, client, tmp_path):
    script, server = fake
    config = script.blob(ModelConfig(name="m").to_bytes(), CONFIG_MEDIA_TYPE)
    huge = Descriptor(LAYER_MEDIA_TYPE, sha256_digest(b"x"), 2**60, annotations={ANNOTATION_TITLE: "huge.bin"})
    script.manifest(Manifest.build(config, [huge], artifact_type=ARTIFACT_TYPE).raw)
    _refused(client, _ref(server), tmp_path, UsageError, r"not enough free space .* needs 1024\.0 PiB")
    assert _blob_gets(server) == 1  # the config only


# -- titles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "titles, match",
    [
        (["a.bin", "../escape"], "'..'"),
        (["/etc/passwd"], "absolute"),
        (["C:/x"], "absolute"),
        (["a\\..\\b"], "backslash"),
        (["dup.bin", "dup.bin"], "appears twice"),
        (["Model.bin", "model.bin"], "collide on case-insensitive"),
        ([unicodedata.normalize("NFC", "é.bin"), unicodedata.normalize("NFD", "é.bin")], "collide"),
        (["a", "a/b"], "needs 'a' to be a directory"),
        ([".ocimodel-partial/sha256-x"], "reserved"),
        ([".ocimodel.lock"], "reserved"),
        (["ok", None], "no org.opencontainers.image.title"),
        (["new\nline"], "control characters"),
    ],
)
def test_hostile_titles_refused_before_any_blob_is_fetched(fake, client, tmp_path, titles, match):
    script, server = fake
    layers = []
    for i, title in enumerate(titles):
        annotations = {ANNOTATION_TITLE: title} if title is not None else {}
        data = f"payload {i}".encode()
        layers.append(Descriptor.from_bytes(LAYER_MEDIA_TYPE, data, annotations=annotations))
        script.blobs[layers[-1].digest] = Reply(200, {}, data)
    config = script.blob(ModelConfig(name="m").to_bytes(), CONFIG_MEDIA_TYPE)
    script.manifest(Manifest.build(config, layers, artifact_type=ARTIFACT_TYPE).raw)
    _refused(client, _ref(server), tmp_path, UnsafeContentError, match)
    assert _blob_gets(server) == 1  # the config only


def test_symlinked_parent_deep_in_destination_refused(fake, client, tmp_path):
    script, server = fake
    script.model({"a/b/c.txt": b"payload"})
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "a").mkdir(parents=True)
    (dest / "a" / "b").symlink_to(outside)
    with pytest.raises(UnsafeContentError, match="is a symlink"):
        pull_model(client, _ref(server), dest)
    assert everything(outside) == [] and everything(dest) == ["a", "a/b"]




@pytest.mark.parametrize(
    "body", [b"[" * 5000 + b"]" * 5000, b'{"errors": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"errors": [{"code": []}]}'],
)
def test_error_body_nested_deeply_is_still_an_error_of_ours(fake, client, tmp_path, body):
    script, server = fake
    script.manifests["v1"] = Reply(404, {"Content-Type": "application/json"}, body)
    _refused(client, _ref(server), tmp_path, OcimodelError, "not found")  # ours, one line, nothing written


@pytest.mark.parametrize(
    "body", [b'{"tags": 5}', b'{"tags": true}', b"[" * 5000 + b"]" * 5000, b'{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
)
def test_tag_list_of_the_wrong_shape_is_refused_not_a_crash(server, client, body):
    server.handler = lambda request: Reply(200, {"Content-Type": "application/json"}, body)
    with pytest.raises(SchemaError, match="malformed tag list"):
        client.list_tags(_ref(server))


def test_token_answer_nested_deeply_is_refused_not_a_crash(server, client, tmp_path):
    def handle(request: RecordedRequest) -> Reply:
        if request.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, b'{"token": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="{server.url}/token",service="x"'}, b"")

    server.handler = handle
    _refused(client, _ref(server), tmp_path, OcimodelError, "malformed answer")
