"""The pure artifact format: descriptors, manifests, config, titles (no registry)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimodel.config import CodeInfo, FileInfo, Lineage, ModelConfig, Parent, parse_key_values
from ocimodel.descriptor import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    EMPTY_DIGEST,
    EMPTY_JSON,
    Descriptor,
    Index,
    Manifest,
    sha256_digest,
)
from ocimodel.errors import SchemaError, UnsafeContentError, UsageError
from ocimodel.titles import validate_titles


def test_empty_descriptor_digest_is_the_oci_constant():
    assert sha256_digest(EMPTY_JSON) == EMPTY_DIGEST


def test_manifest_build_parse_round_trip_keeps_bytes():
    config = Descriptor.from_bytes(CONFIG_MEDIA_TYPE, b'{"schemaVersion":1}')
    layer = Descriptor(media_type="application/x", digest=EMPTY_DIGEST, size=2, annotations={"org.opencontainers.image.title": "a"})
    m = Manifest.build(config, [layer], artifact_type=ARTIFACT_TYPE, annotations={"k": "v"})
    parsed = Manifest.parse(m.raw)
    assert parsed.raw == m.raw and parsed.digest == m.digest
    assert parsed.layers[0].title == "a" and parsed.artifact_type == ARTIFACT_TYPE
    # Deterministic: building twice gives the same bytes.
    assert Manifest.build(config, [layer], artifact_type=ARTIFACT_TYPE, annotations={"k": "v"}).raw == m.raw
    # Raw bytes with different whitespace keep their own digest.
    spaced = json.dumps(json.loads(m.raw), indent=2).encode()
    assert Manifest.parse(spaced).digest == sha256_digest(spaced) != m.digest


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion":1}', "schemaVersion must be 2"),
        (b'{"schemaVersion":2,"config":{},"layers":[]}', "field 'mediaType'"),
        (b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:xx","size":1},"layers":[]}', "invalid digest"),
        (b'{"schemaVersion":2,"config":{"mediaType":"a","digest":"' + EMPTY_DIGEST.encode() + b'","size":-1},"layers":[]}', "negative size"),
        (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}', "not an image manifest"),
    ],
)
def test_manifest_parse_refuses_malformed(raw, fragment):
    with pytest.raises(SchemaError) as err:
        Manifest.parse(raw)
    assert fragment in str(err.value)


def test_manifest_over_4_mib_refused():
    with pytest.raises(SchemaError, match="4 MiB"):
        Manifest.parse(b" " * (4 * 1024 * 1024 + 1))


def test_index_round_trip():
    d = Descriptor(media_type="application/vnd.oci.image.manifest.v1+json", digest=EMPTY_DIGEST, size=2, artifact_type="x")
    idx = Index.build([d])
    assert Index.parse(idx.raw).manifests == (d,)


def test_config_round_trip_and_schema_version():
    cfg = ModelConfig(
        name="m",
        version="1",
        files=(FileInfo("a/b.bin", EMPTY_DIGEST, 2, 0o755),),
        lineage=Lineage(parents=(Parent("r:1", EMPTY_DIGEST),), code=CodeInfo("git@x:y", "abc", True)),
        metrics={"acc": 0.9},
    )
    assert ModelConfig.from_bytes(cfg.to_bytes()) == cfg
    obj = json.loads(cfg.to_bytes())
    obj["schemaVersion"] = 99
    with pytest.raises(SchemaError, match="schemaVersion 99 is not supported"):
        ModelConfig.from_bytes(json.dumps(obj).encode())
    with pytest.raises(SchemaError, match="not valid JSON"):
        ModelConfig.from_bytes(b"{")


def test_key_values_typed():
    assert parse_key_values(["acc=0.93", "n=3", "ok=true", "s=adam", "e=x=y"], "metric", typed=True) == {
        "acc": 0.93, "n": 3, "ok": True, "s": "adam", "e": "x=y"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_key_values(["novalue"], "label", typed=False)
    # Only numbers are parsed: anything else is kept as text, however deeply it nests.
    deep = "[" * 100_000
    assert parse_key_values([f"x={deep}", "y=[1]", "z=1e400", "w=-0.5e-3"], "metric", typed=True) == {
        "x": deep, "y": "[1]", "z": "1e400", "w": -0.5e-3}


@pytest.mark.parametrize(
    "titles, fragment",
    [
        (["../x"], "'..'"),
        (["/abs"], "absolute"),
        (["a/../../x"], "'..'"),
        (["C:x"], "absolute"),
        (["a\\b"], "backslash"),
        (["a\x00b"], "NUL"),
        (["a//b"], "empty"),
        (["./a"], "'.'"),
        ([""], "no org.opencontainers.image.title"),
        ([None], "no org.opencontainers.image.title"),
        (["a", "a"], "appears twice"),
        (["Model.bin", "model.bin"], "case-insensitive"),
        (["a", "a/b"], "to be a directory"),
        ([".ocimodel/state"], "reserved"),
        (["a\nb"], "control"),
    ],
)
def test_hostile_titles_refused(titles, fragment):
    with pytest.raises(UnsafeContentError) as err:
        validate_titles(titles)
    assert fragment in str(err.value)


def test_valid_titles_accepted():
    assert validate_titles(["a/b/c.bin", "a/d", "ünïcode/名前.txt", "x y"]) == ["a/b/c.bin", "a/d", "ünïcode/名前.txt", "x y"]


@given(st.binary(max_size=2000))
def test_manifest_parse_never_crashes(raw):
    try:
        Manifest.parse(raw)
    except SchemaError as exc:
        assert str(exc)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5), max_leaves=20))
def test_config_parse_never_crashes(obj):
    for candidate in (obj, {"schemaVersion": 1, "name": "x", **(obj if isinstance(obj, dict) else {})}):
        try:
            ModelConfig.from_bytes(json.dumps(candidate).encode())
        except SchemaError as exc:
            assert str(exc)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("labels", {"k": ["not", "a", "string"]}, "'labels' must map names to strings"),
        ("metrics", {"acc": {"nested": 1}}, "'metrics' values must be"),
        ("params", {"p": [1]}, "'params' values must be"),
        ("lineage", [], "'lineage' must be an object"),
        ("lineage", {"parents": [{"reference": "r", "digest": "sha256:../x"}]}, "invalid digest"),
        ("lineage", {"parents": ["r"]}, "entries must be objects"),
        ("lineage", {"datasets": [{"uri": 7}]}, "'uri' must be a string"),
        ("lineage", {"code": {"remote": 7}}, "'lineage.code.remote' must be a str"),
        ("lineage", {"code": {"remote": "r", "token": "x"}}, "unknown keys 'token'"),
        ("lineage", {"run": {"id": ["x"]}}, "'lineage.run.id' must be a str"),
        ("tool", {"name": 1}, "'tool' must map names to strings"),
    ],
)
def test_config_fields_of_the_wrong_type_are_refused(field, value, fragment):
    with pytest.raises(SchemaError) as err:
        ModelConfig.from_bytes(json.dumps({"schemaVersion": 1, "name": "m", field: value}).encode())
    assert fragment in str(err.value)


@pytest.mark.parametrize("bad", ["sha256:" + "a" * 64 + "\n", "sha256:" + "a" * 64 + "\n\n"])
def test_digest_with_trailing_newline_is_refused(bad):
    from ocimodel.errors import InvalidReferenceError
    from ocimodel.reference import validate_digest, validate_tag

    with pytest.raises(InvalidReferenceError):
        validate_digest(bad)
    with pytest.raises(InvalidReferenceError):
        validate_tag("v1\n")


@pytest.mark.parametrize("title", [".ocimodel-state.json", ".ocimodel.lock", ".ocimodel-tmp-1/x", ".ocimodel-partial/sha256-x"])
def test_titles_naming_our_own_files_are_refused(title):
    with pytest.raises(UnsafeContentError, match="reserved"):
        validate_titles([title])
