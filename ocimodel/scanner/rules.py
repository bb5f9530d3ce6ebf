"""Judging one pickle global: allowed (on the reviewed allow-list) or dangerous, and why.

A global is judged by what the unpickler imports: Python 2 names are mapped as CPython maps
them (only below protocol 3), and a dotted name is an attribute chain (``posixpath.os.system``
is ``os.system``). Only exact names are allowed: a chain that starts at an allowed class
(``collections.OrderedDict.__init__.__globals__``) is not that class. Everything not allowed
is dangerous; the known-dangerous lists of :mod:`.allowlist` only give the reason.
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import UsageError
from .allowlist import (
    ALLOWED,
    CLASS_PACKAGE_EXCLUDED,
    CLASS_PACKAGE_FOREIGN,
    CLASS_PACKAGES,
    DANGEROUS_MODULES,
    DANGEROUS_NAMES,
)

_ALLOWED = {name: why for why, names in ALLOWED.items() for name in names}
_DANGEROUS_NAMES = {name: why for why, names in DANGEROUS_NAMES.items() for name in names}
_DANGEROUS_MODULES = {module: why for why, modules in DANGEROUS_MODULES.items() for module in modules}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CLASS_NAME = re.compile(r"(?:__pyx_unpickle_)?_?[A-Z][A-Za-z0-9]*\Z")  # CamelCase (SVC too), not CONSTANT_NAMES
_DUNDER = re.compile(r"__\w+__\Z")
NOT_ALLOWED = "not on the allow-list (add it with --allow-global if you trust it)"


@dataclass(frozen=True)
class Judgement:
    """How one global was judged: ``dangerous`` (with ``reason``) or allowed."""

    dangerous: bool
    reason: str
    known: bool = False  # dangerous for a known reason, not just for being off the allow-list

    @property
    def allowed(self) -> bool:
        return not self.dangerous


def loaded_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The ``(module, name)`` CPython's unpickler imports for a global written in a pickle
    of protocol ``proto``: below 3 it maps Python 2 names (``__builtin__.eval``)."""
    if proto >= 3:
        return module, name
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + ".")


def _class_rule(module: str, name: str) -> str | None:
    for prefix, why in CLASS_PACKAGES.items():
        if not module.startswith(prefix) or any(_under(module, x) for x in CLASS_PACKAGE_EXCLUDED):
            continue
        if ".tests" in module or ".conftest" in module:
            continue
        if _CLASS_NAME.match(name) and name.removeprefix("__pyx_unpickle_") not in CLASS_PACKAGE_FOREIGN:
            return why
    return None


def known_danger(module: str, name: str) -> str | None:
    """Why ``module.name`` is known to be dangerous (``None`` if it is not on a known list).

    Every starting point of the dotted path is tried, so an attribute chain through another
    module (``torch.serialization.os.system``, ``random._os.system``) is recognised too.
    """
    if any(_DUNDER.match(p) and p not in ("__newobj__", "__newobj_ex__") for p in name.split(".")):
        return "walks attributes through a dunder name: reaches arbitrary objects"
    parts = f"{module}.{name}".split(".")
    for start in range(len(parts) - 1, -1, -1):  # the deepest match names the real target
        tail = parts[start:]
        if start and tail[0].startswith("_") and not tail[0].startswith("__"):
            tail = [tail[0].lstrip("_"), *tail[1:]]  # random._os is the os module
        path, owner = ".".join(tail), ".".join(tail[:-1])
        via = f" (through the attribute chain {module}.{name})" if start else ""
        if path in _DANGEROUS_NAMES:
            return _DANGEROUS_NAMES[path] + via
        for dangerous_module, why in _DANGEROUS_MODULES.items():
            if path == dangerous_module or (owner and _under(owner, dangerous_module)):
                return f"{dangerous_module}: {why}{via}"
    return None


@dataclass(frozen=True)
class AllowList:
    """The built-in allow-list plus the globals a user allowed (``--allow-global``)."""

    extra: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def with_extra(cls, entries: Iterable[str]) -> "AllowList":
        """Validate ``entries`` (``module.name``; commas or spaces may separate several).

        Raises :class:`~ocimodel.errors.UsageError` for a wildcard (a module's namespace
        holds what it imports, so ``pkg.*`` would allow ``pkg.system`` after
        ``from os import system``), a malformed name, or a global known to run code.
        """
        names: set[str] = set()
        for entry in entries:
            for item in re.split(r"[,\s]+", entry.strip()):
                if not item:
                    continue
                if "*" in item:
                    raise UsageError(
                        f"--allow-global {item!r}: wildcards are not accepted (a module also holds every name it "
                        "imports, so a whole module could let os.system in); list each class or function"
                    )
                parts = item.split(".")
                if len(parts) < 2 or not all(_IDENTIFIER.match(p) for p in parts):
                    raise UsageError(f"--allow-global {item!r}: expected MODULE.NAME, e.g. mypackage.models.Net")
                danger = known_danger(parts[0], ".".join(parts[1:]))
                if danger is not None:
                    raise UsageError(f"--allow-global {item!r} cannot be allowed: {danger}")
                names.add(item)
        return cls(frozenset(names))

    def judge(self, module: str, name: str, proto: int = 4) -> Judgement:
        """Judge the global ``module.name`` as written in a pickle of protocol ``proto``."""
        loaded = loaded_name(module, name, proto)
        note = f" (loaded as {loaded[0]}.{loaded[1]})" if loaded != (module, name) else ""
        full = f"{loaded[0]}.{loaded[1]}"
        if full in _ALLOWED:
            return Judgement(False, f"allow-listed: {_ALLOWED[full]}{note}")
        if full in self.extra:
            return Judgement(False, f"allowed by --allow-global{note}")
        rule = _class_rule(*loaded)
        if rule is not None:
            return Judgement(False, f"allow-listed by rule: {rule}{note}")
        danger = known_danger(*loaded)
        return Judgement(True, (danger or NOT_ALLOWED) + note, known=danger is not None)


DEFAULT = AllowList()


def classify(module: str, name: str, proto: int = 4) -> tuple[bool, bool, str]:
    """``(dangerous, allowed, reason)`` of ``module.name`` under the built-in allow-list."""
    judgement = DEFAULT.judge(module, name, proto)
    return judgement.dangerous, judgement.allowed, judgement.reason
