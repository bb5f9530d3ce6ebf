"""The layout keeps its promises: import rules between layers, names that cannot shadow the
public verbs, module sizes, and reads that cannot skip verification (see docs/architecture.md).

Read from the source with ``ast``, every import counted: at module level, inside functions
(lazy imports) and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import ocimodel

PACKAGE = Path(ocimodel.__file__).parent

#: Pure vocabulary and the storage interface: no I/O of their own.
CORE = frozenset({
    "_version", "errors", "reference", "descriptor", "config", "titles", "licenses", "jsondoc", "model",
    "storage", "referrers", "settle",
})
#: Which layers each layer may import (itself always).
ALLOWED = {
    "core": {"core"},
    "registry": {"core"},
    "scanner": {"core"},
    "signing": {"core"},
    "provenance": {"core", "signing"},
    "transfer": {"core", "scanner", "signing", "provenance"},
    "lifecycle": {"core", "signing"},
    "ancestry": {"core"},
    "inventory": {"core", "signing", "provenance", "lifecycle"},
    "layout": {"core"},
    "api": {
        "core", "registry", "scanner", "signing", "provenance", "transfer", "lifecycle", "ancestry", "inventory",
        "layout",
    },
    "cli": {"core", "api"},
    # The package's lazy table names everything public (its imports are for type checkers).
    "package": {
        "core", "registry", "scanner", "signing", "provenance", "transfer", "lifecycle", "ancestry", "inventory",
        "layout", "api",
    },
    "main": {"cli"},
}
#: Third-party packages, and the only layer that may import each (a new one is a decision).
THIRD_PARTY = {
    "httpx": "registry", "httpcore": "registry", "certifi": "registry",
    "sigstore": "signing", "sigstore_models": "signing", "cryptography": "signing", "yaml": "signing",
    "requests": "signing", "nacl": "signing",
    "platformdirs": "transfer",
    "typer": "cli", "rich": "cli", "typing_extensions": "cli",
}
#: Standard modules that do I/O or touch the system, which the core must not import.
IO_MODULES = frozenset({
    "os", "io", "pathlib", "shutil", "tempfile", "subprocess", "socket", "ssl", "sqlite3", "fcntl", "ctypes",
    "urllib", "http", "asyncio", "select", "mmap", "glob",
})
MAX_LINES = 520


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> str:
    parts = name.split(".")
    if name == "ocimodel":
        return "package"
    if parts[1] == "__main__":
        return "main"
    if parts[1] in CORE:
        return "core"
    if parts[1] in ("session", "locations"):  # the Client behind the api's verbs, and its seam
        return "api"
    if parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{name} belongs to no layer: add it to the layers in this test and docs/architecture.md")


def imports_of(name: str) -> list[tuple[str, int]]:
    """Absolute names of what the module imports, with line numbers (``from . import x``
    counts as the submodule ``x`` when there is one)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.append((child if child in MODULES else target, node.lineno))
    return found


def test_every_package_directory_is_a_regular_package():
    """A directory without ``__init__.py`` imports from a checkout (a namespace package) but is
    left out of the wheel: setuptools' package finder skips it."""
    for directory in sorted({p.parent for p in PACKAGE.rglob("*.py")}):
        assert (directory / "__init__.py").is_file(), f"{directory.relative_to(PACKAGE.parent)} has no __init__.py"


def test_every_module_belongs_to_a_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_layers(name):
    layer = layer_of(name)
    allowed = ALLOWED[layer] | {layer}
    for target, line in imports_of(name):
        top = target.split(".")[0]
        if top == "ocimodel":
            imported = layer_of(target)
            assert imported in allowed, f"{name}:{line} imports {target} ({imported}): {layer} may import {sorted(allowed)}"
        elif top in THIRD_PARTY:
            assert THIRD_PARTY[top] == layer, f"{name}:{line} imports {top}, which only {THIRD_PARTY[top]} may"
        elif top not in sys.stdlib_module_names and top != "__future__":
            raise AssertionError(f"{name}:{line} imports {top}: a new dependency (add it to THIRD_PARTY deliberately)")
        elif layer == "core":
            assert top not in IO_MODULES, f"{name}:{line} imports {top}: the core does no I/O of its own"


def test_no_submodule_shadows_a_public_name():
    """Importing ``ocimodel.verify`` (a module) would set ``ocimodel.verify`` to it, and
    ``ocimodel.verify(...)`` would then raise "module object is not callable"."""
    for public in ocimodel.__all__:
        assert not (PACKAGE / f"{public}.py").exists(), f"ocimodel/{public}.py shadows ocimodel.{public}"
        assert not (PACKAGE / public).is_dir(), f"ocimodel/{public}/ shadows ocimodel.{public}"


def test_no_package_exports_a_name_of_its_own_submodule():
    """The same trap one level down: a package exporting ``x`` while having a submodule ``x``."""
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        exported = {
            elt.value
            for node in tree.body
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
            for elt in getattr(node.value, "elts", [])
            if isinstance(elt, ast.Constant)
        }
        submodules = {child.stem for child in path.parent.glob("*.py")} | {d.name for d in path.parent.iterdir() if d.is_dir()}
        assert not exported & submodules, f"{name} exports {sorted(exported & submodules)}, also submodule names"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"


def test_resumable_reads_go_into_a_verifying_writer():
    """Outside the stores, ``Target.read_blob`` (which may start mid-blob, so cannot verify by
    itself) is only called where a VerifyingWriter takes the bytes; ``open_blob`` yields a
    VerifyingReader by its type, and the registry client's raw streams are out of reach of the
    use-cases by the import rules."""
    callers = []
    for name, path in MODULES.items():
        if layer_of(name) == "registry" or name == "ocimodel.storage":
            continue
        source = path.read_text()
        if ".read_blob(" in source:
            callers.append(name)
            assert "VerifyingWriter(" in source, f"{name} reads a blob resumably without a VerifyingWriter"
    assert callers == ["ocimodel.transfer.download"]
