"""Stages against the real distribution registry: promote, history, rollback, delete, races."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest
from registry_fixtures import fast_retry
from test_actor import CI_VARS

from ocimodel import provenance
from ocimodel.api import Client
from ocimodel.descriptor import EMPTY_DIGEST, EMPTY_JSON, EMPTY_V1, Descriptor, Manifest
from ocimodel.errors import InvalidReferenceError, UsageError, VerificationError
from ocimodel.lifecycle.actor import Actor
from ocimodel.lifecycle.delete import delete, plan_delete
from ocimodel.lifecycle.history import history
from ocimodel.lifecycle.promote import StageConflictError, promote
from ocimodel.lifecycle.records import (
    PROMOTION_ARTIFACT_TYPE,
    RECORD_MEDIA_TYPE,
    PromotionRecord,
    build_record_manifest,
    history_tag,
    load_record,
    validate_stage,
)
from ocimodel.lifecycle.rollback import rollback
from ocimodel.lifecycle.stages import stages
from ocimodel.reference import Reference
from ocimodel.referrers import fallback_tag, list_referrers
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.registry.credentials import CredentialStore
from ocimodel.registry.target import RegistryTarget, target_ref
from ocimodel.signing import keys as signing_keys
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.storage import TargetRef

FAST = 0.05  # settle time for tests without real races
PASSWORD = b"record-signing"


@pytest.fixture(autouse=True)
def no_ci_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run the same inside and outside CI."""
    for name in CI_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo_ref(registry, repo) -> Reference:
    return Reference(registry=registry.host, repository=repo)


@pytest.fixture
def push(registry, repo, docker_config, tmp_path: Path):
    """push(tag) -> digest of a fresh one-file model tagged ``tag`` in ``repo``."""
    oc = Client(Connection(plain_http=True))

    def _push(tag: str) -> str:
        src = tmp_path / f"model-{tag}.bin"
        src.write_bytes(os.urandom(2048))
        return oc.push(src, f"{registry.host}/{repo}:{tag}", code=False).digest

    yield _push
    oc.close()


def new_client(**kwargs) -> RegistryClient:
    return RegistryClient(Connection(plain_http=True), credentials=CredentialStore(), retry=fast_retry(), **kwargs)


def tags_of(client: RegistryClient, repo_ref: Reference) -> list[str]:
    return client.list_tags(repo_ref)


def at(client: RegistryClient, repo_ref: Reference, tag: str) -> str | None:
    found = client.head_manifest(repo_ref.with_tag(tag))
    return found.digest if found else None


# ------------------------------------------------------------------------------ promote


def test_promote_moves_only_the_tag(client, registry, repo_ref, push):
    d1 = push("1.0")
    model = client.get_manifest(repo_ref.with_digest(d1))
    manifest = Manifest.parse(model.raw)
    model_blobs = {manifest.config.digest} | {layer.digest for layer in manifest.layers}
    requests: list[httpx.Request] = []
    with new_client(event_hooks={"request": [requests.append]}) as counting:
        result = promote(target_ref(counting, repo_ref.with_tag("1.0")), "prod", reason="first release", actor="alice", settle=FAST)

    assert result.changed and result.digest == d1 and result.previous_digest is None
    staged = client.get_manifest(repo_ref.with_tag("prod"))
    assert staged.raw == model.raw and staged.digest == d1 and staged.media_type == model.media_type
    touched = [str(r.url) for r in requests if "/blobs/" in r.url.path]
    assert not [u for u in touched if any(b.split(":")[1] in u for b in model_blobs)]
    uploaded = {r.url.params.get("digest") for r in requests if r.method == "PUT" and "/blobs/uploads/" in r.url.path}
    record = client.get_manifest(repo_ref.with_digest(result.record))
    record_layer = Manifest.parse(record.raw).layers[0]
    assert uploaded <= {EMPTY_DIGEST, record_layer.digest}
    manifest_puts = {r.url.path.rsplit("/", 1)[1] for r in requests if r.method == "PUT" and "/manifests/" in r.url.path}
    assert manifest_puts == {result.record, "prod", history_tag("prod"), fallback_tag(d1)}
    assert tags_of(client, repo_ref) == sorted(["1.0", "prod", history_tag("prod"), fallback_tag(d1)])
    # The record is a referrer of the model, of our own artifact type.
    referrers = list_referrers(RegistryTarget(client, repo_ref), d1)
    assert [(r.digest, r.artifact_type) for r in referrers] == [(result.record, PROMOTION_ARTIFACT_TYPE)]
    loaded = load_record(RegistryTarget(client, repo_ref), result.record).record
    assert (loaded.stage, loaded.repository, loaded.digest) == ("prod", repo_ref.name, d1)
    assert (loaded.previous_digest, loaded.previous_record, loaded.reason) == (None, None, "first release")
    assert loaded.actor.name == "alice" and loaded.time.endswith("Z")


