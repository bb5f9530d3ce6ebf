"""Forging a stage history against the real registry, and what a policy makes of it.

The attacker can push to the repository (tags, manifests, blobs, referrers) but holds no key
the policy trusts. Each test first builds an honest, signed history, then forges it the way
such an attacker would, and checks that ``history``/``stages``/``rollback`` with the policy
report it (and refuse), while without a policy they can only say "unverified".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocimodel import provenance
from ocimodel.api import Client
from ocimodel.descriptor import EMPTY_JSON, EMPTY_V1, INDEX_V1, Descriptor, Manifest
from ocimodel.errors import UsageError, VerificationError
from ocimodel.lifecycle.actor import Actor
from ocimodel.lifecycle.history import history
from ocimodel.lifecycle.promote import promote
from ocimodel.lifecycle.records import RECORD_MEDIA_TYPE, PromotionRecord, build_record_manifest, history_tag
from ocimodel.lifecycle.rollback import rollback
from ocimodel.lifecycle.stages import stages
from ocimodel.reference import Reference
from ocimodel.referrers import fallback_tag
from ocimodel.registry.connection import Connection
from ocimodel.registry.target import RegistryTarget, target_ref
from ocimodel.signing import keys as signing_keys
from ocimodel.signing.bundles import attach_bundle, find_bundles
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.storage import TargetRef

pytest_plugins = ["sigstore_fixtures"]

FAST = 0.05
PASSWORD = b"record-signing"


@pytest.fixture(autouse=True)
def no_ci_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTOR", "GITLAB_USER_LOGIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo_ref(registry, repo) -> Reference:
    return Reference(registry=registry.host, repository=repo)


@pytest.fixture
def push(registry, docker_config, tmp_path: Path):
    """push(repo, tag) -> digest of a fresh one-file model."""
    oc = Client(Connection(plain_http=True))

    def _push(repo: str, tag: str) -> str:
        src = tmp_path / f"model-{repo.replace('/', '_')}-{tag}.bin"
        src.write_bytes(os.urandom(1024))
        return oc.push(src, f"{registry.host}/{repo}:{tag}", code=False).digest

    yield _push
    oc.close()


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Path, Path]]:
    """The release key the policy trusts, and mallory's."""
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", PASSWORD.decode())
    return {name: signing_keys.generate_keypair(tmp_path / name, PASSWORD) for name in ("release", "mallory")}


@pytest.fixture
def policy(keys) -> VerificationPolicy:
    return VerificationPolicy(keys=(keys["release"][1],))


def signer(key: Path):
    return lambda ref: provenance.sign(ref, key=key, interactive=False)


def signed_history(client, repo_ref: Reference, push, key: Path, count: int = 3) -> list[tuple[str, str]]:
    """``count`` signed promotions to prod: [(model digest, record digest)], oldest first."""
    done = []
    for n in range(1, count + 1):
        digest = push(repo_ref.repository, str(n))
        result = promote(target_ref(client, repo_ref.with_tag(str(n))), "prod", reason=f"r{n}", actor="release", sign_record=signer(key), settle=FAST)
        done.append((digest, result.record))
    return done


def forge(client, repo_ref: Reference, model: str, previous_digest: str | None, previous_record: str | None,
          *, stage: str = "prod", repository: str | None = None) -> Manifest:
    """Push a record manifest as an attacker would (not indexed, not signed, no tag moved)."""
    fetched = client.get_manifest(repo_ref.with_digest(model))
    record = PromotionRecord(stage, repository or repo_ref.name, model, previous_digest, previous_record,
                             Actor("release", "explicit"), "2030-01-01T00:00:00Z", "all good")
    manifest = build_record_manifest(record, Descriptor(fetched.media_type, fetched.digest, len(fetched.raw)))
    client.push_blob_bytes(repo_ref, EMPTY_V1, EMPTY_JSON)
    client.push_blob_bytes(repo_ref, RECORD_MEDIA_TYPE, record.to_bytes())
    client.put_manifest(repo_ref.with_digest(manifest.digest), manifest.raw, manifest.media_type)
    return manifest


