"""Pictures for ``lineage --format mermaid|dot`` and ``history --format mermaid|dot``.

A small graph (nodes with labels, edges, a "problem" mark) built from a result, then written
as a Mermaid ``flowchart`` (renders in GitHub markdown inside a ```` ```mermaid ```` block) or a
Graphviz ``digraph``. Everything in a label comes from a registry or a config, so it is
hostile: node ids are ours (``n0``, ``n1``...), and every label character outside a small safe
set is escaped (Mermaid entity codes ``#34;``; Graphviz backslash escapes, control
characters shown as ``\\xNN``), so no name can close a label, start an edge or a new
statement, or inject markup. Presentation only, hence here in the command line: the Python
API returns the data (``to_dict()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api import HistoryReport, LineageNode

FORMATS = ("text", "json", "mermaid", "dot")
#: Label parts are cut here: a hostile 1 MB reason makes no 1 MB picture.
MAX_PART = 160
_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 ._:/@+=,()-]")


@dataclass
class Graph:
    """Nodes (id -> label lines), edges (from, to) in order, and the ids marked as problems."""

    direction: str  # "BT" / "TB", as both Mermaid and Graphviz spell it
    nodes: dict[str, list[str]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    problems: set[str] = field(default_factory=set)

    @staticmethod
    def cut(lines: list[str]) -> list[str]:
        """``lines`` each cut to :data:`MAX_PART` characters."""
        return [line if len(line) <= MAX_PART else line[: MAX_PART - 3] + "..." for line in lines]

    def add(self, lines: list[str], problem: bool = False) -> str:
        node_id = f"n{len(self.nodes)}"
        self.nodes[node_id] = self.cut(lines)
        if problem:
            self.problems.add(node_id)
        return node_id

    def link(self, source: str, target: str) -> None:
        if (source, target) not in self.edges:
            self.edges.append((source, target))


def _mermaid_text(text: str) -> str:
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in text)


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart (for a ```` ```mermaid ```` block in markdown)."""
    out = [f"flowchart {graph.direction}"]
    for node_id, lines in graph.nodes.items():
        out.append(f'  {node_id}["{"<br/>".join(_mermaid_text(line) for line in lines)}"]')
    out += [f"  {a} --> {b}" for a, b in graph.edges]
    if graph.problems:
        out.append("  classDef problem stroke-dasharray: 5 5,stroke:#c00")
        out.append(f"  class {','.join(sorted(graph.problems, key=lambda n: int(n[1:])))} problem")
    return "\n".join(out)


def _dot_text(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif not c.isprintable():
            out.append(f"\\\\x{ord(c):02x}")  # shown as \xNN, never a line break or an escape
        else:
            out.append(c)
    return "".join(out)


def to_dot(graph: Graph, name: str) -> str:
    """A Graphviz digraph (``dot -Tsvg``)."""
    out = [f"digraph {name} {{", f"  rankdir={graph.direction};", '  node [shape=box, fontname="monospace"];']
    for node_id, lines in graph.nodes.items():
        style = ", style=dashed, color=red" if node_id in graph.problems else ""
        label = "\\n".join(_dot_text(line) for line in lines)  # \n: Graphviz's line break
        out.append(f'  {node_id} [label="{label}"{style}];')
    out += [f"  {a} -> {b};" for a, b in graph.edges]
    out.append("}")
    return "\n".join(out)


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "nothing"


def lineage_graph(root: LineageNode) -> Graph:
    """The ancestry as a graph: one node per digest (a shared ancestor once, a cycle drawn as
    an edge back), edges from a model to each parent, parents above."""
    graph = Graph("BT")
    ids: dict[str, str] = {}

    def visit(node: LineageNode) -> str:
        key = node.digest or f"{node.status}:{node.reference}:{node.reason}"
        reference = node.reference
        if node.digest and reference.endswith(node.digest):
            reference = reference[: -len(node.digest)] + _short(node.digest)
        what = " ".join(x for x in (node.name, node.version) if x) if node.ok else f"{node.status}: {node.reason}"
        lines = [reference] + ([what] if what else [])
        found = ids.get(key)
        if found is None:
            found = ids[key] = graph.add(lines, problem=not node.ok)
        elif node.ok and found in graph.problems:  # seen beyond the depth first, followed here
            graph.nodes[found] = graph.cut(lines)
            graph.problems.discard(found)
        for parent in node.parents:
            graph.link(found, visit(parent))
        return found

    visit(root)
    return graph


def _mark(verified: bool | None, signed: bool, signed_by: str | None, problem: str | None) -> str:
    if verified is None:
        return "signed, unverified" if signed else "unsigned"
    return f"verified: {signed_by}" if verified else f"NOT verified: {problem or '?'}"


def history_graph(report: HistoryReport) -> Graph:
    """A stage's timeline: promotions oldest first, each to the next, then the stage now;
    findings as marked nodes beside it."""
    graph = Graph("TB")
    previous = None
    for entry in reversed(report.entries):
        mark = _mark(entry.signature_verified, entry.signed, entry.signed_by, entry.signature_problem)
        lines = [f"{entry.time} by {entry.actor.name}", f"{_short(entry.from_digest)} to {_short(entry.to_digest)}",
                 f"[{mark}]"] + ([entry.reason] if entry.reason else [])
        node = graph.add(lines, problem=entry.signature_verified is False)
        if previous is not None:
            graph.link(previous, node)
        previous = node
    now = graph.add([f"{report.stage} in {report.repository}", f"now {_short(report.current)}"],
                    problem=not report.ok)
    if previous is not None:
        graph.link(previous, now)
    for finding in report.findings:
        graph.link(graph.add([f"{finding.kind}: {finding.message}"], problem=True), now)
    return graph


def check_format(fmt: str, json_out: bool) -> str:
    """The output format of ``--format`` and ``--json`` together (UsageError if they disagree)."""
    from ..errors import UsageError

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if json_out and fmt not in ("text", "json"):
        raise UsageError(f"--json and --format {fmt} ask for two outputs: give one")
    return "json" if json_out else fmt