def test_promote_same_digest_again_writes_nothing(client, repo_ref, push):
    push("1.0")
    first = promote(target_ref(client, repo_ref.with_tag("1.0")), "prod", reason="r", settle=FAST)
    before = tags_of(client, repo_ref)
    again = promote(target_ref(client, repo_ref.with_tag("1.0")), "prod", reason="r", settle=FAST)
    assert not again.changed and again.record is None and again.previous_record == first.record
    assert tags_of(client, repo_ref) == before
    assert len(history(RegistryTarget(client, repo_ref), "prod").entries) == 1


def test_stage_names_are_validated(client, repo_ref, push):
    push("1.0")
    for reserved in ("ocimodel.history.prod", "ocimodel.x", "sha256-" + "a" * 64):
        with pytest.raises(UsageError, match="reserved"):
            validate_stage(reserved)
    with pytest.raises(InvalidReferenceError):
        validate_stage("not a tag")
    with pytest.raises(UsageError, match="at most"):
        validate_stage("p" * 120)
    with pytest.raises(UsageError, match="reserved"):
        promote(target_ref(client, repo_ref.with_tag("1.0")), "ocimodel.history.x", reason="r")
    assert tags_of(client, repo_ref) == ["1.0"]


def test_a_promotion_record_cannot_be_promoted(client, repo_ref, push):
    push("1.0")
    result = promote(target_ref(client, repo_ref.with_tag("1.0")), "prod", reason="r", settle=FAST)
    with pytest.raises(UsageError, match="is a promotion record"):
        promote(target_ref(client, repo_ref.with_digest(result.record)), "staging", reason="r", settle=FAST)


# ------------------------------------------------------------------------------ history, rollback


def test_history_after_promotions_and_rollbacks(client, repo_ref, push):
    d1, d2, d3 = push("1"), push("2"), push("3")
    promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", actor="alice", settle=FAST)
    promote(target_ref(client, repo_ref.with_tag("2")), "prod", reason="r2", actor="bob", settle=FAST)
    promote(target_ref(client, repo_ref.with_tag("3")), "prod", reason="r3", actor="carol", settle=FAST)
    back = rollback(RegistryTarget(client, repo_ref), "prod", reason="bad metrics", actor="dave", settle=FAST)
    assert (back.digest, back.previous_digest, back.reason) == (d2, d3, "rollback: bad metrics")
    rollback(RegistryTarget(client, repo_ref), "prod", to=d1, actor="erin", settle=FAST)
    assert at(client, repo_ref, "prod") == d1

    report = history(RegistryTarget(client, repo_ref), "prod")
    assert report.ok and report.complete and report.current == d1
    steps = [(e.from_digest, e.to_digest, e.reason, e.actor.name) for e in report.entries]
    assert steps == [
        (d2, d1, "rollback", "erin"),
        (d3, d2, "rollback: bad metrics", "dave"),
        (d2, d3, "r3", "carol"),
        (d1, d2, "r2", "bob"),
        (None, d1, "r1", "alice"),
    ]
    assert report.head == report.entries[0].record
    for newer, older in zip(report.entries, report.entries[1:]):
        assert newer.previous_record == older.record  # the hash chain links
    assert report.entries[-1].previous_record is None
    assert not any(e.signed for e in report.entries)
    assert report.to_dict()["entries"][0]["to"] == d1

    info = stages(RegistryTarget(client, repo_ref))
    assert [(s.stage, s.digest, s.tags, s.reason, s.promoted_by.name) for s in info] == [
        ("prod", d1, ["1"], "rollback", "erin")
    ]
    assert info[0].finding is None and info[0].record == report.head


