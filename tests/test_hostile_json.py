"""Hostile JSON: every document ocimodel parses from outside (manifest, index, model config,
promotion record, the pull state file) ends in one error of ours, never a traceback, whatever
its nesting depth or the types in it. Python's json raises RecursionError (not ValueError)
past about a thousand levels; these tests go well past that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ocimodel.config import CodeInfo, FileEntry, Lineage, ModelConfig, Parent
from ocimodel.descriptor import (
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    EMPTY_DIGEST,
    LAYER_MEDIA_TYPE,
    Descriptor,
    Index,
    Manifest,
    media_type_of,
)
from ocimodel.dirfd import DirHandle
from ocimodel.errors import SchemaError
from ocimodel.installed import STATE_NAME, InstalledFile, InstallState, read_state
from ocimodel.jsondoc import MAX_DEPTH
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.credentials import CredentialStore
from ocimodel.stages import Actor, PromotionRecord

DIGEST = "sha256:" + "ab" * 32
LAYER = Descriptor(media_type=LAYER_MEDIA_TYPE, digest=EMPTY_DIGEST, size=2, annotations={ANNOTATION_TITLE: "a.bin"})
CONFIG = ModelConfig(
    name="m", version="1", files=(FileEntry("a.bin", EMPTY_DIGEST, 2),), metrics={"acc": 0.5}, labels={"k": "v"},
    lineage=Lineage(parents=(Parent("r/x:1", DIGEST),), code=CodeInfo("https://h/r.git", "abc", False)),
)


def _state_outcome(raw: bytes) -> object:
    """read_state never raises: a bad state is (None, reason)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / STATE_NAME).write_bytes(raw)
        with DirHandle.open(Path(tmp)) as top:
            state, reason = read_state(top)
    if state is None:
        assert reason and "\n" not in reason
        raise SchemaError(reason)
    return state


# name -> (a valid document, its parser)
KINDS: dict[str, tuple[dict[str, Any], Callable[[bytes], object]]] = {
    "manifest": (json.loads(Manifest.build(Descriptor.from_bytes(CONFIG_MEDIA_TYPE, b"{}"), [LAYER],
                                           artifact_type=ARTIFACT_TYPE, annotations={"a": "b"}).raw), Manifest.parse),
    "index": (json.loads(Index.build([LAYER]).raw), Index.parse),
    "config": (CONFIG.to_dict(), ModelConfig.from_bytes),
    "record": (PromotionRecord("prod", "r/x", DIGEST, None, None, Actor("me", "explicit", {"ci": "x"}), "t", "why",
                               {"name": "ocimodel"}).to_dict(), PromotionRecord.from_bytes),
    "state": (InstallState("h/r:1", DIGEST, "flat", (InstalledFile("a.bin", EMPTY_DIGEST, 2),)).to_dict(), _state_outcome),
}


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"k":' * depth + "1" + "}" * depth)


def _outcome(parse: Callable[[bytes], object], raw: bytes) -> str | None:
    """None if parsed; the one-line message of our SchemaError otherwise (anything else fails)."""
    try:
        parse(raw)
    except SchemaError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return message
    return None


@pytest.mark.parametrize("name", sorted(KINDS))
def test_valid_documents_parse(name):
    document, parse = KINDS[name]
    assert _outcome(parse, json.dumps(document).encode()) is None


@pytest.mark.parametrize("name", sorted(KINDS))
@settings(max_examples=40, deadline=None)
@given(depth=st.integers(0, 3000) | st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100_000]),
       shape=st.sampled_from(["list", "object"]), where=st.sampled_from(["top", "field", "deep"]))
def test_any_nesting_depth_gives_our_error(name, depth, shape, where):
    document, parse = KINDS[name]
    key = sorted(document)[0] if where == "field" else "extra"
    if where == "deep":  # inside an existing object, one level further down
        first_object = next((k for k, v in sorted(document.items()) if isinstance(v, dict)), None)
        key = first_object or key
    text = json.dumps({**document, key: "@@"}).replace('"@@"', _nested(depth, shape))
    message = _outcome(parse, text.encode())
    if depth + 1 > MAX_DEPTH:  # refused for its depth, or first for its size
        assert message is not None and (f"nested deeper than {MAX_DEPTH}" in message or "limit" in message)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.mark.parametrize("name", sorted(KINDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_wrong_type_anywhere_gives_our_error(name, data):
    document, parse = KINDS[name]
    document = json.loads(json.dumps(document))  # a copy to change
    node: Any = document
    # Walk down a random path, then put a random JSON value there.
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(_JSON)
        break
    _outcome(parse, json.dumps(document).encode())


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1]", "not a JSON object"),
    ],
)
def test_json_that_parsers_disagree_on_is_refused(name, raw, fragment):
    assert fragment in (_outcome(KINDS[name][1], raw) or "")


def test_media_type_of_deep_manifest_is_none_not_a_crash():
    assert media_type_of(b'{"mediaType":' + b"[" * 100_000) is None


# ------------------------------------------------------------------ end to end, real registry


@pytest.fixture
def client(registry, docker_config):
    with RegistryClient(plain_http=True, credentials=CredentialStore()) as c:
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
    from ocimodel.signing import keys
    from ocimodel.signing.storage import attach_bundle

    ref = Reference.parse(f"{registry.host}/{repo}:deep-bundle")
    blob = client.push_blob_bytes(ref, LAYER_MEDIA_TYPE, b"hi")
    layer = Descriptor(media_type=LAYER_MEDIA_TYPE, digest=blob.digest, size=2, annotations={ANNOTATION_TITLE: "a.bin"})
    config = client.push_blob_bytes(ref, CONFIG_MEDIA_TYPE, CONFIG.to_bytes())
    manifest = Manifest.build(config, [layer], artifact_type=ARTIFACT_TYPE)
    client.put_manifest(ref, manifest.raw, manifest.media_type)
    subject = Descriptor(media_type=manifest.media_type, digest=manifest.digest, size=len(manifest.raw))
    for bundle in (_nested(100_000, "list"), '{"verificationMaterial": {"x509CertificateChain": []}}',
                   '{"verificationMaterial": {"x509CertificateChain": {"certificates": {"a": 1}}}}'):
        attach_bundle(client, ref, subject, bundle.encode(), settle=0)
    _, public = keys.generate_keypair(tmp_path / "k", b"pw-for-test")

    shown = _cli("inspect", str(ref), docker_config=docker_config)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    _one_error_line(_cli("verify", str(ref), "--key", str(public), docker_config=docker_config), 5, "bad bundle")
