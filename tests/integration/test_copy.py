"""``ocimodel.copy``: a model and everything attached to it, registry to registry, digests kept.

Real registries: the plain ``registry`` and ``tls_basic_registry`` (TLS + Basic auth, so the
two sides have different options and credentials), and one registry with two repositories for
mounts. Requests are counted, and faults injected, with the TCP fault proxy.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from faultproxy import Fault, FaultProxy

import ocimodel
from ocimodel.api import Client
from ocimodel.descriptor import EMPTY_V1
from ocimodel.errors import (
    DigestMismatchError,
    IntegrityError,
    NetworkError,
    UnsafeContentError,
    UsageError,
    VerificationError,
)
from ocimodel.referrers import attach, list_referrers, merge_into_fallback, referrer_manifest
from ocimodel.registry.connection import Connection
from ocimodel.session import RecordSigning
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.transfer.copy import Copier

PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def key_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", PASSWORD)


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ocimodel.keygen(tmp_path_factory.mktemp("keys") / "copy", password=PASSWORD.encode())


PLAIN = Connection(plain_http=True)


def tls(server) -> Connection:
    return Connection(ca_file=server.ca_file, username=server.username, password=server.password,
                      credentials_for=server.host)


def write_model(root: Path, sizes: tuple[int, ...] = (3000, 5000)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        (root / f"part{i}.bin").write_bytes(os.urandom(size))
    return root


def make_signed_model(registry, repo: str, workdir: Path, keypair) -> tuple[str, str]:
    """v1 and v2 pushed; v2 signed; prod: v1 then v2, each record signed (a signature on a
    promotion record: referrers two levels deep). Returns (ref of v2, digest of v2)."""
    private, _ = keypair
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OCIMODEL_KEY_PASSWORD", PASSWORD)
        env.setenv("DOCKER_CONFIG", str(workdir / "docker-config"))
        with Client(PLAIN) as oc:
            base = f"{registry.host}/{repo}"
            oc.push(write_model(workdir / "v1"), f"{base}:1.0", code=False)
            digest = oc.push(write_model(workdir / "v2"), f"{base}:2.0", code=False).digest
            oc.sign(f"{base}:2.0", key=private)
            signing = RecordSigning(key=private)
            oc.promote(f"{base}:1.0", "prod", reason="first", sign_record=signing)
            oc.promote(f"{base}:2.0", "prod", reason="second", sign_record=signing)
    return f"{base}:2.0", digest


@pytest.fixture(scope="session")
def signed_model(registry, tmp_path_factory, keypair) -> tuple[str, str]:
    """One signed and promoted model for every copy test (read only: copies go elsewhere)."""
    return make_signed_model(registry, f"copy/{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("signed"), keypair)


def key_policy(keypair) -> VerificationPolicy:
    return VerificationPolicy(keys=(str(keypair[1]),))


def comparable(report) -> dict:
    found = report.to_dict()
    found.pop("repository")
    return found


def test_registry_to_tls_registry_keeps_digests_signatures_and_history(
    registry, tls_basic_registry, signed_model, keypair, repo
):
    ref, digest = signed_model
    # The same repository path on another registry: records name the repository they were made in.
    dst = ref.replace(registry.host, tls_basic_registry.host, 1)
    result = ocimodel.copy(ref, dst, connection=PLAIN, to_connection=tls(tls_basic_registry), tags=True)
    assert result.digest == digest
    assert set(result.tags) == {"2.0", "prod", "ocimodel.history.prod"}
    # The model's signature, both records of prod and the signatures on them.
    assert len(result.referrers) >= 4
    assert result.copied_blobs > 0 and result.mounted_blobs == 0

    with Client(PLAIN) as src, Client(tls(tls_basic_registry)) as dst_client:
        assert dst_client.verify(dst, key_policy(keypair)).digest == digest
        base_src, base_dst = ref.rsplit(":", 1)[0], dst.rsplit(":", 1)[0]
        for policy in (None, key_policy(keypair)):
            here, there = src.history(base_src, "prod", policy=policy), dst_client.history(base_dst, "prod", policy=policy)
            assert comparable(there) == comparable(here)
            assert there.ok and len(there.entries) == 2
        assert there.verified
        assert [s.to_dict() for s in dst_client.stages(base_dst)] == [s.to_dict() for s in src.stages(base_src)]
        assert dst_client.tags(base_dst) == ["2.0", "prod"]  # not 1.0: it points at another model


def test_no_referrers_copies_the_model_alone(registry, tls_basic_registry, signed_model, keypair, repo):
    ref, digest = signed_model
    dst = f"{tls_basic_registry.host}/{repo}-alone:2.0"
    result = ocimodel.copy(ref, dst, connection=PLAIN, to_connection=tls(tls_basic_registry), referrers=False, tags=True)
    assert result.referrers == []
    assert result.tags == ["2.0", "prod"]  # no history tag: its records were not copied
    with Client(tls(tls_basic_registry)) as dst_client:
        target = dst_client.locate(dst).target
        assert list_referrers(target, digest) == []
        with pytest.raises(VerificationError):
            dst_client.verify(dst, key_policy(keypair))


def test_a_digest_reference_copies_exactly_that_and_tags_nothing(registry, signed_model, repo):
    ref, digest = signed_model
    src = ref.rsplit(":", 1)[0] + "@" + digest
    dst_repo = f"{registry.host}/{repo}-bydigest"
    result = ocimodel.copy(src, dst_repo, connection=PLAIN)
    assert result.digest == digest and result.tags == []
    with Client(PLAIN) as oc:
        assert oc.tags(dst_repo) == []
        assert oc.locate(f"{dst_repo}@{digest}").target.resolve(digest) is not None
    with pytest.raises(UsageError, match="not the"):
        ocimodel.copy(src, f"{dst_repo}@sha256:{'0' * 64}", connection=PLAIN)


def test_same_registry_mounts_every_blob(registry, signed_model, repo):
    ref, digest = signed_model
    result = ocimodel.copy(ref, f"{registry.host}/{repo}-mounted:2.0", connection=PLAIN)
    assert result.copied_blobs == 0
    assert result.mounted_blobs >= 3  # config and two files, and the referrers' blobs
    assert {i.action for i in result.items if i.kind == "blob"} <= {"mounted", "skipped"}


def through(proxy: FaultProxy, ref: str, host: str) -> str:
    return ref.replace(host, proxy.host, 1)


def test_a_copy_of_an_unchanged_model_moves_only_a_few_manifests(registry, tls_basic_registry, signed_model, repo):
    ref, digest = signed_model
    with FaultProxy(registry.host) as src_proxy, FaultProxy(registry.host) as dst_proxy:
        src = through(src_proxy, ref, registry.host)
        dst = f"{dst_proxy.host}/{repo}-again:2.0"
        first = ocimodel.copy(src, dst, connection=PLAIN, to_connection=PLAIN, tags=True)
        assert first.copied_blobs >= 3
        before_src, before_dst = len(src_proxy.exchanges), len(dst_proxy.exchanges)
        again = ocimodel.copy(src, dst, connection=PLAIN, to_connection=PLAIN, tags=True)
        assert again.copied_blobs == 0 and again.copied_manifests == 0
        src_requests = src_proxy.exchanges[before_src:]
        dst_requests = dst_proxy.exchanges[before_dst:]
    assert not [e for e in src_requests if "/blobs/" in e.path and e.method == "GET" and e.response_bytes > 4096]
    assert not [e for e in dst_requests if e.method in ("POST", "PATCH", "PUT")], [(e.method, e.path) for e in dst_requests]
    # Manifests, referrers lists and tag checks only: bounded by the graph, not by the bytes.
    assert len(src_requests) + len(dst_requests) < 80


def test_a_killed_copy_resumes_with_what_is_missing(registry, repo, docker_config, tmp_path):
    with Client(PLAIN) as oc:
        ref = f"{registry.host}/{repo}:1.0"
        pushed = oc.push(write_model(tmp_path / "m", (3 << 20, 5 << 20)), ref, code=False)
    big = max(pushed.files, key=lambda f: f.size)
    small = min(pushed.files, key=lambda f: f.size)
    with FaultProxy(registry.host) as src_proxy, FaultProxy(registry.host) as dst_proxy:
        src = through(src_proxy, ref, registry.host)
        dst = f"{dst_proxy.host}/{repo}-resumed:1.0"
        # The source breaks off the big blob every time (each attempt starts it over).
        src_proxy.add(Fault(method="GET", path=big.digest, cut_response_after=1 << 20, times=10))
        with pytest.raises(NetworkError):
            ocimodel.copy(src, dst, connection=PLAIN, to_connection=PLAIN, concurrency=1)
        with Client(PLAIN) as oc:
            target = oc.locate(dst.replace(dst_proxy.host, registry.host)).target
            assert target.resolve(pushed.digest) is None and target.resolve("1.0") is None  # nothing named yet
            assert target.blob_exists(small.digest) and not target.blob_exists(big.digest)
        src_proxy.clear()
        before = len(src_proxy.exchanges)
        result = ocimodel.copy(src, dst, connection=PLAIN, to_connection=PLAIN)
        fetched = [e.path for e in src_proxy.exchanges[before:] if e.method == "GET" and "/blobs/" in e.path]
    assert result.digest == pushed.digest and result.tags == ["1.0"]
    assert {i.digest: i.action for i in result.items if i.kind == "blob"}[small.digest] == "skipped"
    assert {i.digest: i.action for i in result.items if i.kind == "blob"}[big.digest] == "copied"
    assert not [p for p in fetched if small.digest in p]


@pytest.mark.parametrize("lie", ["content", "shorter"])
def test_a_blob_that_does_not_match_is_never_committed(registry, repo, docker_config, tmp_path, lie):
    with Client(PLAIN) as oc:
        ref = f"{registry.host}/{repo}:1.0"
        pushed = oc.push(write_model(tmp_path / "m", (2 << 20,)), ref, code=False)
    [layer] = pushed.files
    stored = registry.blob_path(layer.digest)
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if lie == "content" else data[:-10])
    try:
        dst = f"{registry.host}/{repo}-hostile:1.0"
        with FaultProxy(registry.host) as dst_proxy:  # another host: no mount, the bytes must stream
            with pytest.raises(IntegrityError) as caught:
                ocimodel.copy(ref, dst.replace(registry.host, dst_proxy.host), connection=PLAIN, to_connection=PLAIN)
        if lie == "content":
            assert isinstance(caught.value, DigestMismatchError)
        with Client(PLAIN) as oc:
            target = oc.locate(dst).target
            assert not target.blob_exists(layer.digest)
            assert target.resolve(pushed.digest) is None
    finally:
        stored.write_bytes(data)


def test_a_listed_referrer_whose_subject_is_another_is_not_copied(registry, repo, tmp_path, keypair):
    ref, digest = make_signed_model(registry, repo, tmp_path, keypair)  # its own: the source is changed
    base = ref.rsplit(":", 1)[0]
    with Client(PLAIN) as oc:
        target = oc.locate(ref).target
        v1 = target.resolve("1.0")
        assert v1 is not None
        stranger = list_referrers(target, v1.digest)[0]  # prod's first record, whose subject is v1
        merge_into_fallback(target, digest, stranger)  # now also listed under v2
    result = ocimodel.copy(ref, f"{registry.host}/{repo}-strict:2.0", connection=PLAIN)
    assert stranger.digest not in result.referrers
    with Client(PLAIN) as oc:
        assert oc.locate(f"{registry.host}/{repo}-strict:2.0").target.resolve(stranger.digest) is None


def test_a_source_listing_without_end_is_refused(registry, signed_model, repo):
    ref, _ = signed_model
    with Client(PLAIN) as oc:
        source = oc.locate(ref)
        target = oc.locate(f"{registry.host}/{repo}-bounded:2.0")
        copier = Copier(source.target, target.target, max_manifests=3)
        root = copier.manifest("2.0")
        with pytest.raises(UnsafeContentError, match="more than 3 manifests"):
            copier.attached(root.digest)


def test_a_dangling_referrer_entry_is_left_behind(registry, repo, docker_config, tmp_path):
    with Client(PLAIN) as oc:
        ref = f"{registry.host}/{repo}:1.0"
        digest = oc.push(write_model(tmp_path / "m"), ref, code=False).digest
        target = oc.locate(ref).target
        subject = target.resolve(digest)
        assert subject is not None
        layer = target.push_blob_bytes("application/spdx+json", b"{}")
        target.push_blob_bytes(EMPTY_V1, b"{}")
        ghost = referrer_manifest(subject, layer, "application/spdx+json", {})
        attach(target, ghost)
        target.delete_manifest(ghost.digest)  # still listed in the fallback index, gone itself
    result = ocimodel.copy(ref, f"{registry.host}/{repo}-ghost:1.0", connection=PLAIN)
    assert result.digest == digest and result.referrers == []
    with Client(PLAIN) as oc:
        assert list_referrers(oc.locate(f"{registry.host}/{repo}-ghost:1.0").target, digest) == []
