"""Verification policies: from flags, from JSON or YAML files, and their validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocimodel.errors import UsageError
from ocimodel.signing.policy import VerificationPolicy


def flags(base: Path) -> VerificationPolicy:
    return VerificationPolicy(
        certificate_identity_regexp=r"https://github\.com/acme/.+",
        certificate_oidc_issuer="https://token.actions.githubusercontent.com",
        certificate_github_workflow_repository="acme/models",
        keys=(base / "keys" / "a.pub", base / "keys" / "b.pub"),
        trusted_root=base / "root.json",
    )


def test_json_and_yaml_files_match_flags(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(
        json.dumps(
            {
                "certificate_identity_regexp": r"https://github\.com/acme/.+",
                "certificate_oidc_issuer": "https://token.actions.githubusercontent.com",
                "certificate_github_workflow_repository": "acme/models",
                "keys": ["keys/a.pub", "keys/b.pub"],
                "trusted_root": "root.json",
            }
        )
    )
    (tmp_path / "policy.yaml").write_text(
        "# from a ConfigMap\n"
        "certificate-identity-regexp: 'https://github\\.com/acme/.+'\n"
        "certificate-oidc-issuer: https://token.actions.githubusercontent.com\n"
        "certificate-github-workflow-repository: acme/models\n"
        "key:\n  - keys/a.pub\n  - keys/b.pub\n"
        "trusted-root: root.json\n"
    )
    expected = flags(tmp_path)
    assert VerificationPolicy.from_file(tmp_path / "policy.json") == expected
    assert VerificationPolicy.from_file(tmp_path / "policy.yaml") == expected


def test_unknown_or_mistyped_fields_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"certificate_identiy": "a@example.com"}')
    with pytest.raises(UsageError, match="unknown policy field"):
        VerificationPolicy.from_file(path)
    path.write_text('{"certificate_identity": ["a@example.com"]}')
    with pytest.raises(UsageError, match="must be a string"):
        VerificationPolicy.from_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(UsageError, match="mapping"):
        VerificationPolicy.from_file(path)


def test_flags_override_file(tmp_path: Path) -> None:
    from_file = flags(tmp_path)
    merged = from_file.merged_with(
        VerificationPolicy(certificate_github_workflow_repository="acme/other")
    )
    assert merged.certificate_github_workflow_repository == "acme/other"
    assert merged.keys == from_file.keys
    path = tmp_path / "p.json"
    path.write_text(
        '{"certificate_identity": "a@example.com", "certificate_oidc_issuer": "https://i"}'
    )
    options = VerificationPolicy.from_options(
        policy_file=path, keys=["k.pub"], certificate_identity="b@example.com"
    )
    assert options == VerificationPolicy(
        certificate_identity="b@example.com",
        certificate_oidc_issuer="https://i",
        keys=(Path("k.pub"),),
    )


def test_requires_verification() -> None:
    assert not VerificationPolicy().requires_verification
    assert VerificationPolicy(certificate_identity="a@example.com").requires_verification
    assert VerificationPolicy(keys=(Path("k.pub"),)).requires_verification


@pytest.mark.parametrize(
    "rules",
    [
        {
            "certificate_identity": "a",
            "certificate_identity_regexp": "a",
            "certificate_oidc_issuer": "i",
        },
        {"certificate_identity_regexp": "(", "certificate_oidc_issuer": "i"},
        {"certificate_identity": "a@example.com"},
        {},
    ],
)
def test_validation(rules: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        VerificationPolicy(**rules).validate()
