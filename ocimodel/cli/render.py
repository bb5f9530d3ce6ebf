"""What the command line prints: results as text or JSON, pull steps as log lines, trees.

Text goes to a person (rich tables on stdout, one line per event on stderr); ``--json``
output and ``--log-format json`` lines are for machines, with sorted keys.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import typer

from .output import Output, current

if TYPE_CHECKING:
    from rich.console import Console

    from ..api import InspectResult, LineageNode, PromotionResult, SignatureInfo


def stdout() -> Console:
    """A console on stdout (imported on first use: rich costs start-up time)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """A console on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys on stdout."""
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def who(kind: str, signer: str | None, issuer: str | None) -> str:
    """A signer for people: ``key <fingerprint>`` or ``identity (issuer ...)``."""
    if kind == "key":
        return f"key {signer or '?'}"
    return f"{signer or '?'} (issuer {issuer or '?'})"


def print_verified(digest: str, signatures: Iterable[SignatureInfo]) -> None:
    """One line per signature that satisfied the policy."""
    for info in signatures:
        when = f" at {info.signed_at.isoformat()}" if info.signed_at else ""
        typer.echo(f"Verified {digest}: signed by {who(info.kind, info.signer, info.issuer)}{when}")


def signature_mark(verified: bool | None, signed_by: str | None, problem: str | None, signed: bool | None = None) -> str:
    """How a promotion record's signature shows in text output."""
    if verified is None:
        return "unverified" if signed is None else ("signed, unverified" if signed else "unsigned, unverified")
    if verified:
        return f"verified: {signed_by}"
    return f"NOT verified: {problem}" if problem else "NOT verified"


def print_promotion(result: PromotionResult) -> None:
    """A promotion or rollback: what moved (stderr) and the digest (stdout)."""
    if not result.changed:
        current().summary(f"{result.stage} already holds {result.digest}; nothing recorded")
    else:
        was = result.previous_digest or "nothing"
        signed = ", record signed" if result.signed else ""
        current().summary(f"{result.stage}: {was} -> {result.digest} (record {result.record}{signed})")
    typer.echo(result.digest)


class StepLogger:
    """One line per pull step on stderr: readable text, or JSON objects for log collectors.

    Text steps show at the level :meth:`.output.Output.step` gives them (routine ones on a
    terminal or with ``-v``; those in :data:`NOTABLE` by default); JSON lines were asked for
    and show unless ``-q``. Warnings and failures always show.
    """

    MESSAGES = {
        "resolved": "resolved {reference} to {digest}",
        "verified": "verified {digest}: signed by {signers}",
        "up-to-date": "{digest} already installed in {path}; files intact, nothing downloaded",
        "repairing": "{digest} installed before but {reason}: pulling again",
        "state-ignored": "ignoring {path}: {reason}; installing again",
        "downloaded": "downloaded and verified {files} files ({size}) of {digest}",
        "installed": "installed {digest} in {path}",
    }
    #: Steps that change what the pull does: shown when piped too.
    NOTABLE = frozenset({"repairing", "state-ignored"})

    def __init__(self, fmt: str, output: Output | None = None) -> None:
        self.json = fmt == "json"
        self.output = output or current()

    def __call__(self, step: str, fields: Mapping[str, Any]) -> None:
        shown = {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in fields.items()}
        if isinstance(fields.get("bytes"), int):
            shown["size"] = size(fields["bytes"])
        message = self.MESSAGES.get(step, step).format(**shown)
        self._emit("info", step, message, dict(fields))

    def failed(self, message: str, code: int) -> None:
        self._emit("error", "failed", message, {"exitCode": code})

    def warning(self, message: str) -> None:
        """A warning: a JSON line, or ``warning: ...`` on stderr."""
        if self.json:
            self._emit("warning", "warning", message, {})
        else:
            self.output.warning(f"warning: {message}")

    def _emit(self, level: str, step: str, message: str, fields: dict[str, Any]) -> None:
        if self.json:
            from datetime import datetime, timezone

            line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": level,
                    "step": step, "message": message, **fields}
            text = json.dumps(line, sort_keys=True)
            if level == "info":
                self.output.step(text, requested=True)
            else:
                self.output.error(text)
        elif level == "info":
            self.output.step(f"ocimodel: {message}", notable=step in self.NOTABLE)