def test_rollback_refusals(client, repo_ref, push):
    push("1")
    d2 = push("2")
    promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", settle=FAST)
    with pytest.raises(UsageError, match="did not exist"):
        rollback(RegistryTarget(client, repo_ref), "prod", settle=FAST)
    with pytest.raises(UsageError, match="never was at stage prod"):
        rollback(RegistryTarget(client, repo_ref), "prod", to=d2, settle=FAST)
    with pytest.raises(UsageError, match="only 1 readable"):
        rollback(RegistryTarget(client, repo_ref), "prod", steps=2, settle=FAST)
    assert len(history(RegistryTarget(client, repo_ref), "prod").entries) == 1


def test_several_stages_listed_with_their_tags(client, repo_ref, push):
    d1, d2 = push("1.0"), push("2.0")
    promote(target_ref(client, repo_ref.with_tag("1.0")), "prod", reason="ship", actor="alice", settle=FAST)
    promote(target_ref(client, repo_ref.with_tag("2.0")), "staging", reason="try", actor="bob", settle=FAST)
    client.put_manifest(repo_ref.with_tag("latest"), client.get_manifest(repo_ref.with_tag("2.0")).raw,
                        "application/vnd.oci.image.manifest.v1+json")
    info = {s.stage: s for s in stages(RegistryTarget(client, repo_ref))}
    assert (info["prod"].digest, info["prod"].tags, info["prod"].promoted_by.name) == (d1, ["1.0"], "alice")
    assert (info["staging"].digest, info["staging"].tags, info["staging"].reason) == (d2, ["2.0", "latest"], "try")


def three_records(client, repo_ref, push) -> list[str]:
    for tag, reason in (("1", "r1"), ("2", "r2"), ("3", "r3")):
        push(tag)
        promote(target_ref(client, repo_ref.with_tag(tag)), "prod", reason=reason, settle=FAST)
    return [e.record for e in history(RegistryTarget(client, repo_ref), "prod").entries]


def test_tampered_record_reported(client, registry, repo_ref, push):
    newest, middle, oldest = three_records(client, repo_ref, push)
    layer = Manifest.parse(client.get_manifest(repo_ref.with_digest(middle)).raw).layers[0]
    data = registry.blob_path(layer.digest).read_bytes()
    assert b'"r2"' in data
    registry.blob_path(layer.digest).write_bytes(data.replace(b'"r2"', b'"R2"'))  # same length

    report = history(RegistryTarget(client, repo_ref), "prod")
    assert [e.record for e in report.entries] == [newest]
    assert not report.complete and not report.ok
    assert [(f.kind, f.record) for f in report.findings] == [("tampered-record", middle)]
    assert f"record {middle} (named by record {newest}) fails its digest" in report.findings[0].message


def test_missing_record_reported(client, repo_ref, push):
    newest, middle, oldest = three_records(client, repo_ref, push)
    client.delete_manifest(repo_ref.with_digest(middle))
    report = history(RegistryTarget(client, repo_ref), "prod")
    assert [e.record for e in report.entries] == [newest] and not report.complete
    assert [(f.kind, f.record) for f in report.findings] == [("missing-record", middle)]
    assert report.findings[0].message == (
        f"chain broken: record {middle} (named by record {newest}) is missing from the registry"
    )
    with pytest.raises(UsageError, match="chain is broken"):
        rollback(RegistryTarget(client, repo_ref), "prod", steps=2, settle=FAST)


def test_stage_moved_outside_ocimodel_reported(client, repo_ref, push):
    d1, d2 = push("1"), push("2")
    first = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", actor="alice", settle=FAST)
    other = client.get_manifest(repo_ref.with_tag("2"))
    client.put_manifest(repo_ref.with_tag("prod"), other.raw, other.media_type)  # e.g. crane tag

    report = history(RegistryTarget(client, repo_ref), "prod")
    assert report.current == d2 and [e.to_digest for e in report.entries] == [d1]
    assert [f.kind for f in report.findings] == ["moved-outside"]
    message = report.findings[0].message
    assert f"stage tag prod points at {d2}" in message and f"({first.record}, by alice" in message
    assert f"moved it to {d1}" in message and "outside ocimodel" in message
    assert "moved outside ocimodel" in stages(RegistryTarget(client, repo_ref))[0].finding
    with pytest.raises(UsageError, match="name the digest with --to"):
        rollback(RegistryTarget(client, repo_ref), "prod", settle=FAST)

    # The next promotion records what the stage really held before it.
    push("3")
    third = promote(target_ref(client, repo_ref.with_tag("3")), "prod", reason="r3", settle=FAST)
    assert third.previous_digest == d2 and third.previous_record == first.record
    assert history(RegistryTarget(client, repo_ref), "prod").ok


