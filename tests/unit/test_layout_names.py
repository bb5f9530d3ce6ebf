"""Layout references as skopeo spells them, and index.json amended as skopeo and oras do."""

from __future__ import annotations

import pytest

from ocimodel.descriptor import ANNOTATION_REF_NAME, MANIFEST_V1, Descriptor
from ocimodel.errors import IntegrityError, InvalidReferenceError
from ocimodel.layout.index import LayoutIndex
from ocimodel.layout.names import LayoutReference, is_layout_reference, parse_layout_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, expected", [
    ("oci:/srv/l", LayoutReference("oci", "/srv/l")),
    ("oci:rel/dir:v1.0", LayoutReference("oci", "rel/dir", tag="v1.0")),
    ("oci:d:example.com/ns/repo:1.0", LayoutReference("oci", "d", tag="example.com/ns/repo:1.0")),
    (f"oci:d@{DIGEST}", LayoutReference("oci", "d", digest=DIGEST)),
    ("oci-archive:m.tar:prod", LayoutReference("oci-archive", "m.tar", tag="prod")),
    ("oci:my@dir", LayoutReference("oci", "my@dir")),
])
def test_references_split_at_the_first_colon(text, expected):
    assert parse_layout_reference(text) == expected
    assert is_layout_reference(text)


@pytest.mark.parametrize("text, fragment", [
    ("oci:", "names no path"),
    ("oci::v1", "names no path"),
    ("oci:d:bad tag", "invalid layout tag"),
    ("oci:d:-x", "invalid layout tag"),
    ("oci:d:a_", "invalid layout tag"),
    ("oci:d@sha256:zz", "not a sha256 digest"),
])
def test_bad_references_are_usage_errors(text, fragment):
    with pytest.raises(InvalidReferenceError, match=fragment):
        parse_layout_reference(text)


def test_registry_references_are_not_layouts():
    assert not is_layout_reference("localhost:5000/oci:v1")
    assert not is_layout_reference("oci/repo:v1")


def entry(n: int) -> Descriptor:
    return Descriptor(MANIFEST_V1, "sha256:" + f"{n:02x}" * 32, 100 + n)


def names(index: LayoutIndex) -> list[tuple[str, str | None]]:
    return [(e.digest[7:9], e.annotations.get(ANNOTATION_REF_NAME)) for e in index.entries]


def test_moving_a_tag_leaves_the_old_entry_unnamed():
    index = LayoutIndex().with_entry(entry(1), "v").with_entry(entry(2), "v")
    assert names(index) == [("01", None), ("02", "v")]
    assert index.find("v") == index.entries[1]


def test_an_unnamed_entry_is_listed_once_and_named_in_place():
    index = LayoutIndex().with_entry(entry(1), None).with_entry(entry(1), None)
    assert names(index) == [("01", None)]
    assert names(index.with_entry(entry(1), "v")) == [("01", "v")]
    assert names(index.with_entry(entry(1), "v").with_entry(entry(1), None)) == [("01", "v")]


def test_removing_a_tag_keeps_the_manifest_listed():
    index = LayoutIndex().with_entry(entry(1), "a").with_entry(entry(2), "b")
    assert names(index.without_name("a")) == [("01", None), ("02", "b")]
    assert names(index.without_digest(entry(2).digest)) == [("01", "a")]


def test_an_index_round_trips_and_skopeo_s_form_reads():
    index = LayoutIndex().with_entry(entry(1), "a")
    assert LayoutIndex.parse(index.to_raw(), "oci:x") == index
    skopeo = b'{"schemaVersion":2,"manifests":[]}'
    assert LayoutIndex.parse(skopeo, "oci:x").entries == ()
    with pytest.raises(IntegrityError, match="schemaVersion"):
        LayoutIndex.parse(b'{"manifests":[]}', "oci:x")


def test_a_model_pushed_into_a_layout_is_named_after_its_path():
    from ocimodel.transfer.push import _default_name

    assert [_default_name(s) for s in ("oci:churn", "oci:models/churn", "oci-archive:churn.tar",
                                       "oci-archive:/a/b/churn.tar", "127.0.0.1:5000/team/churn")] == ["churn"] * 5
