"""Push and pull models against the real distribution registry."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from transfer_helpers import everything, model_tree, tree

import ocimodel
from ocimodel.api import Client
from ocimodel.descriptor import (
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    Descriptor,
    Manifest,
)
from ocimodel.errors import DigestMismatchError, NotFoundError, UnsafeContentError, UsageError
from ocimodel.reference import Reference
from ocimodel.registry.connection import Connection
from ocimodel.transfer.installed import STATE_NAME as STATE  # the one file a successful pull adds


@pytest.fixture
def oc(registry, docker_config):
    with Client(Connection(plain_http=True)) as client:
        yield client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "weights.bin").write_bytes(os.urandom(300_000) + bytes(range(256)))
    (root / "empty.txt").write_bytes(b"")
    (root / "sub" / "ünïcødé 名前.json").write_text('{"a": 1}', encoding="utf-8")
    (root / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "sub" / "deeper" / "run.sh").chmod(0o755)
    (root / "copy.bin").write_bytes((root / "weights.bin").read_bytes())  # same digest twice
    return root


def test_single_file_round_trip(oc, registry, repo, tmp_path):
    src = tmp_path / "model.onnx"
    src.write_bytes(os.urandom(123_457))
    result = oc.push(src, f"{registry.host}/{repo}:1.0")
    assert result.digest.startswith("sha256:") and [f.path for f in result.files] == ["model.onnx"]
    dest = tmp_path / "out"
    pulled = oc.pull(f"{registry.host}/{repo}:1.0", dest)
    assert pulled.digest == result.digest
    assert model_tree(dest) == {"model.onnx": src.read_bytes()}
    assert everything(dest) == [STATE, "model.onnx"]  # no staging leftovers
    state = json.loads((dest / STATE).read_text())
    assert (state["digest"], state["reference"]) == (result.digest, f"{registry.host}/{repo}:1.0")


def test_directory_round_trip_bit_exact_with_modes(oc, registry, repo, model_dir, tmp_path):
    ref = f"{registry.host}/{repo}:v1"
    result = oc.push(model_dir, ref)
    assert result.uploaded_blobs == 4  # 5 files, two share a digest
    dest = tmp_path / "out"
    oc.pull(ref, dest)
    assert model_tree(dest) == tree(model_dir)
    assert stat.S_IMODE((dest / "sub/deeper/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "weights.bin").stat().st_mode) == stat.S_IMODE((model_dir / "weights.bin").stat().st_mode)


def test_manifest_and_config_as_documented(oc, registry, repo, model_dir, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    ref = f"{registry.host}/{repo}:2.1"
    oc.push(
        model_dir, ref, description="d", framework="pytorch", format="safetensors", license="MIT",
        authors=["A", "B"], labels={"team": "x"}, metrics={"acc": 0.9}, params={"lr": 0.01},
        datasets=["s3://b/train.csv@sha256:" + "1" * 64, "https://data/x"], run_id="r1", run_uri="http://mlflow/r1",
    )
    fetched = oc.registry.get_manifest(Reference.parse(ref))
    m = Manifest.parse(fetched.raw)
    assert m.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert m.artifact_type == ARTIFACT_TYPE and m.config.media_type == CONFIG_MEDIA_TYPE
    assert all(layer.media_type == LAYER_MEDIA_TYPE for layer in m.layers)
    assert [layer.annotations[ANNOTATION_TITLE] for layer in m.layers] == sorted(tree(model_dir))
    assert m.annotations["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert m.annotations["org.opencontainers.image.version"] == "2.1"
    assert m.annotations["org.opencontainers.image.licenses"] == "MIT"
    assert m.annotations["org.opencontainers.image.description"] == "d"
    config = json.loads(oc.registry.fetch_blob_bytes(Reference.parse(ref), m.config))
    assert config["schemaVersion"] == 1 and config["name"] == repo.rsplit("/", 1)[-1]
    assert config["metrics"] == {"acc": 0.9} and config["params"] == {"lr": 0.01}
    assert config["authors"] == ["A", "B"] and config["labels"] == {"team": "x"}
    assert config["lineage"]["datasets"] == [
        {"uri": "s3://b/train.csv", "digest": "sha256:" + "1" * 64}, {"uri": "https://data/x", "digest": None}]
    assert config["lineage"]["run"] == {"id": "r1", "uri": "http://mlflow/r1"}
    assert config["tool"] == {"name": "ocimodel", "version": ocimodel.__version__}
    files = {f["path"]: f for f in config["files"]}
    assert files["sub/deeper/run.sh"]["mode"] == 0o755
    assert {f["path"]: f["digest"] for f in config["files"]} == {l.title: l.digest for l in m.layers}
    info = oc.inspect(ref)
    assert info.digest == m.digest and info.config.description == "d"


def test_second_push_uploads_no_blob(oc, registry, repo, model_dir):
    first = oc.push(model_dir, f"{registry.host}/{repo}:a")
    second = oc.push(model_dir, f"{registry.host}/{repo}:b")
    assert first.uploaded_blobs == 4
    assert (second.uploaded_blobs, second.skipped_blobs) == (0, 4)


def test_reproducible_digest_with_source_date_epoch(oc, registry, repo, model_dir, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
    a = oc.push(model_dir, f"{registry.host}/{repo}:1", version="1", code=False)
    b = oc.push(model_dir, f"{registry.host}/{repo}:2", version="1", code=False)
    assert a.digest == b.digest
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000001")
    assert oc.push(model_dir, f"{registry.host}/{repo}:3", version="1", code=False).digest != a.digest


def test_git_lineage_detected_and_git_dir_skipped(oc, registry, repo, tmp_path):
    import subprocess

    root = tmp_path / "proj"
    root.mkdir()
    (root / "w.bin").write_bytes(b"weights")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for cmd in (["init", "-q"], ["remote", "add", "origin", "https://user:secret@example.com/acme/m.git"],
                ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, env=env)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    result = oc.push(root, f"{registry.host}/{repo}:g")
    assert [f.path for f in result.files] == ["w.bin"]  # .git skipped
    code = result.config.lineage.code
    assert code.commit == commit and code.dirty is False
    assert code.remote == "https://example.com/acme/m.git"  # credentials stripped
    (root / "w.bin").write_bytes(b"changed")
    assert oc.push(root, f"{registry.host}/{repo}:h").config.lineage.code.dirty is True


def test_symlink_outside_model_refused(oc, registry, repo, tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("do not share")
    (root / "link").symlink_to(secret)
    with pytest.raises(UsageError, match="points outside the model directory"):
        oc.push(root, f"{registry.host}/{repo}:x")
    # A symlink inside the model is stored as the file it points to.
    (root / "link").unlink()
    (root / "real.txt").write_text("inside")
    (root / "alias.txt").symlink_to("real.txt")
    result = oc.push(root, f"{registry.host}/{repo}:y")
    assert sorted(f.path for f in result.files) == ["alias.txt", "real.txt"]


def test_tags_sorted(oc, registry, repo, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for tag in ["b", "10", "a", "2", "latest"]:
        oc.push(src, f"{registry.host}/{repo}:{tag}")
    assert oc.tags(f"{registry.host}/{repo}") == sorted(["b", "10", "a", "2", "latest"])


def test_tampered_blob_refused_and_nothing_left(oc, registry, repo, tmp_path):
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(200_000))
    result = oc.push(src, f"{registry.host}/{repo}:t")
    blob = registry.blob_path(result.files[0].digest)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        oc.pull(f"{registry.host}/{repo}:t", dest)
    assert not dest.exists()
    # An existing destination is left exactly as it was.
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DigestMismatchError):
        oc.pull(f"{registry.host}/{repo}:t", dest)
    assert everything(dest) == ["keep.txt"]


def _push_raw_manifest(oc, ref: Reference, titles: list[str]) -> None:
    config = oc.registry.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, json.dumps({"schemaVersion": 1, "name": "evil"}).encode())
    layers = []
    for i, title in enumerate(titles):
        layers.append(
            Descriptor(media_type=LAYER_MEDIA_TYPE, digest=oc.registry.push_blob_bytes(ref, LAYER_MEDIA_TYPE, f"pwn{i}".encode()).digest,
                       size=len(f"pwn{i}"), annotations={ANNOTATION_TITLE: title})
        )
    manifest = Manifest.build(config, layers, artifact_type=ARTIFACT_TYPE)
    oc.registry.put_manifest(ref, manifest.raw, manifest.media_type)


@pytest.mark.parametrize("title", ["../x", "/abs", "a/../../x", "ok/../../../x", "..", "a\\..\\x"])
def test_hostile_titles_refused_write_nothing(oc, registry, repo, tmp_path, title):
    ref = Reference.parse(f"{registry.host}/{repo}:evil")
    _push_raw_manifest(oc, ref, ["fine.txt", title])
    area = tmp_path / "area"
    base = area / "base"
    dest = base / "dest"
    base.mkdir(parents=True)
    with pytest.raises(UnsafeContentError):
        oc.pull(str(ref), dest)
    assert everything(area) == ["base"]  # no dest, nothing beside it, nothing above it
    assert not Path("/abs").exists()


def test_symlinked_parent_in_destination_refused(oc, registry, repo, tmp_path):
    ref = Reference.parse(f"{registry.host}/{repo}:sl")
    _push_raw_manifest(oc, ref, ["sub/file.txt"])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafeContentError, match="symlink"):
        oc.pull(str(ref), dest)
    assert everything(outside) == []


def test_artifact_type_checked_and_include(oc, registry, repo, model_dir, tmp_path):
    ref = Reference.parse(f"{registry.host}/{repo}:other")
    config = oc.registry.push_blob_bytes(ref, "application/vnd.oci.empty.v1+json", b"{}")
    blob = oc.registry.push_blob_bytes(ref, "application/octet-stream", b"hello")
    layer = Descriptor(media_type=blob.media_type, digest=blob.digest, size=blob.size, annotations={ANNOTATION_TITLE: "hello.txt"})
    m = Manifest.build(config, [layer], artifact_type="application/vnd.example.thing")
    oc.registry.put_manifest(ref, m.raw, m.media_type)
    with pytest.raises(UsageError, match="not an ocimodel model .*--allow-any-type"):
        oc.pull(str(ref), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    oc.pull(str(ref), tmp_path / "b", allow_any_type=True)
    assert model_tree(tmp_path / "b") == {"hello.txt": b"hello"}

    oc.push(model_dir, f"{registry.host}/{repo}:m")
    oc.pull(f"{registry.host}/{repo}:m", tmp_path / "c", include=["sub/*"])
    assert sorted(model_tree(tmp_path / "c")) == ["sub/deeper/run.sh", "sub/ünïcødé 名前.json"]


def test_missing_tag_is_not_found(oc, registry, repo, tmp_path):
    with pytest.raises(NotFoundError):
        oc.pull(f"{registry.host}/{repo}:nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_pull_by_digest_and_module_functions(registry, repo, tmp_path):
    src = tmp_path / "w"
    src.write_bytes(b"abc" * 1000)
    pushed = ocimodel.push(src, f"{registry.host}/{repo}:d", connection=Connection(plain_http=True))
    pulled = ocimodel.pull(f"{registry.host}/{repo}@{pushed.digest}", tmp_path / "o", connection=Connection(plain_http=True))
    assert pulled.digest == pushed.digest and (tmp_path / "o" / "w").read_bytes() == src.read_bytes()
    assert ocimodel.inspect(f"{registry.host}/{repo}:d", connection=Connection(plain_http=True)).digest == pushed.digest
    assert ocimodel.tags(f"{registry.host}/{repo}", connection=Connection(plain_http=True)) == ["d"]


def test_oras_py_pulls_ocimodel_artifact(oc, registry, repo, model_dir, tmp_path):
    import oras.client

    ref = f"{registry.host}/{repo}:oras"
    oc.push(model_dir, ref)
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    out = tmp_path / "oras-out"
    client.pull(target=ref, outdir=str(out))
    assert tree(out) == tree(model_dir)  # oras-py writes no state file


def test_flat_pull_of_new_version_removes_files_the_old_one_had(oc, registry, repo, tmp_path):
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for d in (v1, v2):
        (d / "sub").mkdir(parents=True)
        (d / "common.bin").write_bytes(b"same")
    (v1 / "sub" / "old.bin").write_bytes(b"only in v1")
    (v2 / "new.bin").write_bytes(b"only in v2")
    oc.push(v1, f"{registry.host}/{repo}:1")
    oc.push(v2, f"{registry.host}/{repo}:2")
    dest = tmp_path / "out"
    oc.pull(f"{registry.host}/{repo}:1", dest)
    (dest / "mine.txt").write_text("a file the user put there")
    again = oc.pull(f"{registry.host}/{repo}:1", dest)
    assert again.skipped  # state file: same digest, files intact
    oc.pull(f"{registry.host}/{repo}:2", dest)
    assert model_tree(dest) == {"common.bin": b"same", "new.bin": b"only in v2", "mine.txt": b"a file the user put there"}
    assert not (dest / "sub").exists()  # emptied by removing v1's file


def test_versioned_pull_refused_or_corrupt_leaves_volume_empty(oc, registry, repo, tmp_path):
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(100_000))
    pushed = oc.push(src, f"{registry.host}/{repo}:v")
    blob = registry.blob_path(pushed.files[0].digest)
    blob.write_bytes(b"x" * 100_000)
    volume = tmp_path / "volume"
    volume.mkdir()
    with pytest.raises(DigestMismatchError):
        oc.pull(f"{registry.host}/{repo}:v", volume, layout="versioned")
    assert everything(volume) == []
    with pytest.raises(DigestMismatchError):
        oc.pull(f"{registry.host}/{repo}:v", tmp_path / "new-volume", layout="versioned")
    assert not (tmp_path / "new-volume").exists()
