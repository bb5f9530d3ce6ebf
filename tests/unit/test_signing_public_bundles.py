"""Verification of real bundles from the public Sigstore instances (offline, embedded roots)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ocimodel.errors import UsageError, VerificationError
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.signing.verify import SignatureInfo, verify_blob, verify_bundle

pytest_plugins = ["sigstore_fixtures"]

GITHUB_OAUTH = "https://github.com/login/oauth"
ACTIONS = "https://token.actions.githubusercontent.com"
RFC8785_RELEASE = (
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
)
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
WILLIAM = VerificationPolicy(
    certificate_identity="william@yossarian.net", certificate_oidc_issuer=GITHUB_OAUTH, staging=True
)


def verify_pair(data: Path, blob: str, suffix: str, rules: VerificationPolicy) -> SignatureInfo:
    """verify_blob of ``blob`` against its bundle ``blob + suffix``."""
    return verify_blob(data / blob, data / f"{blob}{suffix}", rules)


@pytest.mark.parametrize(
    ("blob", "bundle", "rules", "signer"),
    [
        ("bundle_v3.txt", "bundle_v3.txt.sigstore", WILLIAM, "william@yossarian.net"),
        ("bundle_v3_alt.txt", "bundle_v3_alt.txt.sigstore", WILLIAM, "william@yossarian.net"),
        (
            "bundle_v3_github.whl",
            "bundle_v3_github.whl.sigstore",
            VerificationPolicy(
                certificate_identity=RFC8785_RELEASE,
                certificate_oidc_issuer=ACTIONS,
                certificate_github_workflow_repository="trailofbits/rfc8785.py",
            ),
            RFC8785_RELEASE,
        ),
        (
            "staging-rekor-v2.txt",
            "staging-rekor-v2.txt.sigstore.json",
            VerificationPolicy(
                certificate_identity="jku@goto.fi",
                certificate_oidc_issuer=GITHUB_OAUTH,
                staging=True,
            ),
            "jku@goto.fi",
        ),
    ],
)
def test_public_message_signatures_verify(
    sigstore_data: Path, blob: str, bundle: str, rules: VerificationPolicy, signer: str
) -> None:
    info = verify_blob(sigstore_data / blob, sigstore_data / bundle, rules)
    assert (info.kind, info.signer) == ("keyless", signer)


def test_pinned_trusted_root_file(sigstore_data: Path) -> None:
    blob, bundle = sigstore_data / "bundle_v3.txt", sigstore_data / "bundle_v3.txt.sigstore"
    staging = sigstore_data / "trusted_root.staging.json"
    assert verify_blob(
        blob, bundle, dataclasses.replace(WILLIAM, staging=False, trusted_root=staging)
    )
    production = sigstore_data / "trusted_root.production.json"
    with pytest.raises(VerificationError, match="untrusted certificate"):
        verify_blob(
            blob, bundle, dataclasses.replace(WILLIAM, staging=False, trusted_root=production)
        )


def test_unreadable_trusted_root_is_a_usage_error(sigstore_data: Path) -> None:
    rules = dataclasses.replace(WILLIAM, staging=False, trusted_root=sigstore_data / "SOURCE.md")
    with pytest.raises(UsageError, match="not a Sigstore trusted root"):
        verify_pair(sigstore_data, "bundle_v3.txt", ".sigstore", rules)
    # A pinned root and the staging root at once is ambiguous: refused, not one silently preferred.
    with pytest.raises(UsageError, match="--trusted-root or --staging, not both"):
        verify_pair(sigstore_data, "bundle_v3.txt", ".sigstore", dataclasses.replace(rules, staging=True))


def test_rekor_v2_dsse_bundle_verifies(sigstore_data: Path) -> None:
    """The DSSE bundle signs a statement about another file (sigstore-python's a.txt)."""
    bundle = (sigstore_data / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
    rules = VerificationPolicy(
        certificate_identity=BEACON, certificate_oidc_issuer=ACTIONS, staging=True
    )
    subject = "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
    info = verify_bundle(bundle, subject, rules, predicate_type="https://slsa.dev/provenance/v1")
    assert info.signer == BEACON
    with pytest.raises(VerificationError, match="wrong predicate type"):
        verify_bundle(bundle, subject, rules)
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_pair(sigstore_data, "a.dsse.staging-rekor-v2.txt", ".sigstore.json", rules)


def test_wrong_identity_refused(sigstore_data: Path) -> None:
    rules = VerificationPolicy(
        certificate_identity="mallory@example.com",
        certificate_oidc_issuer=GITHUB_OAUTH,
        staging=True,
    )
    with pytest.raises(VerificationError, match="wrong identity"):
        verify_pair(sigstore_data, "bundle_v3.txt", ".sigstore", rules)


def test_other_file_refused(sigstore_data: Path) -> None:
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_blob(
            sigstore_data / "bundle_v3_alt.txt", sigstore_data / "bundle_v3.txt.sigstore", WILLIAM
        )


def test_cve_2022_36056_bundle_refused(sigstore_data: Path) -> None:
    rules = VerificationPolicy(
        certificate_identity_regexp=".*", certificate_oidc_issuer_regexp=".*", staging=True
    )
    with pytest.raises(VerificationError, match="inconsistent"):
        verify_pair(sigstore_data, "bundle_cve_2022_36056.txt", ".sigstore", rules)


def test_not_a_bundle_refused(sigstore_data: Path) -> None:
    with pytest.raises(VerificationError, match="bad bundle"):
        verify_blob(sigstore_data / "bundle_v3.txt", sigstore_data / "bundle_v3.txt", WILLIAM)
    with pytest.raises(VerificationError, match="bad bundle"):
        verify_bundle('{"mediaType": "nope"}', "ab" * 32, WILLIAM)
