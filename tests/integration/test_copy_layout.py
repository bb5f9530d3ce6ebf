"""``ocimodel.copy`` between registries and OCI image layouts (``oci:DIR``, ``oci-archive:FILE``):
every digest kept, so verify and history answer the same at the far end."""

from __future__ import annotations

import json
import tarfile

from process_helpers import run
from test_copy import (  # noqa: F401 - fixtures
    PLAIN,
    comparable,
    key_password,
    key_policy,
    keypair,
    make_signed_model,
    signed_model,
    tls,
)

import ocimodel
from ocimodel.api import Client
from ocimodel.referrers import list_referrers


def test_registry_to_archive_to_another_registry(registry, tls_basic_registry, keypair, repo, tmp_path):
    ref, digest = make_signed_model(registry, repo, tmp_path, keypair)  # its own: the far side reuses its path
    archive = f"oci-archive:{tmp_path / 'm.tar'}"
    out = ocimodel.copy(ref, archive, connection=PLAIN, tags=True)
    assert out.digest == digest and set(out.tags) == {"2.0", "prod", "ocimodel.history.prod"}
    with tarfile.open(tmp_path / "m.tar") as tar:
        assert {"index.json", "oci-layout"} <= set(tar.getnames())

    with Client() as offline:  # nothing but the file: verify offline
        assert offline.verify(f"{archive}:2.0", key_policy(keypair)).digest == digest
        assert offline.verify(f"{archive}:prod", key_policy(keypair)).digest == digest

    far = f"{tls_basic_registry.host}/{repo}"
    back = ocimodel.copy(f"{archive}:prod", f"{far}:prod", to_connection=tls(tls_basic_registry), tags=True)
    assert back.digest == digest and set(back.tags) == {"prod", "2.0", "ocimodel.history.prod"}
    with Client(PLAIN) as src, Client(tls(tls_basic_registry)) as dst:
        assert dst.verify(f"{far}:prod", key_policy(keypair)).digest == digest
        base = ref.rsplit(":", 1)[0]
        for policy in (None, key_policy(keypair)):
            assert comparable(dst.history(far, "prod", policy=policy)) == comparable(src.history(base, "prod", policy=policy))
        assert dst.history(far, "prod", policy=key_policy(keypair)).verified


def test_registry_to_directory_layout_is_resumable_and_idempotent(registry, signed_model, keypair, tmp_path):
    ref, digest = signed_model
    layout = f"oci:{tmp_path / 'dir'}"
    first = ocimodel.copy(ref, layout, connection=PLAIN)
    assert first.copied_blobs >= 3 and first.tags == ["2.0"]
    again = ocimodel.copy(ref, layout, connection=PLAIN)
    assert (again.copied_blobs, again.copied_manifests) == (0, 0)
    index = json.loads((tmp_path / "dir" / "index.json").read_text())
    named = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "2.0"]
    assert [m["digest"] for m in named] == [digest]
    with Client() as offline:
        target = offline.locate(f"{layout}:2.0").target
        assert len(list_referrers(target, digest)) >= 2  # the signature and prod's newest record
        assert offline.verify(f"{layout}:2.0", key_policy(keypair)).digest == digest


def test_layout_to_layout_and_no_referrers(registry, signed_model, keypair, tmp_path):
    ref, digest = signed_model
    one, two, bare = (f"oci:{tmp_path / name}" for name in ("one", "two", "bare"))
    ocimodel.copy(ref, one, connection=PLAIN)
    copied = ocimodel.copy(f"{one}:2.0", f"{two}:v2")
    assert copied.digest == digest and copied.tags == ["v2"]
    with Client() as offline:
        assert offline.verify(f"{two}:v2", key_policy(keypair)).digest == digest
    alone = ocimodel.copy(f"{one}@{digest}", bare, referrers=False)
    assert alone.referrers == [] and alone.tags == []
    with Client() as offline:
        assert list_referrers(offline.locate(f"{bare}@{digest}").target, digest) == []


def test_cli_archive_round_trip(registry, signed_model, keypair, repo, tmp_path, docker_config):
    ref, digest = signed_model
    archive = f"oci-archive:{tmp_path / 'cli.tar'}"
    env = {"DOCKER_CONFIG": str(docker_config)}
    out = run("copy", ref, archive, "--plain-http", "--tags", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["digest"] == digest
    dst = f"{registry.host}/{repo}-from-archive:2.0"
    out = run("copy", f"{archive}:2.0", dst, "--to-plain-http", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == digest
    out = run("verify", dst, "--key", str(keypair[1]), "--plain-http", env=env)
    assert out.returncode == 0, out.stderr
    missing = run("copy", f"oci-archive:{tmp_path / 'absent.tar'}:1.0", dst, "--to-plain-http", env=env)
    assert missing.returncode in (2, 4) and missing.stderr.startswith("error: "), missing.stderr
