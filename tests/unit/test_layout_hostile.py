"""Hostile layouts and archives are refused with one clear error and nothing written to the
pull's destination: links anywhere in the layout, digests and sizes that lie, a huge or deeply
nested index, entries escaping blobs/, missing files, and tar members a layout never holds."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ocimodel import api
from ocimodel.api import Client
from ocimodel.errors import ExitCode, OcimodelError


@pytest.fixture
def layout(tmp_path) -> tuple[Path, str]:
    """A layout holding one two-file model tagged v1, and its manifest digest."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "a.txt").write_text("hello\n")
    (model / "b.txt").write_text("world\n")
    result = api.push(model, f"oci:{tmp_path / 'l'}:v1", code=False, use_cache=False)
    return tmp_path / "l", result.digest


def blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def layer_digests(root: Path, digest: str) -> list[str]:
    return [d["digest"] for d in json.loads(blob(root, digest).read_text())["layers"]]


def refused(ref: str, dest: Path, code: int, fragment: str) -> None:
    with pytest.raises(OcimodelError) as caught:
        api.pull(ref, dest, use_cache=False)
    assert caught.value.exit_code == code, caught.value
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not dest.exists() or [p.name for p in dest.iterdir() if not p.name.startswith(".ocimodel")] == []


def test_the_intact_layout_pulls(layout, tmp_path):
    root, digest = layout
    assert api.pull(f"oci:{root}:v1", tmp_path / "out", use_cache=False).digest == digest


def test_a_blob_with_other_content_is_refused(layout, tmp_path):
    root, digest = layout
    target = blob(root, layer_digests(root, digest)[0])
    target.write_text("HELLO\n")  # same size, other bytes
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "digest")


def test_a_manifest_with_other_content_is_refused(layout, tmp_path):
    root, digest = layout
    path = blob(root, digest)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"schemaVersion":2', b'"schemaVersion":3'))
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "digest")


def test_a_blob_that_is_a_symlink_is_refused(layout, tmp_path):
    root, digest = layout
    target = blob(root, layer_digests(root, digest)[0])
    outside = tmp_path / "outside"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "symbolic link")


def test_a_blobs_directory_that_is_a_symlink_is_refused(layout, tmp_path):
    root, _ = layout
    moved = tmp_path / "elsewhere"
    (root / "blobs" / "sha256").rename(moved)
    (root / "blobs" / "sha256").symlink_to(moved)
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "symbolic link")


def test_an_index_json_that_is_a_symlink_is_refused(layout, tmp_path):
    root, _ = layout
    (tmp_path / "index.json").write_bytes((root / "index.json").read_bytes())
    (root / "index.json").unlink()
    (root / "index.json").symlink_to(tmp_path / "index.json")
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "symbolic link")


def test_an_entry_whose_size_lies_is_refused(layout, tmp_path):
    root, _ = layout
    index = json.loads((root / "index.json").read_text())
    index["manifests"][0]["size"] -= 1
    (root / "index.json").write_text(json.dumps(index))
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "bytes")


@pytest.mark.parametrize("digest", ["sha256:../../../etc/passwd", "sha256:" + "A" * 64, "sha512:" + "a" * 128])
def test_an_entry_pointing_outside_blobs_is_refused(layout, tmp_path, digest):
    root, _ = layout
    index = json.loads((root / "index.json").read_text())
    index["manifests"][0]["digest"] = digest
    (root / "index.json").write_text(json.dumps(index))
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "index.json")


def test_a_huge_index_is_refused(layout, tmp_path):
    root, _ = layout
    (root / "index.json").write_bytes(b'{"schemaVersion":2,"manifests":[],"x":"' + b"a" * (5 * 2**20) + b'"}')
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "limit")