def test_stage_tag_without_history_reported(client, repo_ref, push):
    d1 = push("1")
    client.put_manifest(repo_ref.with_tag("prod"), client.get_manifest(repo_ref.with_tag("1")).raw,
                        "application/vnd.oci.image.manifest.v1+json")
    report = history(RegistryTarget(client, repo_ref), "prod")
    assert [f.kind for f in report.findings] == ["no-history"] and report.current == d1
    with pytest.raises(Exception, match="no stage 'qa'"):
        history(RegistryTarget(client, repo_ref), "qa")


# ------------------------------------------------------------------------------ delete


def test_delete_refuses_a_staged_digest_and_names_the_stage(client, repo_ref, push):
    d1 = push("1.0")
    promote(target_ref(client, repo_ref.with_tag("1.0")), "prod", reason="r", settle=FAST)
    with pytest.raises(UsageError, match=rf"{d1} is what stage\(s\) point at: prod; pass --force"):
        delete(target_ref(client, repo_ref.with_digest(d1)))
    with pytest.raises(UsageError, match="tag prod is stage prod"):
        delete(target_ref(client, repo_ref.with_tag("prod")))
    with pytest.raises(UsageError, match="ocimodel's own"):
        delete(target_ref(client, repo_ref.with_tag(history_tag("prod"))))
    assert at(client, repo_ref, "prod") == d1

    plan = plan_delete(target_ref(client, repo_ref.with_digest(d1)))
    assert (plan.tags, plan.stages, plan.deleted) == (["1.0", "prod"], ["prod"], False)
    done = delete(target_ref(client, repo_ref.with_digest(d1)), force=True)
    assert done.deleted and done.tags == ["1.0", "prod"]
    assert at(client, repo_ref, "prod") is None and at(client, repo_ref, "1.0") is None
    report = history(RegistryTarget(client, repo_ref), "prod")
    assert [f.kind for f in report.findings] == ["moved-outside"]
    assert "points at nothing (tag deleted)" in report.findings[0].message


def test_delete_unstaged_digest_and_tag_on_a_registry_without_tag_deletion(client, repo_ref, push):
    d1 = push("1.0")
    client.put_manifest(repo_ref.with_tag("best"), client.get_manifest(repo_ref.with_tag("1.0")).raw,
                        "application/vnd.oci.image.manifest.v1+json")
    d2 = push("2.0")
    # distribution answers DELETE by tag with 400 DIGEST_INVALID: say what can be done instead.
    with pytest.raises(UsageError) as refused:
        delete(target_ref(client, repo_ref.with_tag("best")))
    assert str(refused.value) == (
        f"registry {repo_ref.registry} cannot delete the tag best alone (it deletes manifests by digest, which "
        f"removes every tag on {d1}: 1.0, best); to do that: ocimodel delete {repo_ref.name}@{d1}"
    )
    assert at(client, repo_ref, "best") == d1
    done = delete(target_ref(client, repo_ref.with_digest(d2)))
    assert done.deleted and done.tags == ["2.0"] and done.stages == []
    assert tags_of(client, repo_ref) == ["1.0", "best"]


def test_promotion_record_deletion_needs_force(client, repo_ref, push):
    push("1")
    result = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r", settle=FAST)
    with pytest.raises(UsageError, match="ocimodel's own"):
        delete(target_ref(client, repo_ref.with_digest(result.record)))


# ------------------------------------------------------------------------------ gated and signed


@pytest.fixture
def keypair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", PASSWORD.decode())
    return signing_keys.generate_keypair(tmp_path / "signer", PASSWORD)


