"""Validation of layer titles: the relative paths files are written to on pull.

Pure: no I/O. A title comes from a registry we may not trust, so anything that could
escape the destination, collide, or mean different things on different systems is refused
before a single byte is written.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from .errors import UnsafeContentError

MAX_TITLE_LENGTH = 4096
# Our own state lives under DEST/.ocimodel*: an artifact may not write there.
RESERVED_PREFIX = ".ocimodel"


def validate_title(title: str | None) -> str:
    """Return ``title`` if it is a safe relative POSIX path, else raise UnsafeContentError."""
    if title is None or title == "":
        raise UnsafeContentError("layer has no org.opencontainers.image.title annotation; cannot name the file")
    shown = repr(title)
    if len(title) > MAX_TITLE_LENGTH:
        raise UnsafeContentError(f"layer title {shown[:80]}... is longer than {MAX_TITLE_LENGTH} characters")
    if "\x00" in title:
        raise UnsafeContentError(f"layer title {shown} contains a NUL byte")
    if "\\" in title:
        raise UnsafeContentError(f"layer title {shown} contains a backslash")
    if title.startswith("/") or (len(title) > 1 and title[1] == ":"):
        raise UnsafeContentError(f"layer title {shown} is an absolute path")
    parts = title.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeContentError(f"layer title {shown} has an empty, '.' or '..' path component")
        if any(unicodedata.category(ch) == "Cc" for ch in part):
            raise UnsafeContentError(f"layer title {shown} contains control characters")
    if parts[0].startswith(RESERVED_PREFIX):
        raise UnsafeContentError(f"layer title {shown} uses the reserved name {RESERVED_PREFIX}*")
    return title


def validate_titles(titles: Iterable[str | None]) -> list[str]:
    """Validate every title and refuse duplicates, case collisions and file/dir clashes."""
    seen: dict[str, str] = {}
    out: list[str] = []
    for title in titles:
        valid = validate_title(title)
        # Case-insensitive and Unicode-normalised: two titles that would land on the same
        # file on macOS or Windows are refused everywhere, so an artifact means one thing.
        folded = unicodedata.normalize("NFC", valid).casefold()
        if folded in seen:
            other = seen[folded]
            if other == valid:
                raise UnsafeContentError(f"layer title {valid!r} appears twice")
            raise UnsafeContentError(f"layer titles {other!r} and {valid!r} collide on case-insensitive filesystems")
        seen[folded] = valid
        out.append(valid)
    # A title may not be both a file and a directory ("a" and "a/b").
    folded_files = set(seen)
    for folded, title in seen.items():
        parts = folded.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in folded_files:
                raise UnsafeContentError(f"layer title {title!r} needs {seen[prefix]!r} to be a directory, but it is a file")
    return out
