"""Hostile layer titles: whatever a registry sends, accepted titles stay inside DEST."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from ocimodel.errors import (
    DigestMismatchError,
    IntegrityError,
    SchemaError,
    SizeMismatchError,
    UnsafeContentError,
)
from ocimodel.titles import validate_titles

_title_parts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=0, max_codepoint=0x2FF), min_size=0, max_size=6
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_title_parts, min_size=1, max_size=4).map("/".join), min_size=1, max_size=5))
def test_accepted_titles_always_stay_inside_and_never_collide(titles):
    try:
        accepted = validate_titles(titles)
    except UnsafeContentError:
        return
    base = PurePosixPath("/dest")
    folded = set()
    for title in accepted:
        parts = PurePosixPath(title).parts
        assert parts and ".." not in parts and not PurePosixPath(title).is_absolute()
        assert (base / title).parts[: len(base.parts)] == base.parts
        assert not parts[0].startswith(".ocimodel")
        assert "\x00" not in title and "\\" not in title
        key = unicodedata.normalize("NFC", title).casefold()
        assert key not in folded
        folded.add(key)


def test_every_refusal_is_an_integrity_or_usage_error():
    # The CLI maps these to exit codes 6 and 2; a hostile registry must never cause a traceback.
    for error in (SchemaError, DigestMismatchError, SizeMismatchError, UnsafeContentError):
        assert issubclass(error, IntegrityError)
