"""Commands about signatures: sign, keygen, verify, verify-blob."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typing_extensions import Annotated

from .app import _run, app, handle_errors
from .output import current
from .options import (
    INJECTED,
    ConnectionOptions,
    JsonOut,
    Mirrors,
    ModelRef,
    Staging,
    connection_options,
    env,
    policy_options,
)
from .render import (
    print_json,
    print_verified,
    who,
)

if TYPE_CHECKING:
    from ..api import VerificationPolicy


@app.command(short_help='Sign a model and attach the signature to it.', epilog='Example: ocimodel sign registry.example.com/models/churn:1.0 --key release.key')
@handle_errors
@connection_options
def sign(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Model reference (tag or digest); its digest is signed.")],
    key: Annotated[Optional[Path], typer.Option("--key", help="Sign with this encrypted private key instead of keyless (password: OCIMODEL_KEY_PASSWORD or prompt).")] = None,
    identity_token: Annotated[Optional[str], typer.Option("--identity-token", envvar=env("identity-token"), help="OIDC identity token for keyless signing (default: CI ambient credential or browser).")] = None,
    staging: Staging = False,
    trust_config: Annotated[Optional[Path], typer.Option("--trust-config", envvar=env("trust-config"), help="Sigstore ClientTrustConfig JSON of a private deployment.")] = None,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
) -> None:
    """Sign a model's manifest digest and attach the signature to it in the registry."""
    options = {"key": key, "identity_token": identity_token, "staging": staging, "trust_config": trust_config}
    result = _run(connection, json_out, lambda client: client.sign(ref, **options))
    if result is None:
        return
    current().summary(f"Signed {result.digest} as {who(result.kind, result.signer, result.issuer)}")
    current().summary(f"Signature stored as referrer {result.referrer}" + (f" (listed in tag {result.fallback_tag})" if result.fallback_tag else ""))
    typer.echo(result.referrer)


@app.command(short_help='Create an encrypted key pair for signing.', epilog='Example: ocimodel keygen --output-prefix release')
@handle_errors
def keygen(
    output_prefix: Annotated[str, typer.Option("--output-prefix", help="Writes PREFIX.key and PREFIX.pub.")] = "ocimodel",
) -> None:
    """Create an encrypted ECDSA P-256 key pair for signing with --key."""
    from ..api import keygen as api_keygen

    private, public = api_keygen(output_prefix)
    current().summary(f"Wrote {private} (encrypted private key) and {public} (public key)")
    typer.echo(str(public))


def _require_policy(policy: VerificationPolicy | None) -> VerificationPolicy:
    """``policy``, or the UsageError an empty policy gets (verify needs one)."""
    from ..api import VerificationPolicy

    if policy is None:
        VerificationPolicy().validate()  # raises: says which flags are needed
        raise AssertionError("an empty policy validated")  # pragma: no cover
    return policy


@app.command(short_help="Verify a model's signatures against a policy.", epilog='Example: ocimodel verify registry.example.com/models/churn:1.0 --key release.pub')
@handle_errors
@connection_options
@policy_options
def verify(
    ref: ModelRef,
    mirror: Mirrors = None,
    connection: ConnectionOptions = INJECTED,
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Verify that a model is signed as the policy demands (exit 5 if not)."""
    required = _require_policy(policy)
    result = _run(connection, json_out, lambda client: client.verify(ref, required), mirror=mirror)
    if result is not None:
        print_verified(result.digest, result.signatures)


@app.command("verify-blob", short_help='Verify a Sigstore bundle over a local file.', epilog='Example: ocimodel verify-blob model.onnx --bundle model.onnx.sigstore.json --key release.pub')
@handle_errors
@policy_options
def verify_blob(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The signed local file.")],
    bundle: Annotated[Path, typer.Option("--bundle", help="The Sigstore bundle of FILE.")],
    json_out: JsonOut = False,
    policy: VerificationPolicy | None = INJECTED,
) -> None:
    """Verify a detached Sigstore bundle over a local file, like cosign verify-blob."""
    from ..api import verify_blob as check_blob

    info = check_blob(file, bundle, _require_policy(policy))
    if json_out:
        print_json(info.to_dict())
        return
    print_verified(info.digest, [info])
