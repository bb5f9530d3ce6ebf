"""Hostile JSON: every document ocimodel parses from outside (manifest, index, model config,
promotion record, the pull state file) ends in one error of ours, never a traceback, whatever
its nesting depth or the types in it. Python's json raises RecursionError (not ValueError)
past about a thousand levels; these tests go well past that.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocimodel.config import CodeInfo, FileInfo, Lineage, ModelConfig, Parent
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
from ocimodel.errors import SchemaError
from ocimodel.jsondoc import MAX_DEPTH
from ocimodel.lifecycle.actor import Actor
from ocimodel.lifecycle.records import PromotionRecord
from ocimodel.transfer.dirfd import DirHandle
from ocimodel.transfer.installed import STATE_NAME, InstalledFile, InstallState, read_state

DIGEST = "sha256:" + "ab" * 32
LAYER = Descriptor(media_type=LAYER_MEDIA_TYPE, digest=EMPTY_DIGEST, size=2, annotations={ANNOTATION_TITLE: "a.bin"})
CONFIG = ModelConfig(
    name="m", version="1", files=(FileInfo("a.bin", EMPTY_DIGEST, 2),), metrics={"acc": 0.5}, labels={"k": "v"},
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


