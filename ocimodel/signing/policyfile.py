"""Reading a verification policy file (JSON or YAML, e.g. a mounted Kubernetes ConfigMap key).

Only the parsing lives here: size cap, encoding, JSON-then-YAML, one mapping at the top, no key
given twice (JSON and YAML parsers keep the last duplicate silently, which would let a second
line quietly replace a rule). What the fields mean and whether they are usable is
:mod:`ocimodel.signing.policy`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocimodel.errors import UsageError

#: A policy is a few lines; anything larger is not one (and /dev/zero must not fill memory).
MAX_POLICY_FILE_SIZE = 64 * 1024


class _Duplicate(Exception):
    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = value
    return result


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_POLICY_FILE_SIZE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read policy file {path}: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_FILE_SIZE:
        raise UsageError(f"policy file {path} is larger than {MAX_POLICY_FILE_SIZE} bytes: not a policy")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"policy file {path} is not UTF-8 text") from None


def _load_yaml(text: str, path: Path) -> Any:
    import yaml  # type: ignore[import-untyped]  # (no stubs installed; a runtime dependency)

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader refusing a key given twice in one mapping."""

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        pairs = loader.construct_pairs(node, deep=True)
        keys = [k for k, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise _Duplicate(key)
        return dict(pairs)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise UsageError(f"policy file {path} is neither JSON nor valid YAML: {detail}") from None
    except TypeError:  # an unhashable key, e.g. a list used as a key
        raise UsageError(f"policy file {path}: a key is not a plain name") from None


def read_policy_file(path: Path) -> dict[Any, Any]:
    """The top-level mapping of the JSON or YAML policy file at ``path``.

    UsageError (one line, naming the file) for anything that is not a readable, small,
    UTF-8 mapping with each key given once.
    """
    text = _read_text(path)
    data: Any
    try:
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError:
            data = _load_yaml(text, path)
    except _Duplicate as dup:
        raise UsageError(f"policy file {path}: {dup.key!r} is given twice") from None
    except RecursionError:
        raise UsageError(f"policy file {path} is nested too deeply to be a policy") from None
    if not isinstance(data, dict):
        what = "nothing" if data is None else f"a {type(data).__name__}"
        raise UsageError(f"policy file {path} must hold a mapping of policy fields; it holds {what}")
    return data
