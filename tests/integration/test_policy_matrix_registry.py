"""Usable policies against a real registry: they get past validation, loose regexps warn, no policy is no check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_policy_matrix import ISSUER, NOWHERE, assert_one_error_line, invoke, verbs


def reachable(args: list[str], host: str) -> list[str]:
    """``args`` aimed at a real registry (a repository that does not exist) instead of nowhere."""
    return [a.replace(NOWHERE, f"{host}/nobody/here") for a in args]


#: What each verb ends with against an empty repository once past policy validation.
PAST_VALIDATION = {"verify": 4, "verify-blob": 5, "pull": 4, "promote": 4, "rollback": 4, "history": 4, "stages": 4}


@pytest.mark.parametrize("verb", list(verbs(Path("."))))
def test_a_usable_policy_gets_past_validation(workdir: Path, clean_env, registry, verb: str) -> None:
    """The control row: the same verbs with a good key policy go on (and fail later, not with exit 2)."""
    policy = workdir / "good.yaml"
    policy.write_text("key: k.pub  # relative to the policy file\nallowGlobals: [collections.OrderedDict]\n")
    for args in (["--key", str(workdir / "k.pub")], ["--policy", str(policy)]):
        result = invoke(reachable(verbs(workdir)[verb], registry.host) + args, {})
        assert result.exit_code == PAST_VALIDATION[verb], (result.stderr, result.exception)


@pytest.mark.parametrize("verb", list(verbs(Path("."))))
def test_no_policy_at_all(workdir: Path, clean_env, registry, verb: str) -> None:
    """No policy source: verify and verify-blob need one (exit 2), the others go on unverified."""
    result = invoke(reachable(verbs(workdir)[verb], registry.host), {})
    if verb in ("verify", "verify-blob"):
        assert_one_error_line(result, 2, "no verification policy")
    else:
        assert result.exit_code == PAST_VALIDATION[verb], (result.stderr, result.exception)


def test_match_everything_regexps_warn_once_and_do_not_fail(workdir: Path, clean_env, registry) -> None:
    model = f"{registry.host}/nobody/here:1"
    args = ["verify", model, "--certificate-identity-regexp", "(.*)",
            "--certificate-oidc-issuer-regexp", r"[\s\S]+", "--trusted-root", str(workdir / "k.pub")]
    result = invoke(args, {})
    assert result.exit_code == 4, result.stderr  # went on to the registry
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: the policy's certificate-identity-regexp '(.*)' and certificate-oidc-issuer-regexp '[\\\\s\\\\S]+' "
        "match any value, so it does not restrict who signed; pin it (e.g. the workflow path and ref, see docs/signing.md)"
    ]
    pinned = ["verify", model, "--certificate-identity-regexp",
              r"https://github\.com/acme/churn/\.github/workflows/release\.yml@refs/tags/v[0-9.]+",
              "--certificate-oidc-issuer", ISSUER, "--trusted-root", str(workdir / "k.pub")]
    assert "warning" not in invoke(pinned, {}).stderr
    logged = invoke(["pull", model, str(workdir / "d"), "--log-format", "json", *args[2:]], {})
    first = json.loads(logged.stderr.splitlines()[0])
    assert first["level"] == "warning" and "match any value" in first["message"]
