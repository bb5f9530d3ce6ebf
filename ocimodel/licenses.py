"""SPDX license expressions, and the allow-list a pull may hold a model's license to.

Pure: no I/O. ``A OR B`` is allowed if any branch is, ``A AND B`` only if every part is,
``ID WITH EXCEPTION`` is one id; a missing or unparsable license is refused when an
allow-list is given (:class:`LicenseError`, exit 5).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from .config import ModelConfig
from .descriptor import ANNOTATION_LICENSES
from .errors import PolicyError, UsageError


class LicenseError(PolicyError):
    """The model's SPDX license is missing or not on the allow-list (exit 5)."""



_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_OPERATORS = {"AND", "OR", "WITH"}


def _tokens(expression: str) -> list[str]:
    out, pos = [], 0
    expression = expression.rstrip()
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:  # pragma: no cover - the pattern matches any non-space text
            break
        token = match.group(1)
        out.append(token.upper() if token.upper() in _OPERATORS else token)
        pos = match.end()
    return out


class _Parser:
    """SPDX license expressions: ``id [WITH exception]``, AND (binds tighter), OR, parentheses.

    A node is ``("id", "gpl-2.0-only with classpath-exception-2.0")`` (lowercase; an exception
    is part of the id), ``("and", [nodes])`` or ``("or", [nodes])``.
    """

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.pos = 0

    def parse(self) -> tuple[str, Any]:
        if not self.tokens:
            raise ValueError("empty expression")
        node = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]!r}")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("ends too early")
        self.pos += 1
        return token

    def _joined(self, operator: str, part: Any) -> tuple[str, Any]:
        nodes = [part()]
        while self._peek() == operator:
            self.pos += 1
            nodes.append(part())
        return nodes[0] if len(nodes) == 1 else (operator.lower(), nodes)

    def _or(self) -> tuple[str, Any]:
        return self._joined("OR", self._and)

    def _and(self) -> tuple[str, Any]:
        return self._joined("AND", self._simple)

    def _simple(self) -> tuple[str, Any]:
        token = self._take()
        if token == "(":
            node = self._or()
            if self._take() != ")":
                raise ValueError("unbalanced parentheses")
            return node
        if token in _OPERATORS or token == ")":
            raise ValueError(f"unexpected {token!r}")
        if self._peek() == "WITH":
            self.pos += 1
            exception = self._take()
            if exception in _OPERATORS or exception in "()":
                raise ValueError(f"WITH followed by {exception!r}")
            token = f"{token} with {exception}"
        return ("id", token.lower())


def _allowed(node: tuple[str, Any], allowed: set[str]) -> bool:
    kind, value = node
    if kind == "id":
        return value in allowed
    test = any if kind == "or" else all
    return test(_allowed(n, allowed) for n in value)


def _ids(node: tuple[str, Any]) -> list[str]:
    kind, value = node
    return [value] if kind == "id" else [i for n in value for i in _ids(n)]


def _normalised(entries: Sequence[str]) -> list[str]:
    out = []
    for entry in entries:
        for part in entry.split(","):
            words = _tokens(part)
            if not words:
                raise UsageError(f"empty license in the allow-list {list(entries)!r}")
            if any(w in ("AND", "OR", "(", ")") for w in words):
                raise UsageError(f"allow-list entry {part.strip()!r} must be one license id (optionally 'ID WITH EXCEPTION'), not an expression")
            out.append(" ".join(w.lower() for w in words))
    return out


def check_license(license: str | None, allowed: Sequence[str]) -> None:
    """Raise :class:`LicenseError` (exit 5) unless the SPDX expression ``license`` is allowed.

    An empty ``allowed`` means no policy. Otherwise: ids compare case-insensitively; ``A OR B``
    is allowed if any branch is; ``A AND B`` only if every part is; ``ID WITH EXCEPTION`` is one
    id (list it whole: ``--allow-license 'GPL-2.0-only WITH Classpath-exception-2.0'``);
    parentheses group. A missing license, or one that cannot be parsed, is refused.
    Allow-list entries may also be comma-separated (``MIT,Apache-2.0``).
    """
    if not allowed:
        return
    accepted = _normalised(allowed)
    shown = ", ".join(dict.fromkeys(allowed))
    if license is None or not license.strip():
        raise LicenseError(f"the model declares no license; the allow-list requires one of: {shown}")
    try:
        tree = _Parser(license).parse()
    except ValueError as exc:
        raise LicenseError(f"the model's license {license!r} is not a valid SPDX expression ({exc}); allowed: {shown}") from None
    if _allowed(tree, set(accepted)):
        return
    missing = [i for i in dict.fromkeys(_ids(tree)) if i not in accepted]
    raise LicenseError(
        f"the model's license {license!r} is not allowed ({', '.join(missing)} not on the allow-list: {shown})"
    )


def model_license(config: ModelConfig | None, annotations: Mapping[str, str]) -> str | None:
    """The model's SPDX license: from its config, else the manifest's ``licenses`` annotation
    (artifacts not pushed by ocimodel)."""
    if config is not None and config.license:
        return config.license
    return annotations.get(ANNOTATION_LICENSES) or None