def test_gated_promotion_refused_moves_nothing(client, repo_ref, push):
    push("1")
    d2 = push("2")
    first = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", settle=FAST)
    before_tags = tags_of(client, repo_ref)
    asked: list[TargetRef] = []

    def refuse(ref: TargetRef) -> None:
        asked.append(ref)
        raise VerificationError(f"no signature found for {ref.digest}")

    with pytest.raises(VerificationError, match="no signature found"):
        promote(target_ref(client, repo_ref.with_tag("2")), "prod", reason="r2", verify_model=refuse, settle=FAST)
    assert [r.digest for r in asked] == [d2]
    assert tags_of(client, repo_ref) == before_tags  # no new referrers index, stage or history tag
    assert at(client, repo_ref, "prod") == first.digest
    assert at(client, repo_ref, history_tag("prod")) == first.record
    assert list_referrers(RegistryTarget(client, repo_ref), d2) == []


def test_gated_promotion_with_real_signatures(client, repo_ref, push, keypair):
    key, pub = keypair
    d1, d2 = push("1"), push("2")
    provenance.sign(target_ref(client, repo_ref.with_tag("1")), key=key, interactive=False)
    policy = VerificationPolicy(keys=(pub,))

    def gate(ref: TargetRef) -> object:
        return provenance.require_signature(ref, policy)

    assert promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="signed", verify_model=gate, settle=FAST).changed
    head = at(client, repo_ref, history_tag("prod"))
    with pytest.raises(VerificationError, match=f"no signature found for {d2}"):
        promote(target_ref(client, repo_ref.with_tag("2")), "prod", reason="unsigned", verify_model=gate, settle=FAST)
    assert (at(client, repo_ref, "prod"), at(client, repo_ref, history_tag("prod"))) == (d1, head)


def test_signed_records_show_as_signed(client, repo_ref, push, keypair, tmp_path):
    key, pub = keypair
    push("1")
    push("2")

    def sign_record(ref: TargetRef) -> object:
        return provenance.sign(ref, key=key, interactive=False)

    signed = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", sign_record=sign_record, settle=FAST)
    assert signed.signed
    promote(target_ref(client, repo_ref.with_tag("2")), "prod", reason="r2", settle=FAST)

    unchecked = history(RegistryTarget(client, repo_ref), "prod")
    assert [(e.signed, e.signature_verified) for e in unchecked.entries] == [(False, None), (True, None)]
    assert unchecked.ok and unchecked.verified is None

    policy = VerificationPolicy(keys=(pub,))
    report = history(RegistryTarget(client, repo_ref), "prod", policy=policy)
    assert [(e.signed, e.signature_verified) for e in report.entries] == [(False, False), (True, True)]
    assert report.entries[1].record == signed.record and report.entries[1].signed_by.startswith("key ")
    newest = report.entries[0].record
    assert [(f.kind, f.record) for f in report.findings] == [("unsigned", newest)]
    assert not report.ok and report.verified is False

    _, other_pub = signing_keys.generate_keypair(tmp_path / "other", PASSWORD)
    wrong = history(RegistryTarget(client, repo_ref), "prod", policy=VerificationPolicy(keys=(other_pub,)))
    assert wrong.entries[1].signature_verified is False
    assert [(f.kind, f.record) for f in wrong.findings] == [("unsigned", newest), ("signed-by-other", signed.record)]


# ------------------------------------------------------------------------------ races


def test_head_moved_between_read_and_write_is_a_clear_conflict(client, repo_ref, push):
    push("1")
    d2 = push("2")
    with new_client() as other:

        def racer(_record: TargetRef) -> None:  # runs after our record is written, before tags move
            promote(target_ref(other, repo_ref.with_tag("2")), "prod", reason="faster", actor="bob", settle=FAST)

        with pytest.raises(StageConflictError) as lost:
            promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="slow", sign_record=racer, settle=FAST)
    assert lost.value.winner_digest == d2
    assert "lost a race (nothing moved): bob promoted" in str(lost.value) and f"prod holds {d2}" in str(lost.value)
    report = history(RegistryTarget(client, repo_ref), "prod")
    assert report.ok and report.current == d2 and [e.reason for e in report.entries] == ["faster"]


