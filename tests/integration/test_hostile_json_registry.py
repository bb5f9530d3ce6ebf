"""Hostile JSON served by a registry: one error line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_hostile_json import CONFIG, _nested

from ocimodel.descriptor import (
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    Descriptor,
    Manifest,
)
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore


@pytest.fixture
def client(registry, docker_config):
    with RegistryClient(Connection(plain_http=True), credentials=CredentialStore()) as c:
        yield c


def _cli(*args: str, docker_config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True, env=env, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], done.stderr


def test_registry_serving_deeply_nested_manifest_or_config(client, registry, repo, tmp_path, docker_config):
    ref = Reference.parse(f"{registry.host}/{repo}:deep-manifest")
    blob = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, b"hi")
    layer = Descriptor(media_type=LAYER_MEDIA_TYPE, digest=blob.digest, size=2, annotations={ANNOTATION_TITLE: "a.bin"})
    config = client.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, CONFIG.to_bytes())
    good = json.loads(Manifest.build(config, [layer], artifact_type=ARTIFACT_TYPE).raw)
    # The registry (Go) parses manifests to a depth of 10 000 and ignores unknown fields.
    deep = json.dumps({**good, "x": "@@"}).replace('"@@"', _nested(5000, "list")).encode()
    client.put_manifest(ref, deep, good["mediaType"])

    # A config blob is opaque to the registry: any depth gets through.
    config_ref = Reference.parse(f"{registry.host}/{repo}:deep-config")
    raw_config = json.dumps({**CONFIG.to_dict(), "labels": "@@"}).replace('"@@"', _nested(100_000, "object")).encode()
    deep_config = client.push_blob_bytes(config_ref, CONFIG_MEDIA_TYPE, raw_config)
    client.push_blob_bytes(config_ref, LAYER_MEDIA_TYPE, b"hi")
    client.put_manifest(config_ref, Manifest.build(deep_config, [layer], artifact_type=ARTIFACT_TYPE).raw, good["mediaType"])

    for reference in (ref, config_ref):
        dest = tmp_path / reference.tag
        _one_error_line(_cli("pull", str(reference), str(dest), docker_config=docker_config), 6, "nested deeper than")
        assert not dest.exists()
        _one_error_line(_cli("inspect", str(reference), docker_config=docker_config), 6, "nested deeper than")


def test_registry_serving_a_deeply_nested_or_mistyped_signature_bundle(client, registry, repo, tmp_path, docker_config):
    """A bundle is JSON anyone who can push may attach: inspect reads it unverified, verify and
    history parse it before any signature check. Nesting and wrong types are a bad bundle."""
    from ocimodel.registry.target import RegistryTarget
    from ocimodel.signing import keys
    from ocimodel.signing.bundles import attach_bundle

    ref = Reference.parse(f"{registry.host}/{repo}:deep-bundle")
    blob = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, b"hi")
    layer = Descriptor(media_type=LAYER_MEDIA_TYPE, digest=blob.digest, size=2, annotations={ANNOTATION_TITLE: "a.bin"})
    config = client.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, CONFIG.to_bytes())
    manifest = Manifest.build(config, [layer], artifact_type=ARTIFACT_TYPE)
    client.put_manifest(ref, manifest.raw, manifest.media_type)
    subject = Descriptor(media_type=manifest.media_type, digest=manifest.digest, size=len(manifest.raw))
    for bundle in (_nested(100_000, "list"), '{"verificationMaterial": {"x509CertificateChain": []}}',
                   '{"verificationMaterial": {"x509CertificateChain": {"certificates": {"a": 1}}}}'):
        attach_bundle(RegistryTarget(client, ref), subject, bundle.encode(), settle=0)
    _, public = keys.generate_keypair(tmp_path / "k", b"pw-for-test")

    shown = _cli("inspect", str(ref), docker_config=docker_config)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    _one_error_line(_cli("verify", str(ref), "--key", str(public), docker_config=docker_config), 5, "bad bundle")
