"""Every verb that takes a policy x every way a policy can be given but unusable: exit 2.

A policy arrives by flags, ``--policy FILE`` (JSON or YAML), ``OCIMODEL_*`` variables or the
Python API. Whatever the path, a policy that is present but holds no usable rule is a usage
error with one ``error:`` line, before any registry is contacted (the registry here is a port
nobody listens on: reaching it would be exit 7). The matrix runs in-process (CliRunner) to
stay quick; a few real processes check the same from outside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocimodel.cli.app import app
from ocimodel.errors import UsageError
from ocimodel.registry.connection import Connection

NOWHERE = "127.0.0.1:1/models/churn"
ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/acme/churn/.github/workflows/release.yml@refs/heads/main"


def verbs(tmp: Path) -> dict[str, list[str]]:
    """Each verb with a policy, and its arguments."""
    return {
        "verify": ["verify", f"{NOWHERE}:1"],
        "verify-blob": ["verify-blob", str(tmp / "blob"), "--bundle", str(tmp / "bundle.json")],
        "pull": ["pull", f"{NOWHERE}:1", str(tmp / "dest")],
        "promote": ["promote", f"{NOWHERE}:1", "prod"],
        "rollback": ["rollback", NOWHERE, "prod"],
        "history": ["history", NOWHERE, "prod"],
        "stages": ["stages", NOWHERE],
    }


#: name -> (policy file text or None, extra arguments, environment, expected fragment of the error)
MALFORMED: dict[str, tuple[str | None, list[str], dict[str, str], str]] = {
    "file-empty-object": ("{}", [], {}, "no verification policy"),
    "file-empty": ("", [], {}, "holds nothing"),
    "file-json-null": ("null", [], {}, "holds nothing"),
    "file-list": ("[1, 2]", [], {}, "holds a list"),
    "file-only-comments": ("# nothing here\n", [], {}, "holds nothing"),
    "file-null-identity": ("certificate-identity: null\ncertificate-oidc-issuer: " + ISSUER, [], {}, "is null"),
    "file-all-null": ('{"certificate_identity": null, "key": null}', [], {}, "is null"),
    "file-empty-keys": ("key: []\n", [], {}, "empty list"),
    "file-empty-key-path": ('key: [""]\n', [], {}, "key is empty"),
    "file-key-number": ("key: [1]\n", [], {}, "must be a string, not int"),
    "file-key-mapping": ("key: {a: b}\n", [], {}, "must be a list"),
    "file-identity-without-issuer": (f"certificate-identity: {IDENTITY}\n", [], {}, "needs both"),
    "file-issuer-without-identity": (f"certificate-oidc-issuer: {ISSUER}\n", [], {}, "needs both"),
    "file-empty-identity": (f'certificate-identity: ""\ncertificate-oidc-issuer: {ISSUER}\n', [], {}, "is empty"),
    "file-blank-identity": (f'certificate-identity: "  "\ncertificate-oidc-issuer: {ISSUER}\n', [], {}, "is empty"),
    "file-identity-number": (f"certificate-identity: 123\ncertificate-oidc-issuer: {ISSUER}\n", [], {}, "not int"),
    "file-identity-list": (json.dumps({"certificate_identity": [IDENTITY], "certificate_oidc_issuer": ISSUER}), [], {},
                           "not list"),
    "file-block-scalar-newline": (f"certificate-identity: |\n  {IDENTITY}\ncertificate-oidc-issuer: {ISSUER}\n", [], {},
                                  "trailing whitespace"),
    "file-camel-case": (f"certificateIdentity: {IDENTITY}\ncertificateOidcIssuer: {ISSUER}\n", [], {},
                        "did you mean 'certificate-identity'"),
    "file-typo": (f"certificate-identiy: {IDENTITY}\ncertificate-oidc-issuer: {ISSUER}\n", [], {}, "unknown policy field"),
    "file-duplicate-yaml": (f"certificate-identity: {IDENTITY}\ncertificate-identity: x@y\ncertificate-oidc-issuer: {ISSUER}\n",
                            [], {}, "given twice"),
    "file-duplicate-json": ('{"key": "a.pub", "key": "b.pub"}', [], {}, "given twice"),
    "file-two-spellings": (f"certificate-identity: {IDENTITY}\ncertificate_identity: x@y\ncertificate-oidc-issuer: {ISSUER}\n",
                           [], {}, "are the same field"),
    "file-staging-string": (f'certificate-identity: {IDENTITY}\ncertificate-oidc-issuer: {ISSUER}\nstaging: "yes"\n', [], {},
                            "true or false"),
    "file-bad-regexp": (f"certificate-identity-regexp: '('\ncertificate-oidc-issuer: {ISSUER}\n", [], {}, "not a valid regexp"),
    "file-exact-and-regexp": (f"certificate-identity: {IDENTITY}\ncertificate-identity-regexp: x\n"
                              f"certificate-oidc-issuer: {ISSUER}\n", [], {}, "not both"),
    "file-empty-trusted-root": (f'certificate-identity: {IDENTITY}\ncertificate-oidc-issuer: {ISSUER}\ntrusted-root: ""\n', [],
                                {}, "trusted-root is empty"),
    "file-allow-globals-only": ("allowGlobals: [collections.OrderedDict]\n", [], {}, "allowGlobals alone"),
    "file-allow-globals-bad": ("key: k.pub\nallowGlobals: ['os system']\n", [], {}, "not MODULE.NAME"),
    "file-configmap-manifest": ("apiVersion: v1\nkind: ConfigMap\ndata:\n  policy.yaml: 'key: k.pub'\n", [], {},
                                "unknown policy field 'apiVersion'"),
    "file-not-yaml": ("key: [unclosed\n", [], {}, "neither JSON nor valid YAML"),
    "file-too-deep": ("[" * 5000 + "]" * 5000, [], {}, "nested too deeply"),
    "file-too-large": ("# " + "x" * 70_000 + "\n", [], {}, "larger than"),
    "file-not-utf8": ("\udcff", [], {}, "not UTF-8"),
    "file-missing": (None, ["--policy", "{tmp}/missing.yaml"], {}, "cannot read policy file"),
    "file-directory": (None, ["--policy", "{tmp}"], {}, "cannot read policy file"),
    "flag-empty-identity": (None, ["--certificate-identity", "", "--certificate-oidc-issuer", ISSUER], {}, "is empty"),
    "flag-empty-key": (None, ["--key", ""], {}, "key is empty"),
    "flag-empty-policy": (None, ["--policy", ""], {}, "policy is empty"),
    "flag-empty-trusted-root": (None, ["--key", "{tmp}/k.pub", "--trusted-root", ""], {}, "trusted-root is empty"),
    "flag-identity-only": (None, ["--certificate-identity", IDENTITY], {}, "needs both"),
    "flag-issuer-regexp-only": (None, ["--certificate-oidc-issuer-regexp", "https://.*"], {}, "needs both"),
    "flag-repository-only": (None, ["--certificate-github-workflow-repository", "acme/churn"], {}, "needs both"),
    "flag-bad-regexp": (None, ["--certificate-identity-regexp", "[", "--certificate-oidc-issuer", ISSUER], {}, "not a valid regexp"),
    "flag-trusted-root-only": (None, ["--trusted-root", "{tmp}/k.pub"], {}, "no verification policy"),
    "flag-staging-only": (None, ["--staging"], {}, "no verification policy"),
    "flag-missing-key": (None, ["--key", "{tmp}/nope.pub"], {}, "cannot read public key"),
    "flag-key-not-a-key": (None, ["--key", "{tmp}/blob"], {}, "not a key format ocimodel reads"),
    "flag-staging-and-root": (None, ["--key", "{tmp}/k.pub", "--staging", "--trusted-root", "{tmp}/k.pub"], {}, "not both"),
    "file-plus-flag-still-incomplete": (f"certificate-oidc-issuer: {ISSUER}\n", ["--certificate-github-workflow-repository", "a/b"],
                                        {}, "with the flags"),
    "env-empty-key": (None, [], {"OCIMODEL_KEY": ""}, "OCIMODEL_KEY is set but empty"),
    "env-blank-identity": (None, [], {"OCIMODEL_CERTIFICATE_IDENTITY": " ", "OCIMODEL_CERTIFICATE_OIDC_ISSUER": ISSUER},
                           "OCIMODEL_CERTIFICATE_IDENTITY is set but empty"),
    "env-empty-policy": (None, [], {"OCIMODEL_POLICY": ""}, "OCIMODEL_POLICY is set but empty"),
    "env-empty-staging": (None, [], {"OCIMODEL_STAGING": ""}, "OCIMODEL_STAGING is set but empty"),
    "env-empty-beside-good-flags": (None, ["--key", "{tmp}/k.pub"], {"OCIMODEL_TRUSTED_ROOT": ""}, "set but empty"),
    "env-policy-file-empty-object": (None, [], {"OCIMODEL_POLICY": "{tmp}/policy.yaml"}, "no verification policy"),
}


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(app, args, env={"OCIMODEL_PLAIN_HTTP": "1", **env})


def assert_one_error_line(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("verb", list(verbs(Path("."))))
@pytest.mark.parametrize("case", list(MALFORMED))
def test_every_verb_refuses_every_unusable_policy(workdir: Path, clean_env, verb: str, case: str) -> None:
    text, extra, env, fragment = MALFORMED[case]
    policy_file = workdir / f"{case}.yaml"
    args = verbs(workdir)[verb] + [a.format(tmp=workdir) for a in extra]
    if text is not None:
        policy_file.write_bytes(text.encode("utf-8", "surrogateescape"))
        args += ["--policy", str(policy_file)]
    env = {k: v.format(tmp=workdir) for k, v in env.items()}
    if case == "env-policy-file-empty-object":
        (workdir / "policy.yaml").write_text("{}")
    assert_one_error_line(invoke(args, env), 2, fragment)
    assert not (workdir / "dest").exists()


def test_real_processes_one_line_no_traceback(workdir: Path, clean_env) -> None:
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "OCIMODEL_KEY": ""}
    dest = workdir / "real-dest"
    out = subprocess.run([sys.executable, "-m", "ocimodel", "pull", f"{NOWHERE}:1", str(dest)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: OCIMODEL_KEY is set but empty")
    assert len(out.stderr.splitlines()) == 1 and not dest.exists()
    (workdir / "nulls.yaml").write_text("key: null\n")
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "OCIMODEL_POLICY": str(workdir / "nulls.yaml")}
    out = subprocess.run([sys.executable, "-m", "ocimodel", "history", NOWHERE, "prod"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == f"error: policy file {workdir / 'nulls.yaml'}: key is null: give a value or remove it\n"


def test_api_policy_objects_are_checked_too(workdir: Path, tmp_path: Path) -> None:
    from ocimodel.api import Client
    from ocimodel.signing.policy import VerificationPolicy

    with Client(Connection(plain_http=True)) as client, pytest.raises(UsageError, match="no verification policy"):
        client.pull(f"{NOWHERE}@sha256:" + "0" * 64, tmp_path / "d", policy=VerificationPolicy())  # not exit 7
    with pytest.raises(UsageError, match="key must be a list"):
        VerificationPolicy(keys="k.pub")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="is empty"):
        VerificationPolicy(certificate_identity="", certificate_oidc_issuer=ISSUER)
    with pytest.raises(UsageError, match="true or false"):
        VerificationPolicy(keys=(workdir / "k.pub",), staging="no")  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()
