"""Commands about stages and lineage: promote, rollback, stages, history, delete, lineage."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, List, Optional

import typer
from typing_extensions import Annotated

from .app import _run, app, handle_errors
from .output import current
from .options import (
    INJECTED,
    ActorName,
    ConnectionOptions,
    JsonOut,
    ModelRef,
    Reason,
    Repository,
    Stage,
    connection_options,
    env,
    policy_options,
    record_signing_options,
)
from .render import (
    print_json,
    print_promotion,
    render_tree,
    signature_mark,
)

if TYPE_CHECKING:
    from ..api import RecordSigning, VerificationPolicy

#: No environment variable (a picture is asked for per command, like --json).
GraphFormat = Annotated[str, typer.Option(
    "--format", metavar="text|json|mermaid|dot",
    help="Output: text, json (as --json), mermaid (a flowchart for a ```mermaid block in GitHub markdown) "
         "or dot (Graphviz).")]

#: No environment variable: which repository's records count here is a decision made per command.
Origins = Annotated[Optional[List[str]], typer.Option(
    "--origin", metavar="REPOSITORY",
    help="A repository this one is a copy of (ocimodel copy --tags): its promotion records count as this "
         "stage's history too (repeatable). Records of any other repository are refused.")]


@app.command(short_help='Point STAGE at a model and record the promotion.', epilog="Example: ocimodel promote registry.example.com/models/churn:1.0 prod --reason 'beats 0.9'")
@handle_errors
@connection_options
@policy_options
@record_signing_options
def promote(
    ref: ModelRef,
    stage: Stage,
    reason: Reason = "",
    actor: ActorName = None,
    signing: RecordSigning | None = INJECTED,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Point STAGE at REF's digest (no bytes move) and record who, when and why.

    With any verification policy option, the model's signature is checked first and
    nothing moves unless it passes.
    """
    result = _run(connection, json_out,
                  lambda c: c.promote(ref, stage, reason=reason, actor=actor, policy=policy, sign_record=signing))
    if result is not None:
        print_promotion(result)


