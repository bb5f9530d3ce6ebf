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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"certificate_identiy": "a@example.com"}', "unknown policy field"),
        ('{"certificate_identity": ["a@example.com"]}', "must be a string"),
        ("[1, 2]", "mapping"),
        # JSON and YAML parsers keep the last of a duplicated key: a second line must not replace a rule.
        ("key: a.pub\ncertificate-identity: a@x\nkey: b.pub\n", "'key' is given twice"),
        ('{"staging": true, "nested": {"a": 1, "a": 2}}', "'a' is given twice"),
    ],
)
def test_unknown_mistyped_or_repeated_fields_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
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


# ------------------------------------------------------------------------------ spellings, types


def test_accepted_spellings(tmp_path: Path) -> None:
    """Dashes or underscores, key or keys, allowGlobals in three spellings: all the same policy."""
    (tmp_path / "k.pub").write_text("unused")
    expected = VerificationPolicy(
        certificate_identity="a@example.com",
        certificate_oidc_issuer="https://i",
        keys=(tmp_path / "k.pub",),
        allow_globals=("collections.OrderedDict", "torch._utils._rebuild_tensor_v2"),
    )
    globals_ = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2"]
    for identity, key, allow in (
        ("certificate_identity", "key", "allowGlobals"),
        ("certificate-identity", "keys", "allow-globals"),
        ("certificate-identity", "key", "allow_globals"),
    ):
        data = {identity: "a@example.com", "certificate-oidc-issuer": "https://i", key: "k.pub", allow: globals_}
        assert VerificationPolicy.from_mapping(data, base_dir=tmp_path) == expected
    assert expected.allow_globals == tuple(globals_)
    assert not VerificationPolicy(allow_globals=("a.b",)).requires_verification


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"certificate_identity": None}, "certificate_identity is null"),
        ({"key": []}, "key is an empty list"),
        ({"key": None}, "key is null"),
        ({"keys": ["a.pub", ""]}, "key is empty"),
        ({"keys": [["a.pub"]]}, "must be a string, not list"),
        ({"key": "a.pub", "keys": "b.pub"}, "'key' and 'keys' are the same field"),
        ({"trusted-root": 7}, "trusted-root must be a string, not int"),
        ({"staging": "true"}, "staging must be true or false"),
        ({"allowGlobals": "os.system"}, "allowGlobals must be a list"),
        ({"allowGlobals": ["os"]}, "'os' is not MODULE.NAME"),
        ({"allowGlobals": ["os.*"]}, "'os.*' is not MODULE.NAME"),
        ({"certificate-identity": "a@example.com\n"}, "trailing whitespace"),
        ({"certificateOidcIssuer": "https://i"}, "did you mean 'certificate-oidc-issuer'"),
        ({1: "x"}, "unknown policy field 1"),
    ],
)
def test_mapping_refusals_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(UsageError, match="^policy: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        VerificationPolicy.from_mapping(data)


def test_flags_override_a_rule_not_a_field(tmp_path: Path) -> None:
    """An identity regexp flag replaces the file's exact identity instead of conflicting with it."""
    path = tmp_path / "p.json"
    path.write_text('{"certificate_identity": "a@example.com", "certificate_oidc_issuer_regexp": "https://i.*"}')
    merged = VerificationPolicy.from_options(
        policy_file=path, certificate_identity_regexp=r"b@example\.com", certificate_oidc_issuer="https://j"
    )
    assert (merged.certificate_identity, merged.certificate_identity_regexp) == (None, r"b@example\.com")
    assert (merged.certificate_oidc_issuer, merged.certificate_oidc_issuer_regexp) == ("https://j", None)
    merged.validate()


# ------------------------------------------------------------------------------ match everything


@pytest.mark.parametrize(
    "pattern", [".*", ".+", "^.*$", "(.*)", r"[\s\S]*", "(?s).*", ".{0,}", r"\S+", ".*|x", "..*", "(?:.+)?"]
)
def test_match_everything_detected_by_effect(pattern: str) -> None:
    policy = VerificationPolicy(certificate_identity_regexp=pattern, certificate_oidc_issuer_regexp=pattern)
    assert policy.match_everything() == [
        f"certificate-identity-regexp {pattern!r}",
        f"certificate-oidc-issuer-regexp {pattern!r}",
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        r"https://github\.com/acme/.*",  # weak (any repository of acme), but not "anything": see the examples test
        r".*@example\.com",
        r"https://token\.actions\.githubusercontent\.com",
        r"[a-z]+",
    ],
)
def test_narrower_regexps_not_flagged(pattern: str) -> None:
    assert VerificationPolicy(certificate_identity_regexp=pattern, certificate_oidc_issuer="https://i").match_everything() == []


# ------------------------------------------------------------------------------ documented regexps

ROOT = Path(__file__).resolve().parents[2]
#: Identities a pinned release-workflow regexp must refuse.
HOSTILE = [
    "https://github.com/acme/x@evil",
    "https://github.com/acme/churn/.github/workflows/evil.yml@refs/heads/main",
    "https://github.com/acme/models/.github/workflows/evil.yml@refs/tags/v1",
    "https://github.com/acme/churn/.github/workflows/release.yml@refs/heads/evil",
    "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/evil",
    "https://github.com/acme/churn/.github/workflows/release.yml@refs/pull/1/merge",
    "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1/evil",
    "https://github.com/acme/churn-evil/.github/workflows/release.yml@refs/heads/main",
    "https://github.com/evil/churn/.github/workflows/release.yml@refs/heads/main",
    "https://githubXcom/acme/churn/.github/workflows/release.yml@refs/heads/main",
    "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1.2.3@evil",
]
GENUINE = [
    "https://github.com/acme/churn/.github/workflows/release.yml@refs/heads/main",
    "https://github.com/acme/churn/.github/workflows/release.yml@refs/tags/v1.2.0",
    "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1",
]


def documented_identity_regexps() -> list[str]:
    """Every identity regexp the README, the docs and the examples show (CLI and YAML forms)."""
    import re

    import yaml

    found = []
    for name in ("README.md", "docs/signing.md", "examples/k8s/README.md"):
        found += re.findall(r"--certificate-identity-regexp '([^']+)'", (ROOT / name).read_text())
    for path in sorted((ROOT / "examples").rglob("*.y*ml")):
        for line in path.read_text().splitlines():
            if "certificate-identity-regexp:" in line and not line.lstrip().startswith("#"):
                found.append(yaml.safe_load(line.strip())["certificate-identity-regexp"])
    for doc in yaml.safe_load_all((ROOT / "examples/k8s/configmap-policy.yaml").read_text()):
        policy = yaml.safe_load(doc["data"]["policy.yaml"])
        found.append(policy["certificate-identity-regexp"])
    return found


def test_documented_identity_regexps_pin_repository_workflow_and_ref() -> None:
    import re

    patterns = documented_identity_regexps()
    assert len(patterns) >= 4
    for pattern in patterns:
        assert any(re.fullmatch(pattern, good) for good in GENUINE), pattern
        accepted = [bad for bad in HOSTILE if re.fullmatch(pattern, bad)]
        assert accepted == [], (pattern, accepted)
