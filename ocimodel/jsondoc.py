"""Parse JSON that came from outside (a registry, a state file) within bounds, or refuse it.

Every document ocimodel reads that someone else could have written (manifests, indexes, model
configs, promotion records, the pull state file) goes through :func:`load_object`, so hostile
JSON ends in one error of the caller's class with one line, never a traceback:

- a size limit, checked before parsing;
- a nesting limit: Python's parser raises ``RecursionError`` (not ``ValueError``) somewhere
  past about a thousand levels, and much less deep documents still cost stack in every
  consumer that walks them; none of ours is deeper than a few levels;
- duplicate keys are refused: parsers disagree on which one wins (Python takes the last, some
  the first), so such a document could mean one thing to the registry or another tool and
  another to us;
- ``NaN`` and ``Infinity`` are refused: they are not JSON (RFC 8259) and other parsers reject them.

Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import OcimodelError, SchemaError

MAX_DEPTH = 32  # ours nest at most 5 levels (config -> lineage -> parents -> [] -> {})


class _Refused(ValueError):
    """Raised from the parser's hooks; reported with the document's name."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key[:80]!r}")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _depth_of(value: Any, limit: int) -> int:
    """Nesting depth of ``value`` (a scalar is 0), counted without recursion; stops past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def load_object(
    raw: bytes | str,
    what: str,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    error: type[OcimodelError] = SchemaError,
) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object under the rules above; anything else raises ``error``
    with a one-line message naming ``what``."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise error(f"{what}: {size} bytes is over the {_size(max_bytes)} limit; refusing it")
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{what}: JSON nested deeper than {max_depth} levels; refusing it") from None
    except _Refused as exc:
        raise error(f"{what}: {exc}; refusing it") from None
    except (ValueError, UnicodeDecodeError) as exc:
        # The message of a decode error quotes no input beyond a position: safe to show.
        raise error(f"{what}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if _depth_of(value, max_depth) > max_depth:
        raise error(f"{what}: JSON nested deeper than {max_depth} levels; refusing it")
    if not isinstance(value, dict):
        raise error(f"{what}: not a JSON object")
    return value


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
