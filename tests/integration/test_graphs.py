"""``lineage --format mermaid|dot`` and ``history --format mermaid|dot``: pictures that render,
with hostile names escaped. Mermaid output is checked against the grammar it must stay in
(nothing else may appear); dot output is parsed by Graphviz itself (``dot -Tjson``) and every
label must come back exactly as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ocimodel.ancestry import LineageNode
from ocimodel.cli.graphs import lineage_graph, to_dot, to_mermaid

HOSTILE = 'evil"] --> x["pwn\n}; digraph { a -> b #quot; <b>x</b> \\l end'

_NODE = re.compile(r'^  (n\d+)\["((?:[A-Za-z0-9 ._:/@+=,()-]|#\d+;|<br/>)*)"\]$')
_EDGE = re.compile(r"^  (n\d+) --> (n\d+)$")


def mermaid_graph(text: str) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Parse the flowchart subset we write; AssertionError on any other line."""
    lines = text.split("\n")
    assert re.fullmatch(r"flowchart (TB|BT)", lines[0]), lines[0]
    nodes: dict[str, list[str]] = {}
    edges = []
    for line in lines[1:]:
        if node := _NODE.fullmatch(line):
            parts = node.group(2).split("<br/>")  # our line breaks; a "<" in a name is #60;
            nodes[node.group(1)] = [re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), p) for p in parts]
        elif edge := _EDGE.fullmatch(line):
            edges.append((edge.group(1), edge.group(2)))
        elif line == "  classDef problem stroke-dasharray: 5 5,stroke:#c00" or re.fullmatch(r"  class n\d+(,n\d+)* problem", line):
            continue
        else:
            raise AssertionError(f"unexpected mermaid line {line!r}")
    assert all(a in nodes and b in nodes for a, b in edges)
    return nodes, edges


def graphviz(text: str) -> tuple[list[str], int]:
    """Graphviz's own reading of ``text``: node labels, edge count (it must parse)."""
    dot = shutil.which("dot")
    assert dot, "graphviz is needed (apt-get install graphviz; .ci/run installs it)"
    out = subprocess.run([dot, "-Tjson"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    parsed = json.loads(out.stdout)
    return [o["label"] for o in parsed.get("objects", [])], len(parsed.get("edges", []))


def test_hostile_labels_stay_labels():
    shared = LineageNode("r.io/a/base@sha256:" + "c" * 64, "sha256:" + "c" * 64, "ok", name=HOSTILE, version="1")
    root = LineageNode("r.io/a/m@sha256:" + "a" * 64, "sha256:" + "a" * 64, "ok", name="m", parents=[
        LineageNode("r.io/a/p@sha256:" + "b" * 64, "sha256:" + "b" * 64, "ok", name="p", parents=[shared]),
        shared,
        LineageNode(HOSTILE, None, "unresolved", reason=HOSTILE + "\x1b[31m"),
    ])
    graph = lineage_graph(root)
    nodes, edges = mermaid_graph(to_mermaid(graph))
    assert len(nodes) == 4 and len(edges) == 4  # the shared ancestor is one node with two children
    assert nodes["n2"] == ["r.io/a/base@sha256:cccccccccccc", f"{HOSTILE} 1"]
    assert nodes["n3"] == [HOSTILE, "unresolved: " + HOSTILE + "\x1b[31m"]
    labels, edge_count = graphviz(to_dot(graph, "lineage"))
    assert edge_count == 4 and len(labels) == 4
    # Graphviz reads back exactly what was written (its escapes still in): the only "\n" line
    # breaks are ours, a backslash in a name is "\\" (shown as one), a newline "\\x0a" (shown as \x0a).
    shown = HOSTILE.replace("\\", "\\\\").replace("\n", "\\\\x0a")
    assert labels[2] == f"r.io/a/base@sha256:cccccccccccc\\n{shown} 1"
    assert labels[3] == f"{shown}\\nunresolved: {shown}\\\\x1b[31m"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.fixture
def env(docker_config) -> dict[str, str]:
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "GITHUB_ACTIONS": "", "GITLAB_CI": ""}


def test_lineage_and_history_pictures_from_the_registry(registry, repo, tmp_path, env):
    base = f"{registry.host}/{repo}"
    (tmp_path / "a.bin").write_bytes(os.urandom(512))
    (tmp_path / "b.bin").write_bytes(os.urandom(512))
    assert run("push", str(tmp_path / "a.bin"), f"{base}:1", "--no-git", "--name", HOSTILE, env=env).returncode == 0
    child = run("push", str(tmp_path / "b.bin"), f"{base}:2", "--no-git", "--parent", f"{base}:1", env=env)
    assert child.returncode == 0, child.stderr
    for fmt in ("mermaid", "dot"):
        out = run("lineage", f"{base}:2", "--format", fmt, env=env)
        assert out.returncode == 0, out.stderr
        if fmt == "mermaid":
            nodes, edges = mermaid_graph(out.stdout.rstrip("\n"))
            assert edges == [("n0", "n1")] and nodes["n1"][1] == HOSTILE + " 1"  # name, version (the tag)
        else:
            labels, edge_count = graphviz(out.stdout)
            assert edge_count == 1 and labels[1].endswith("\\n" + HOSTILE.replace("\\", "\\\\").replace("\n", "\\\\x0a") + " 1")

    reason = 'ship it"] --> n0\nclick n0 "javascript:alert(1)"'
    for tag in ("1", "2"):
        promoted = run("promote", f"{base}:{tag}", "prod", "--actor", HOSTILE, "--reason", reason, env=env)
        assert promoted.returncode == 0, promoted.stderr
    out = run("history", base, "prod", "--format", "mermaid", env=env)
    assert out.returncode == 0, out.stderr
    nodes, edges = mermaid_graph(out.stdout.rstrip("\n"))
    assert len(nodes) == 3 and edges == [("n0", "n1"), ("n1", "n2")]  # oldest, newest, the stage now
    assert nodes["n0"][-1] == reason and nodes["n0"][0].endswith(f"by {HOSTILE}")
    assert nodes["n2"][0] == f"prod in {base}"
    labels, edge_count = graphviz(run("history", base, "prod", "--format", "dot", env=env).stdout)
    assert edge_count == 2 and len(labels) == 3

    clash = run("history", base, "prod", "--format", "mermaid", "--json", env=env)
    assert clash.returncode == 2 and clash.stderr.startswith("error: --json and --format mermaid")
    bad = run("lineage", f"{base}:2", "--format", "svg", env=env)
    assert bad.returncode == 2 and "--format must be one of" in bad.stderr