def test_head_overwritten_after_our_write_is_detected(client, repo_ref, push):
    """A racer with a stale read (its check passed before our PUT) overwrites the head after it."""
    push("1")
    d2 = push("2")
    first = promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="r1", settle=FAST)
    other = new_client()
    fired: list[bool] = []

    def stale_racer(response: httpx.Response) -> None:
        request = response.request
        if fired or request.method != "PUT" or not request.url.path.endswith(history_tag("prod")):
            return
        fired.append(True)
        model = other.get_manifest(repo_ref.with_tag("2"))
        record = PromotionRecord("prod", repo_ref.name, d2, first.digest, first.record, Actor("bob", "explicit"),
                                 "2026-01-01T00:00:00Z", "stale")
        manifest = build_record_manifest(record, Descriptor(model.media_type, model.digest, len(model.raw)))
        other.push_blob_bytes(repo_ref, EMPTY_V1, EMPTY_JSON)
        other.push_blob_bytes(repo_ref, RECORD_MEDIA_TYPE, record.to_bytes())
        other.put_manifest(repo_ref.with_digest(manifest.digest), manifest.raw, manifest.media_type)
        other.put_manifest(repo_ref.with_tag(history_tag("prod")), manifest.raw, manifest.media_type)
        other.put_manifest(repo_ref.with_tag("prod"), model.raw, model.media_type)

    push("3")
    with other, new_client(event_hooks={"response": [stale_racer]}) as ours:
        with pytest.raises(StageConflictError, match=r"lost a race \(the stage tag was not moved\): bob promoted"):
            promote(target_ref(ours, repo_ref.with_tag("3")), "prod", reason="mine", settle=FAST)
    report = history(RegistryTarget(client, repo_ref), "prod")
    assert report.ok and report.current == d2 and [e.reason for e in report.entries] == ["stale", "r1"]


def race(repo_ref: Reference, stage: str, tags: list[str]) -> dict[str, object]:
    """Promote every tag to ``stage`` at once, each from its own client; tag -> result or error."""
    barrier = threading.Barrier(len(tags))
    outcomes: dict[str, object] = {}

    def run(tag: str) -> None:
        with new_client() as own:
            barrier.wait()
            try:
                outcomes[tag] = promote(target_ref(own, repo_ref.with_tag(tag)), stage, reason=f"race {tag}", actor=tag)
            except StageConflictError as exc:
                outcomes[tag] = exc

    threads = [threading.Thread(target=run, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == len(tags)
    return outcomes


@pytest.mark.parametrize("racers", [2, 4])
def test_concurrent_promotions_never_lose_an_update_silently(client, repo_ref, push, racers):
    tags = [str(i) for i in range(racers)]
    digests = {tag: push(tag) for tag in tags}
    for round_ in range(3):  # a silent loss needs an unlucky interleaving: give it several chances
        stage = f"prod{round_}"
        outcomes = race(repo_ref, stage, tags)
        report = history(RegistryTarget(client, repo_ref), stage)
        assert report.ok, report.findings
        assert report.current == report.entries[0].to_digest  # the history agrees with the tag
        chain = {e.record for e in report.entries}
        won = {tag: r for tag, r in outcomes.items() if not isinstance(r, StageConflictError)}
        lost = {tag: e for tag, e in outcomes.items() if isinstance(e, StageConflictError)}
        assert won, "someone must win"
        for result in won.values():
            assert result.record in chain  # every reported success is in the history
        assert report.head in {r.record for r in won.values()}  # the newest record was told it won
        for tag, error in lost.items():  # every loser was told who won
            assert error.winner_digest in set(digests.values()) - {digests[tag]}
            assert "run it again" in str(error) and error.winner_digest in str(error)


# ------------------------------------------------------------------------------ actors


def test_ci_actor_recorded_in_history(client, repo_ref, push, monkeypatch):
    push("1")
    monkeypatch.setenv("GITLAB_USER_LOGIN", "tanuki")
    monkeypatch.setenv("CI_PIPELINE_URL", "https://gitlab.example/p/9")
    promote(target_ref(client, repo_ref.with_tag("1")), "prod", reason="pipeline", settle=FAST)
    actor = history(RegistryTarget(client, repo_ref), "prod").entries[0].actor
    assert actor.to_dict() == {"name": "tanuki", "source": "gitlab", "details": {"pipelineUrl": "https://gitlab.example/p/9"}}
