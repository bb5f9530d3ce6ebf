"""Lineage walks against the real registry: across repositories, missing parents, cycles, depth."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from registry_fixtures import fast_retry, free_port

from ocimodel.ancestry import CYCLE, NOT_FOLLOWED, OK, UNRESOLVED, LineageNode, ancestry
from ocimodel.api import Client
from ocimodel.cli.render import render_tree
from ocimodel.errors import NotFoundError
from ocimodel.reference import Reference
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.registry.target import locator
from ocimodel.storage import FetchedManifest

MISSING = "sha256:" + "0" * 64


@pytest.fixture
def push(registry, docker_config, tmp_path: Path):
    """push(repository:tag, parents) -> digest of a fresh one-file model."""
    oc = Client(Connection(plain_http=True))

    def _push(name: str, parents: tuple[str, ...] = ()) -> str:
        src = tmp_path / f"{name.replace('/', '_').replace(':', '_')}.bin"
        src.write_bytes(os.urandom(512))
        return oc.push(src, f"{registry.host}/{name}", parents=parents, code=False).digest

    yield _push
    oc.close()


@pytest.fixture
def family(registry, repo, push) -> dict[str, str]:
    """base (repo-a) <- mid (repo-b) <- child (repo-b, also naming a missing parent in repo-a)."""
    a, b = f"{repo}-a", f"{repo}-b"
    base = push(f"{a}:1.0")
    mid = push(f"{b}:mid", (f"{registry.host}/{a}:1.0",))
    child = push(f"{b}:child", (f"{registry.host}/{b}:mid", f"{registry.host}/{a}@{MISSING}"))
    return {"a": a, "b": b, "base": base, "mid": mid, "child": child}


def test_lineage_across_repositories_with_a_missing_parent(client, registry, family):
    root = ancestry(locator(client), locator(client)(f"{registry.host}/{family['b']}:child"))
    assert (root.status, root.digest, root.version) == (OK, family["child"], "child")
    mid, missing = root.parents
    assert (mid.status, mid.digest, mid.reference) == (OK, family["mid"], f"{registry.host}/{family['b']}:mid@{family['mid']}")
    [base] = mid.parents
    assert (base.status, base.digest, base.reference, base.parents) == (
        OK, family["base"], f"{registry.host}/{family['a']}:1.0@{family['base']}", []
    )
    assert (missing.status, missing.digest) == (UNRESOLVED, MISSING)
    assert "not found" in missing.reason and missing.parents == []

    as_dict = root.to_dict()
    assert as_dict["parents"][1] == {
        "reference": f"{registry.host}/{family['a']}@{MISSING}",
        "digest": MISSING,
        "status": "unresolved",
        "name": None,
        "version": None,
        "created": None,
        "reason": missing.reason,
        "parents": [],
    }
    text = render_tree(root).splitlines()
    assert text[0] == f"{registry.host}/{family['b']}:child@{family['child'][:19]} ({family['b'].rsplit('/', 1)[1]} child)"
    assert text[1].startswith("├── ") and f"@{family['mid'][:19]}" in text[1]
    assert text[2].startswith("│   └── ") and f"@{family['base'][:19]}" in text[2]
    assert text[3].startswith("└── ") and "[unresolved: " in text[3]


def test_depth_bounds_the_walk(client, registry, family):
    root = ancestry(locator(client), locator(client)(f"{registry.host}/{family['b']}:child"), depth=1)
    mid = root.parents[0]
    assert mid.status == OK
    assert [(p.status, p.digest, p.reason) for p in mid.parents] == [(NOT_FOLLOWED, family["base"], "beyond depth 1")]
    shallow = ancestry(locator(client), locator(client)(f"{registry.host}/{family['b']}:child"), depth=0)
    assert [p.status for p in shallow.parents] == [NOT_FOLLOWED, NOT_FOLLOWED]


def test_client_per_registry_and_unreachable_parent(client, registry, repo, push):
    dead = f"127.0.0.1:{free_port()}"
    digest = push(f"{repo}:x", (f"{dead}/elsewhere/base@{MISSING}", "ghost/unpinned:1.0@" + MISSING))
    asked: list[str] = []

    def client_for(host: str) -> RegistryClient:
        asked.append(host)
        return client

    root = ancestry(locator(client_for), locator(client_for)(f"{registry.host}/{repo}:x"))
    unreachable, hub = root.parents
    assert root.digest == digest and asked[0] == registry.host and dead in asked and "docker.io" in asked
    assert unreachable.status == UNRESOLVED and "cannot connect" in unreachable.reason
    assert hub.status == UNRESOLVED  # docker.io over plain http: refused, not a crash


def test_parent_recorded_without_digest_is_unresolved(client, registry, repo, push):
    from ocimodel.ancestry import _Walker
    from ocimodel.config import Parent

    node = _Walker(locator(client), 5)._parent(Parent(reference=f"{registry.host}/{repo}:moving"), 1, frozenset())
    assert node.status == UNRESOLVED and "without a digest" in node.reason


def test_root_errors_propagate(client, registry, repo):
    with pytest.raises(NotFoundError):
        ancestry(locator(client), locator(client)(f"{registry.host}/{repo}:nope"))


class LyingClient(RegistryClient):
    """Serves another manifest for one digest (no verification): the only way to make a cycle."""

    def __init__(self, swap: dict[str, Reference]) -> None:
        super().__init__(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry())
        self.swap = swap

    def get_manifest(self, ref: Reference, accept=()) -> FetchedManifest:  # type: ignore[override]
        if ref.digest in self.swap:
            return super().get_manifest(self.swap[ref.digest])
        return super().get_manifest(ref)


def test_cycle_detected_by_digest(registry, family, docker_config):
    child_ref = Reference(registry.host, family["b"], digest=family["child"])
    with LyingClient({family["mid"]: child_ref}) as liar:  # mid's digest now serves the child
        root = ancestry(locator(liar), locator(liar)(f"{registry.host}/{family['b']}:child"), depth=10)
    cycle, missing = root.parents
    assert (cycle.status, cycle.digest) == (CYCLE, family["child"])
    assert cycle.reason == f"{family['child']} is its own ancestor" and cycle.parents == []
    assert missing.status == UNRESOLVED and len(root.walk()) == 3


def test_diamond_is_not_a_cycle(client, registry, repo, push):
    base = push(f"{repo}:base")
    left = push(f"{repo}:left", (f"{registry.host}/{repo}:base",))
    right = push(f"{repo}:right", (f"{registry.host}/{repo}:base",))
    push(f"{repo}:top", (f"{registry.host}/{repo}@{left}", f"{registry.host}/{repo}@{right}"))
    root = ancestry(locator(client), locator(client)(f"{registry.host}/{repo}:top"))
    assert [n.status for n in root.walk()] == [OK] * 5
    assert [n.digest for n in root.walk()].count(base) == 2
    assert isinstance(root, LineageNode)