def test_a_deeply_nested_index_is_refused(layout, tmp_path):
    root, _ = layout
    (root / "index.json").write_bytes(b'{"schemaVersion":2,"manifests":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.INTEGRITY, "nested")


def test_a_missing_blob_is_not_found(layout, tmp_path):
    root, digest = layout
    blob(root, layer_digests(root, digest)[1]).unlink()
    refused(f"oci:{root}:v1", tmp_path / "out", ExitCode.NOT_FOUND, "missing")


def test_a_missing_tag_is_not_found(layout, tmp_path):
    root, _ = layout
    refused(f"oci:{root}:v2", tmp_path / "out", ExitCode.NOT_FOUND, "v2")


@pytest.mark.parametrize("header, code, fragment", [
    (None, ExitCode.USAGE, "not an OCI image layout"),
    (b'{"imageLayoutVersion":"2.0.0"}', ExitCode.INTEGRITY, "version"),
    (b"not json", ExitCode.INTEGRITY, "oci-layout"),
])
def test_a_bad_oci_layout_file_is_refused(layout, tmp_path, header, code, fragment):
    root, _ = layout
    if header is None:
        (root / "oci-layout").unlink()
    else:
        (root / "oci-layout").write_bytes(header)
    refused(f"oci:{root}:v1", tmp_path / "out", code, fragment)


def test_no_layout_at_all_is_not_found(tmp_path):
    refused(f"oci:{tmp_path / 'nothing'}:v1", tmp_path / "out", ExitCode.NOT_FOUND, "does not exist")
    refused(f"oci-archive:{tmp_path / 'nothing.tar'}:v1", tmp_path / "out", ExitCode.NOT_FOUND, "does not exist")


def test_a_push_into_a_directory_that_is_not_a_layout_writes_nothing(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    (tmp_path / "m.txt").write_text("model")
    with pytest.raises(OcimodelError) as caught:
        api.push(tmp_path / "m.txt", f"oci:{other}:v1", code=False, use_cache=False)
    assert caught.value.exit_code == ExitCode.USAGE and "neither empty nor an OCI image layout" in str(caught.value)
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


# -- archives ---------------------------------------------------------------------------------------


def archive_of(root: Path, path: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w") as out:
        for member in sorted(root.rglob("*")):
            if member.name != ".ocimodel.lock":
                out.add(member, arcname=str(member.relative_to(root)), recursive=False)
        for info, data in extra:
            out.addfile(info, io.BytesIO(data) if data is not None else None)


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def test_an_archive_of_a_good_layout_pulls(layout, tmp_path):
    root, digest = layout
    archive_of(root, tmp_path / "good.tar", [])
    assert api.pull(f"oci-archive:{tmp_path / 'good.tar'}:v1", tmp_path / "out", use_cache=False).digest == digest


@pytest.mark.parametrize("extra, fragment", [
    (member("blobs/sha256/" + "0" * 64, tarfile.SYMTYPE, link="/etc/passwd"), "not a regular file"),
    (member("blobs/sha256/" + "1" * 64, tarfile.LNKTYPE, link="index.json"), "not a regular file"),
    (member("blobs/sha256/" + "2" * 64, tarfile.CHRTYPE), "not a regular file"),
    (member("../evil"), "climbs out"),
    (member("/etc/evil"), "absolute"),
    (member("index.json"), "repeated"),
    (member("manifest.json"), "not part of an OCI image layout"),
    (member("blobs/sha256/nothex"), "not part of an OCI image layout"),
])
def test_a_hostile_archive_is_refused_whole(layout, tmp_path, extra, fragment):
    root, _ = layout
    archive_of(root, tmp_path / "bad.tar", [extra])
    refused(f"oci-archive:{tmp_path / 'bad.tar'}:v1", tmp_path / "out", ExitCode.INTEGRITY, fragment)


def test_a_truncated_archive_is_refused(layout, tmp_path):
    root, _ = layout
    archive_of(root, tmp_path / "whole.tar", [])
    data = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    refused(f"oci-archive:{tmp_path / 'cut.tar'}:v1", tmp_path / "out", ExitCode.INTEGRITY, "")


def test_a_failed_archive_push_leaves_the_archive_as_it_was(layout, tmp_path):
    root, _ = layout
    archive = tmp_path / "keep.tar"
    archive_of(root, archive, [])
    before = archive.read_bytes()
    with pytest.raises(OcimodelError):
        api.push(tmp_path / "no-such-model", f"oci-archive:{archive}:v2", code=False, use_cache=False)
    assert archive.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keep.tar")] == []


def test_a_layout_being_created_reads_as_empty_not_as_foreign(tmp_path):
    """What a writer has made before its oci-layout file (written last): another thread of the
    same copy, reading meanwhile, sees no models rather than "not an OCI image layout"."""
    root = tmp_path / "new"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (root / ".ocimodel.lock").write_text("")
    (tmp_path / "empty").mkdir()
    with Client() as client:
        for directory in (root, tmp_path / "empty"):  # the same answers as an empty directory
            target = client.locate(f"oci:{directory}:v1").target
            assert target.resolve("v1") is None and not target.blob_exists("sha256:" + "0" * 64)
            with pytest.raises(OcimodelError, match="no OCI image layout there"):
                target.tags()