@app.command(short_help='Move STAGE back to an earlier digest of its history.', epilog="Example: ocimodel rollback registry.example.com/models/churn prod --reason 'regression' --key release.pub")
@handle_errors
@connection_options
@policy_options
@record_signing_options
def rollback(
    repository: Repository,
    stage: Stage,
    to: Annotated[Optional[str], typer.Option("--to", help="Digest to return to (must be in the history).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="How many promotions to go back.")] = 1,
    reason: Reason = "",
    actor: ActorName = None,
    origin: Origins = None,
    signing: RecordSigning | None = INJECTED,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Move STAGE back to an earlier digest of its history, recorded as a rollback.

    With verification policy options, the target must have been reached by a promotion
    record signed under the policy, and the model must be signed under it.
    """
    if policy is None:
        current().warning(f"warning: no policy given, so rollback trusts the unsigned promotion history of {stage}, which "
                   "anyone who can push to the registry can forge; give --key or --certificate-identity(-regexp) "
                   "and --certificate-oidc-issuer(-regexp) to move only to a digest a signed record reached")
    result = _run(connection, json_out,
                  lambda c: c.rollback(repository, stage, to=to, steps=steps, reason=reason or None, actor=actor,
                                       policy=policy, sign_record=signing, origins=origin or []))
    if result is not None:
        print_promotion(result)


@app.command("stages", short_help='List the stages and the digest each holds.', epilog='Example: ocimodel stages registry.example.com/models/churn')
@handle_errors
@connection_options
@policy_options
def stages_command(
    repository: Repository,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """List each stage: the digest it holds, its version tags, and its last promotion.

    With verification policy options, each stage's newest record is verified (exit 5 if one is not).
    """
    from ..errors import ExitCode

    with connection.client() as client:
        found = client.stages(repository, policy=policy)
    if json_out:
        print_json([s.to_dict() for s in found])
    else:
        if not found:
            current().summary(f"no stages in {repository} (promote a model with 'ocimodel promote REF STAGE')")
        for info in found:
            tags = ",".join(t for t in info.tags if t != info.stage) or "-"
            who = info.promoted_by.name if info.promoted_by else "?"
            mark = signature_mark(info.signature_verified, info.signed_by, None)
            typer.echo(f"{info.stage:<12} {info.digest or 'unset'}  tags={tags}  {info.promoted_at or '?'} by {who} "
                       f"[{mark}]: {info.reason or ''}".rstrip())
            for problem in (info.finding, info.signature_finding):
                if problem:
                    typer.echo(f"  ! {problem}")
    if policy is not None and not all(info.signature_verified for info in found):
        raise typer.Exit(ExitCode.VERIFICATION)


@app.command(short_help="Show STAGE's promotion history, newest first.", epilog='Example: ocimodel history registry.example.com/models/churn prod')
@handle_errors
@connection_options
@policy_options
def history(
    repository: Repository,
    stage: Stage,
    origin: Origins = None,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    fmt: GraphFormat = "text",
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Show STAGE's promotion chain, newest first; exit 6 if the chain has problems.

    With verification policy options, every record must be signed under the policy: exit 5
    names each one that is not, and signed records the chain leaves out. --format mermaid
    draws the timeline (oldest first) for a markdown page; the exit code is the same.
    """
    from ..errors import ExitCode
    from .graphs import check_format, history_graph, to_dot, to_mermaid

    fmt = check_format(fmt, json_out)
    with connection.client() as client:
        report = client.history(repository, stage, policy=policy, origins=origin or [])
    if fmt == "json":
        print_json(report.to_dict())
    elif fmt in ("mermaid", "dot"):
        graph = history_graph(report)
        typer.echo(to_mermaid(graph) if fmt == "mermaid" else to_dot(graph, "history"))
    else:
        for finding in report.findings:
            typer.echo(f"! {finding.message}")
        for e in report.entries:
            mark = signature_mark(e.signature_verified, e.signed_by, e.signature_problem, e.signed)
            typer.echo(f"{e.time}  {e.actor.name}  {e.from_digest or 'nothing'} -> {e.to_digest}  [{mark}]  {e.reason}".rstrip())
    if report.signature_findings:
        raise typer.Exit(ExitCode.VERIFICATION)
    if not report.ok:
        raise typer.Exit(ExitCode.INTEGRITY)


@app.command(short_help='Delete a tag or a manifest (stages protected).', epilog='Example: ocimodel delete registry.example.com/models/churn:old')
@handle_errors
@connection_options
def delete(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Tag or digest to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting a digest with tags.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete even what a stage points at.")] = False,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """Delete a tag or a manifest; refuses a digest a stage holds unless --force."""
    from ..errors import UsageError

    with connection.client() as client:
        plan = client.plan_delete(ref)
        if plan.tag is None and plan.tags and not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting {plan.digest} also removes tags {', '.join(plan.tags)}: pass --yes to confirm")
            typer.confirm(f"Deleting {plan.digest} also removes tags {', '.join(plan.tags)}. Continue?", abort=True)
        done = client.delete(ref, force=force)
    if json_out:
        print_json(done.to_dict())
        return
    current().summary(f"Deleted {done.tag or done.digest}" + (f" (tags removed: {', '.join(done.tags)})" if done.tag is None and done.tags else ""))


@app.command(short_help="Show a model's ancestor tree.", epilog='Example: ocimodel lineage registry.example.com/models/churn:1.0')
@handle_errors
@connection_options
def lineage(
    ref: ModelRef,
    depth: Annotated[int, typer.Option("--depth", min=0, max=50, help="How many generations to follow.")] = 5,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    fmt: GraphFormat = "text",
) -> None:
    """Show the ancestor tree of a model (parents by digest, across registries).

    --format mermaid or dot draws it as a graph (a shared ancestor once), e.g.
    ocimodel lineage REF --format mermaid >> README.md inside a ```mermaid block.
    """
    from .graphs import check_format, lineage_graph, to_dot, to_mermaid

    fmt = check_format(fmt, json_out)
    node = _run(connection, fmt == "json", lambda c: c.lineage(ref, depth=depth))
    if node is None:
        return
    if fmt == "text":
        typer.echo(render_tree(node))
    else:
        graph = lineage_graph(node)
        typer.echo(to_mermaid(graph) if fmt == "mermaid" else to_dot(graph, "lineage"))
