"""Human-readable rendering of results for the CLI (rich tables)."""

from __future__ import annotations

from typing import Any

from .api import InspectResult


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render_inspect(result: InspectResult, console: Any) -> None:
    """Print digest, type, metadata, lineage, files and signatures."""
    from rich.table import Table

    console.print(f"[bold]Reference[/]     {result.reference}")
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
    table = Table(title="Files", show_edge=False)
    table.add_column("Path")
    table.add_column("Size", justify="right")
    table.add_column("Mode")
    table.add_column("Digest", overflow="fold")
    for f in result.files:
        table.add_row(f.path, _size(f.size), oct(f.mode)[2:] if f.mode is not None else "-", f.digest)
    console.print(table)
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