def point(client, repo_ref: Reference, head: Manifest | str, model: str, stage: str = "prod") -> None:
    """Move the history tag to ``head`` and the stage tag to ``model``, as `crane tag` would."""
    raw = head.raw if isinstance(head, Manifest) else client.get_manifest(repo_ref.with_digest(head)).raw
    client.put_manifest(repo_ref.with_tag(history_tag(stage)), raw, "application/vnd.oci.image.manifest.v1+json")
    fetched = client.get_manifest(repo_ref.with_digest(model))
    client.put_manifest(repo_ref.with_tag(stage), fetched.raw, fetched.media_type)


def kinds(report) -> list[tuple[str, str | None]]:
    return [(f.kind, f.record) for f in report.findings]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, "OCIMODEL_PLAIN_HTTP": "1", **env}, timeout=120)


# ------------------------------------------------------------------------------ the honest case


def test_signed_history_verifies_and_unsigned_history_says_unverified(client, repo_ref, push, keys, policy, docker_config):
    chain = signed_history(client, repo_ref, push, keys["release"][0])
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert report.ok and report.verified is True, report.findings
    assert [e.signature_verified for e in report.entries] == [True, True, True]
    assert [e.record for e in report.entries] == [r for _, r in reversed(chain)]

    base = f"{repo_ref.registry}/{repo_ref.repository}"
    env = {"DOCKER_CONFIG": str(docker_config)}
    verified = cli("history", base, "prod", "--key", str(keys["release"][1]), env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.count("[verified: key ") == 3
    plain = cli("history", base, "prod", env=env)
    assert plain.returncode == 0 and plain.stdout.count("[signed, unverified]") == 3
    listed = cli("stages", base, env=env)
    assert listed.returncode == 0 and "[unverified]" in listed.stdout
    checked = cli("stages", base, "--key", str(keys["release"][1]), "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    [prod] = json.loads(checked.stdout)
    assert prod["signatureVerified"] is True and prod["signedBy"].startswith("key ")


# ------------------------------------------------------------------------------ attacks


def test_chain_replaced_by_an_unsigned_one(client, repo_ref, push, keys, policy, docker_config):
    """Mallory rewrites the history tag to a forged chain ending at her model."""
    (d1, r1), (d2, r2), _ = signed_history(client, repo_ref, push, keys["release"][0])
    evil = push(repo_ref.repository, "evil")
    f1 = forge(client, repo_ref, d1, None, None)
    f2 = forge(client, repo_ref, evil, d1, f1.digest)
    point(client, repo_ref, f2, evil)

    plain = history(RegistryTarget(client, repo_ref), "prod")
    assert plain.ok and plain.verified is None  # consistent: without a policy nothing is wrong
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert not report.ok and report.verified is False
    found = kinds(report)
    assert ("unsigned", f2.digest) in found and ("unsigned", f1.digest) in found
    # The genuine signed records are still referrers of their models: the chain was swapped.
    replaced = [f for f in report.findings if f.kind == "chain-replaced"]
    assert {f.record for f in replaced} >= {r2}
    assert "this history does not contain" in replaced[0].message

    with pytest.raises(VerificationError, match=f"refusing to roll back prod to {d1}.*not signed under the policy"):
        rollback(RegistryTarget(client, repo_ref), "prod", to=d1, policy=policy, settle=FAST)
    assert client.head_manifest(repo_ref.with_tag("prod")).digest == evil

    base = f"{repo_ref.registry}/{repo_ref.repository}"
    env = {"DOCKER_CONFIG": str(docker_config)}
    out = cli("history", base, "prod", "--key", str(keys["release"][1]), env=env)
    assert out.returncode == 5, out.stderr
    assert "NOT verified: unsigned" in out.stdout and "Traceback" not in out.stderr
    assert cli("history", base, "prod", env=env).returncode == 0
    listed = cli("stages", base, "--key", str(keys["release"][1]), env=env)
    assert listed.returncode == 5 and "[NOT verified]" in listed.stdout and "unsigned" in listed.stdout


def test_forged_records_signed_with_another_key(client, repo_ref, push, keys, policy):
    (d1, r1), (d2, r2), (d3, r3) = signed_history(client, repo_ref, push, keys["release"][0])
    evil = push(repo_ref.repository, "evil")
    forged = forge(client, repo_ref, evil, d3, r3)
    provenance.sign(target_ref(client, repo_ref.with_digest(forged.digest)), key=keys["mallory"][0], interactive=False)
    point(client, repo_ref, forged, evil)

    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert kinds(report) == [("signed-by-other", forged.digest)]
    assert "not by anyone the policy trusts" in report.findings[0].message
    assert "wrong key" in report.findings[0].message
    assert [e.signature_verified for e in report.entries] == [False, True, True, True]
    # The mallory-signed record passes a policy that trusts mallory: the policy decides.
    assert history(RegistryTarget(client, repo_ref), "prod", policy=VerificationPolicy(keys=(keys["mallory"][1],))).entries[0].signature_verified

    # Undoing the forged promotion would trust its claim of what came before: name the target.
    with pytest.raises(VerificationError, match=f"promotion record {forged.digest} .*is signed-by-other.*--to"):
        rollback(RegistryTarget(client, repo_ref), "prod", policy=policy, settle=FAST)
    assert rollback(RegistryTarget(client, repo_ref), "prod", to=d2, policy=policy, settle=FAST).digest == d2
    with pytest.raises(VerificationError, match=f"refusing to roll back prod to {evil}: the records.*signed-by-other"):
        rollback(RegistryTarget(client, repo_ref), "prod", to=evil, policy=policy, settle=FAST)


def test_forged_head_cannot_steer_a_rollback_to_an_old_version(client, repo_ref, push, keys, policy):
    """An unsigned record on top of the genuine chain claims the stage held v1 before it."""
    (d1, r1), (d2, r2), (d3, r3) = signed_history(client, repo_ref, push, keys["release"][0])
    forged = forge(client, repo_ref, d3, d1, r3)  # "d1 -> d3": rollback --steps 1 would pick d1
    point(client, repo_ref, forged, d3)
    with pytest.raises(VerificationError, match="is unsigned under the policy"):
        rollback(RegistryTarget(client, repo_ref), "prod", policy=policy, settle=FAST)
    assert client.head_manifest(repo_ref.with_tag("prod")).digest == d3
    # Without a policy the forged claim is all there is to go by.
    assert rollback(RegistryTarget(client, repo_ref), "prod", settle=FAST).digest == d1


def test_signature_of_another_record_attached_to_a_forged_one(client, repo_ref, push, keys, policy):
    """Mallory copies the release signature referrer of r3 onto her record (same bundle bytes)."""
    (d1, r1), (d2, r2), (d3, r3) = signed_history(client, repo_ref, push, keys["release"][0])
    evil = push(repo_ref.repository, "evil")
    forged = forge(client, repo_ref, evil, d3, r3)
    [genuine] = find_bundles(RegistryTarget(client, repo_ref), r3)
    subject = Descriptor(forged.media_type, forged.digest, len(forged.raw))
    attach_bundle(RegistryTarget(client, repo_ref), subject, genuine.bundle, settle=FAST)
    point(client, repo_ref, forged, evil)

    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert kinds(report) == [("signature-mismatch", forged.digest)]
    assert "signature of other bytes" in report.findings[0].message
    assert f"covers sha256:{r3.removeprefix('sha256:')}" in report.findings[0].message
    assert report.entries[0].signed and report.entries[0].signature_problem == "signature-mismatch"


def test_history_tag_moved_back_to_an_older_signed_head(client, repo_ref, push, keys, policy):
    """Every record left in the chain is genuinely signed; the newest one was dropped."""
    (d1, r1), (d2, r2), (d3, r3) = signed_history(client, repo_ref, push, keys["release"][0])
    point(client, repo_ref, r2, d2)

    assert history(RegistryTarget(client, repo_ref), "prod").ok  # nothing to see without a policy
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert [e.signature_verified for e in report.entries] == [True, True]
    assert kinds(report) == [("head-behind", r3)]
    assert f"follows the history head {r2}" in report.findings[0].message
    assert report.verified is False
    # "previous" is not the stage's real past any more: rollback wants an explicit target.
    with pytest.raises(UsageError, match="head-behind.*name the digest with --to"):
        rollback(RegistryTarget(client, repo_ref), "prod", policy=policy, settle=FAST)
    assert rollback(RegistryTarget(client, repo_ref), "prod", to=d1, policy=policy, settle=FAST).digest == d1


def test_signed_record_replayed_from_another_repository(client, registry, repo_ref, push, keys, policy):
    """A record signed for repository A is copied, with its model and signature, into B."""
    [(d1, r1)] = signed_history(client, repo_ref, push, keys["release"][0], count=1)
    other = Reference(registry=registry.host, repository=repo_ref.repository + "-b")
    push(other.repository, "base")
    for digest in (d1, r1):
        copy_manifest(client, repo_ref, other, digest)
    [genuine] = find_bundles(RegistryTarget(client, repo_ref), r1)
    record = client.get_manifest(repo_ref.with_digest(r1))
    attach_bundle(RegistryTarget(client, other), Descriptor(record.media_type, r1, len(record.raw)), genuine.bundle, settle=FAST)
    point(client, other, r1, d1)

    report = history(RegistryTarget(client, other), "prod", policy=policy)
    assert kinds(report) == [("wrong-repository", r1)] and not report.complete
    assert f"a promotion in {repo_ref.name}, not {other.name}" in report.findings[0].message


def copy_manifest(client, source: Reference, target: Reference, digest: str) -> None:
    fetched = client.get_manifest(source.with_digest(digest))
    manifest = Manifest.parse(fetched.raw)
    for blob in (manifest.config, *manifest.layers):
        client.push_blob_bytes(target, blob.media_type, client.fetch_blob_bytes(source, blob, max_size=1 << 20))
    client.put_manifest(target.with_digest(digest), fetched.raw, fetched.media_type)


# ------------------------------------------------------------------------------ honest accidents


def test_interrupted_promotion_reported_until_the_next_one(client, repo_ref, push, keys, policy):
    """A signed record whose promotion stopped before moving the head, then a normal promotion."""
    (d1, r1), (d2, r2) = signed_history(client, repo_ref, push, keys["release"][0], count=2)
    push(repo_ref.repository, "3")
    sign = signer(keys["release"][0])
    interrupted: list[str] = []

    def sign_then_die(ref: TargetRef) -> object:
        sign(ref)
        interrupted.append(ref.digest)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        promote(target_ref(client, repo_ref.with_tag("3")), "prod", reason="r3", sign_record=sign_then_die, settle=FAST)
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert kinds(report) == [("head-behind", interrupted[0])]
    assert "stopped before moving the head" in report.findings[0].message

    # The next promotion builds on the same head: the stray record is a sibling, not a finding.
    promote(target_ref(client, repo_ref.with_tag("3")), "prod", reason="r3 again", sign_record=sign, settle=FAST)
    after = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert after.ok and after.verified is True, after.findings
    assert interrupted[0] not in {e.record for e in after.entries}


def test_unsigned_records_before_signing_began(client, repo_ref, push, keys, policy, docker_config):
    push(repo_ref.repository, "1")
    promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="before signing", settle=FAST)
    push(repo_ref.repository, "2")
    signed = promote(target_ref(client, repo_ref.with_tag("2")), "prod", reason="signed", sign_record=signer(keys["release"][0]), settle=FAST)
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert [f.kind for f in report.findings] == ["unsigned"] and report.entries[0].record == signed.record

    base = f"{repo_ref.registry}/{repo_ref.repository}"
    env = {"DOCKER_CONFIG": str(docker_config), "OCIMODEL_KEY_PASSWORD": PASSWORD.decode()}
    sign_model = cli("sign", f"{base}:1", "--key", str(keys["release"][0]), env=env)
    assert sign_model.returncode == 0, sign_model.stderr
    # Without a policy rollback says what it trusts; with one, d1 was reached only by an unsigned record.
    refused = cli("rollback", base, "prod", "--key", str(keys["release"][1]), env=env)
    assert refused.returncode == 5 and "is unsigned" in refused.stderr and "Traceback" not in refused.stderr
    trusting = cli("rollback", base, "prod", env=env)
    assert trusting.returncode == 0, trusting.stderr
    warning = [line for line in trusting.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "trusts the unsigned promotion history of prod" in warning[0]
    assert trusting.stdout.strip() == client.head_manifest(repo_ref.with_tag("1")).digest


def test_keyless_record_signatures_by_another_identity(client, repo_ref, push, sigstore_standin):
    """Records signed keylessly by the release identity; one forged and signed by another identity
    of the same Fulcio: a valid certificate, but not the identity the policy names."""
    from sigstore_standin import GITHUB_ISSUER

    release = "https://github.com/acme/churn/.github/workflows/release.yml@refs/heads/main"

    def keyless(identity: str):
        token = sigstore_standin.mint_token(identity, GITHUB_ISSUER)
        return lambda ref: provenance.sign(ref, identity_token=token, trust_config=sigstore_standin.trust_config_path, interactive=False)

    d1 = push(repo_ref.repository, "1")
    first = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", sign_record=keyless(release), settle=FAST)
    evil = push(repo_ref.repository, "evil")
    forged = forge(client, repo_ref, evil, d1, first.record)
    keyless("mallory@evil.example")(target_ref(client, repo_ref.with_digest(forged.digest)))
    point(client, repo_ref, forged, evil)

    policy = VerificationPolicy(
        certificate_identity_regexp=r"^https://github\.com/acme/churn/\.github/workflows/release\.yml@refs/heads/main$",
        certificate_oidc_issuer=GITHUB_ISSUER,
        trusted_root=sigstore_standin.trusted_root_path,
    )
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert kinds(report) == [("signed-by-other", forged.digest)]
    assert "wrong identity" in report.findings[0].message and "mallory@evil.example" in report.findings[0].message
    assert report.entries[1].signed_by == f"{release} ({GITHUB_ISSUER})"
    info = stages(RegistryTarget(client, repo_ref), policy=policy)[0]
    assert info.signature_verified is False and info.signature_finding.startswith("signed-by-other: ")


def test_garbled_referrers_indexes_are_findings_not_crashes(client, repo_ref, push, keys, policy):
    """Mallory puts a plain manifest where the referrers fallback indexes of a model and of a
    record belong: the record cannot be verified (a finding), the search goes on without them."""
    (d1, r1), (d2, r2) = signed_history(client, repo_ref, push, keys["release"][0], count=2)
    junk = json.dumps({"schemaVersion": 2, "mediaType": INDEX_V1, "manifests": [], "annotations": {"x": 1}}).encode()
    for subject in (d1, r2):
        client.put_manifest(repo_ref.with_tag(fallback_tag(subject)), junk, INDEX_V1)
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert kinds(report) == [("invalid-signature", r2)]
    assert "signatures cannot be listed" in report.findings[0].message
    assert [e.signature_verified for e in report.entries] == [False, True]