def size(n: int) -> str:
    """``n`` bytes in binary units (B, KiB, MiB, GiB, TiB): the one unit system of all output."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render_inspect(result: InspectResult, console: Console) -> None:
    """Print digest, type, metadata, lineage, files and signatures."""
    console.print(f"[bold]Reference[/]     {result.reference}")
    if console.is_terminal and 14 + len(result.digest) > console.width:
        console.print(f"[bold]Digest[/]\n  {result.digest}")  # the digest whole on its own line
    else:
        console.print(f"[bold]Digest[/]        {result.digest}")
    console.print(f"[bold]Artifact type[/] {result.artifact_type}")
    cfg = result.config
    if cfg:
        meta = {
            "Name": cfg.name,
            "Version": cfg.version,
            "Description": cfg.description,
            "Framework": cfg.framework,
            "Format": cfg.format,
            "License": cfg.license,
            "Authors": ", ".join(cfg.authors) or None,
            "Created": cfg.created,
        }
        for key, value in meta.items():
            if value:
                console.print(f"[bold]{key:<13}[/] {value}")
        for title, values in (("Labels", cfg.labels), ("Metrics", cfg.metrics), ("Params", cfg.params)):
            if values:
                console.print(f"[bold]{title:<13}[/] " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
        lineage = cfg.lineage
        for parent in lineage.parents:
            console.print(f"[bold]Parent[/]        {parent.reference} ({parent.digest or 'unresolved'})")
        for dataset in lineage.datasets:
            console.print(f"[bold]Dataset[/]       {dataset.uri}" + (f" ({dataset.digest})" if dataset.digest else ""))
        if lineage.code:
            dirty = " (dirty)" if lineage.code.dirty else ""
            console.print(f"[bold]Code[/]          {lineage.code.remote or '(no remote)'} @ {lineage.code.commit or '-'}{dirty}")
        if lineage.run:
            console.print(f"[bold]Run[/]           {lineage.run.id or '-'} {lineage.run.uri or ''}".rstrip())
    # One file per line, its digest on a line of its own: a table folded digests in two when
    # piped (rich assumes 80 columns) or on an 80-column terminal.
    console.print("[bold]Files[/]")
    for f in result.files:
        mode = oct(f.mode)[2:] if f.mode is not None else "-"
        console.print(f"  {f.path}  {size(f.size)}  {mode}", markup=False)
        console.print(f"    {f.digest}", markup=False)
    if result.signatures:
        console.print("[bold]Signatures[/] (unverified: the signers they claim; check them with `ocimodel verify`)")
        for sig in result.signatures:
            who = sig.get("signer") or "?"
            if sig.get("kind") == "key":
                who = f"key {who}"
            elif sig.get("issuer"):
                who = f"{who} (issuer {sig['issuer']})"
            note = f" [{sig['error']}]" if sig.get("error") else ""
            console.print(f"  {who} in {sig.get('referrer', '?')}{note}", markup=False)


def _label(node: LineageNode) -> str:
    """One line for a node: reference with a short digest, then name/version or the problem."""
    ref = node.reference
    if node.digest and ref.endswith(node.digest):
        ref = ref[: -len(node.digest)] + node.digest[:19]
    if node.ok:
        what = " ".join(x for x in (node.name, node.version) if x)
        return f"{ref} ({what})" if what else ref
    return f"{ref} [{node.status}: {node.reason}]"


def render_tree(root: LineageNode) -> str:
    """The tree as text, one node per line, drawn with box characters."""
    lines = [_label(root)]

    def draw(node: LineageNode, prefix: str) -> None:
        for i, parent in enumerate(node.parents):
            last = i == len(node.parents) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(parent)}")
            draw(parent, prefix + ("    " if last else "│   "))

    draw(root, "")
    return "\n".join(lines)
