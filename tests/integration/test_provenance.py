"""Signing models in the registry and verifying them: the Python API, end to end.

Real distribution 2.8.2 (no referrers API, so the fallback tag path runs) and the local
Sigstore stand-in (the real sigstore-python Signer and Verifier against local services).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sigstore_standin import GITHUB_ISSUER, SigstoreStandin

import ocimodel
from ocimodel.api import Client
from ocimodel.descriptor import EMPTY_DIGEST, EMPTY_V1, INDEX_V1, MANIFEST_V1, Descriptor, Index, Manifest
from ocimodel.errors import UsageError, VerificationError
from ocimodel.provenance import SignResult
from ocimodel.reference import Reference
from ocimodel.referrers import fallback_tag
from ocimodel.registry.client import RegistryClient
from ocimodel.registry.connection import Connection
from ocimodel.signing.policy import VerificationPolicy
from ocimodel.signing.statement import BUNDLE_MEDIA_TYPE, PREDICATE_TYPE
from ocimodel.storage import FetchedManifest

pytest_plugins = ["sigstore_fixtures"]

ALICE = "alice@example.com"
MALLORY = "mallory@example.com"
ISSUER = "https://issuer.example"
WORKFLOW = "acme/models/.github/workflows/release.yml@refs/tags/v1"
AMBIENT_VARS = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "GOOGLE_SERVICE_ACCOUNT_NAME")
PASSWORD = "correct horse"
SBOM_TYPE = "application/spdx+json"


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AMBIENT_VARS, "OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OCIMODEL_KEY_PASSWORD", PASSWORD)


@pytest.fixture
def oc(registry, docker_config):
    with Client(Connection(plain_http=True)) as client:
        yield client


def push_model(oc: Client, ref: str, tmp_path: Path, content: bytes | None = None) -> str:
    src = tmp_path / f"model-{os.urandom(4).hex()}.bin"
    src.write_bytes(content if content is not None else os.urandom(2000))
    return oc.push(src, ref, code=False).digest


@pytest.fixture
def model(oc, registry, repo, tmp_path) -> tuple[str, str]:
    """A pushed model: (tag reference, manifest digest)."""
    ref = f"{registry.host}/{repo}:1.0"
    return ref, push_model(oc, ref, tmp_path)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ocimodel.keygen(tmp_path_factory.mktemp("keys") / "signer", password=PASSWORD.encode())


@pytest.fixture(scope="module")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ocimodel.keygen(tmp_path_factory.mktemp("keys") / "other", password=PASSWORD.encode())


def sign_as(oc: Client, ref: str, standin: SigstoreStandin, identity: str = ALICE, issuer: str = ISSUER) -> SignResult:
    token = standin.mint_token(identity, issuer)
    return oc.sign(ref, identity_token=token, trust_config=standin.trust_config_path, interactive=False)


def keyless_policy(standin: SigstoreStandin, **rules: Any) -> VerificationPolicy:
    rules.setdefault("certificate_identity", ALICE)
    rules.setdefault("certificate_oidc_issuer", ISSUER)
    return VerificationPolicy(trusted_root=standin.trusted_root_path, **rules)


def fallback_index(client: RegistryClient, ref: str, digest: str) -> Index:
    tag_ref = Reference.parse(ref).with_tag(fallback_tag(digest))
    return Index.parse(client.get_manifest(tag_ref).raw)


def put_fallback_index(client: RegistryClient, ref: str, digest: str, entries: list[Descriptor]) -> None:
    index = Index.build(entries)
    client.put_manifest(Reference.parse(ref).with_tag(fallback_tag(digest)), index.raw, INDEX_V1)


def push_referrer(client: RegistryClient, ref: str, manifest: Manifest) -> Descriptor:
    """Push a referrer manifest by digest; its plain descriptor (what an old writer lists)."""
    client.put_manifest(Reference.parse(ref).with_digest(manifest.digest), manifest.raw, manifest.media_type)
    return manifest.descriptor()


def push_sbom(client: RegistryClient, ref: str, subject_digest: str) -> Descriptor:
    """An unrelated referrer (an SBOM), as another tool would attach it."""
    reference = Reference.parse(ref)
    subject = client.head_manifest(reference.with_digest(subject_digest))
    layer = client.push_blob_bytes(reference, SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}')
    empty = client.push_blob_bytes(reference, EMPTY_V1, b"{}")
    sbom = Manifest.build(empty, [layer], artifact_type=SBOM_TYPE, subject=subject)
    push_referrer(client, ref, sbom)
    return sbom.descriptor(artifact_type=SBOM_TYPE)


# ------------------------------------------------------------------------------- keyless


def test_keyless_sign_then_verify_by_identity_regexp_and_issuer(oc, model, sigstore_standin):
    ref, digest = model
    signed = sign_as(oc, ref, sigstore_standin)
    assert (signed.digest, signed.kind, signed.signer, signed.issuer) == (digest, "keyless", ALICE, ISSUER)
    assert signed.fallback_tag == fallback_tag(digest)

    for rules in (
        {},
        {"certificate_identity": None, "certificate_identity_regexp": r"alice@example\.(com|org)"},
        {"certificate_oidc_issuer": None, "certificate_oidc_issuer_regexp": r"https://issuer\..*"},
    ):
        result = oc.verify(ref, keyless_policy(sigstore_standin, **rules))
        assert result.digest == digest
        [info] = result.signatures
        assert (info.kind, info.signer, info.issuer, info.digest) == ("keyless", ALICE, ISSUER, digest)
        assert info.signed_at is not None

    with pytest.raises(VerificationError, match="wrong identity"):
        oc.verify(ref, keyless_policy(sigstore_standin, certificate_identity=MALLORY))
    with pytest.raises(VerificationError, match="wrong issuer"):
        oc.verify(ref, keyless_policy(sigstore_standin, certificate_oidc_issuer="https://other.example"))
    with pytest.raises(VerificationError, match="wrong identity"):  # a regexp must match whole
        oc.verify(ref, keyless_policy(sigstore_standin, certificate_identity=None, certificate_identity_regexp="alice"))


def test_keyless_verification_without_issuer_is_a_usage_error(oc, model, sigstore_standin):
    ref, _ = model
    with pytest.raises(UsageError, match="issuer"):
        oc.verify(ref, VerificationPolicy(certificate_identity=ALICE, trusted_root=sigstore_standin.trusted_root_path))


def test_github_actions_ambient_signing(oc, model, sigstore_standin, monkeypatch):
    ref, digest = model
    for name, value in sigstore_standin.github_env("acme/models", WORKFLOW).items():
        monkeypatch.setenv(name, value)
    signed = oc.sign(ref, trust_config=sigstore_standin.trust_config_path, interactive=False)
    assert (signed.signer, signed.issuer) == (f"https://github.com/{WORKFLOW}", GITHUB_ISSUER)
    policy = keyless_policy(
        sigstore_standin,
        certificate_identity=None,
        certificate_identity_regexp=r"https://github\.com/acme/models/.*",
        certificate_oidc_issuer=GITHUB_ISSUER,
        certificate_github_workflow_repository="acme/models",
    )
    assert oc.verify(ref, policy).digest == digest
    other = VerificationPolicy(**{**policy.__dict__, "certificate_github_workflow_repository": "acme/other"})
    with pytest.raises(VerificationError, match="wrong GitHub workflow repository"):
        oc.verify(ref, other)


# ------------------------------------------------------------------------------ key mode


def test_key_sign_verify_and_wrong_key_refused(oc, model, keypair, other_keypair, sigstore_standin):
    ref, digest = model
    private, public = keypair
    signed = oc.sign(ref, key=private)
    assert (signed.kind, signed.digest) == ("key", digest)
    [info] = oc.verify(ref, VerificationPolicy(keys=(public,))).signatures
    assert info.kind == "key" and info.signer == signed.signer and info.digest == digest
    with pytest.raises(VerificationError, match="wrong key"):
        oc.verify(ref, VerificationPolicy(keys=(other_keypair[1],)))
    with pytest.raises(VerificationError, match="policy names no key"):
        oc.verify(ref, keyless_policy(sigstore_standin))


def test_referrer_manifest_and_fallback_index_contents(oc, model, keypair):
    ref, digest = model
    client = oc.registry
    signed = oc.sign(ref, key=keypair[0])
    model_desc = client.head_manifest(Reference.parse(ref))

    index = fallback_index(client, ref, digest)
    [entry] = index.manifests
    assert (entry.digest, entry.media_type, entry.artifact_type) == (signed.referrer, MANIFEST_V1, BUNDLE_MEDIA_TYPE)
    assert entry.annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert entry.annotations["dev.sigstore.bundle.predicateType"] == PREDICATE_TYPE

    raw = client.get_manifest(Reference.parse(ref).with_digest(signed.referrer)).raw
    doc = json.loads(raw)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == MANIFEST_V1
    assert doc["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    # cosign also writes artifactType inside the config descriptor; its readers look there.
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2,
                             "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}
    assert doc["subject"] == {"mediaType": MANIFEST_V1, "digest": digest, "size": model_desc.size}
    annotations = doc["annotations"]
    assert set(annotations) == {
        "dev.sigstore.bundle.content",
        "dev.sigstore.bundle.predicateType",
        "org.opencontainers.image.created",
    }
    assert annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert annotations["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert annotations["org.opencontainers.image.created"].endswith("Z")
    assert entry.annotations == annotations
    [layer] = doc["layers"]
    assert layer["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"

    reference = Reference.parse(ref)
    assert client.fetch_blob_bytes(reference, Descriptor(EMPTY_V1, EMPTY_DIGEST, 2)) == b"{}"
    bundle = json.loads(client.fetch_blob_bytes(reference, Descriptor.from_dict(layer)))
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
    assert statement["predicateType"] == PREDICATE_TYPE
    # The low-level verb over the stored bundle, as exported.
    info = ocimodel.verify_bundle(json.dumps(bundle), digest, VerificationPolicy(keys=(keypair[1],)))
    assert info.digest == digest


def test_key_and_keyless_signatures_coexist(oc, model, keypair, sigstore_standin):
    ref, digest = model
    by_key = oc.sign(ref, key=keypair[0])
    keyless = sign_as(oc, ref, sigstore_standin)
    listed = {d.digest for d in fallback_index(oc.registry, ref, digest).manifests}
    assert listed == {by_key.referrer, keyless.referrer}
    assert [s.kind for s in oc.verify(ref, VerificationPolicy(keys=(keypair[1],))).signatures] == ["key"]
    assert [s.kind for s in oc.verify(ref, keyless_policy(sigstore_standin)).signatures] == ["keyless"]
    both = keyless_policy(sigstore_standin, keys=(keypair[1],))
    assert sorted(s.kind for s in oc.verify(ref, both).signatures) == ["key", "keyless"]


class RacingClient(RegistryClient):
    """A real client whose first read of a fallback tag waits until every racer has read it.

    That forces the lost-update interleaving: all signers read the same (empty) index
    before any of them writes.
    """

    def __init__(self, barrier: threading.Barrier, connection: Connection) -> None:
        super().__init__(connection)
        self._barrier = barrier
        self._waited = False

    def get_manifest(self, ref: Reference, accept: Any = None) -> FetchedManifest:
        try:
            return super().get_manifest(ref, accept) if accept else super().get_manifest(ref)
        finally:
            if ref.tag and ref.tag.startswith("sha256-") and not ref.digest and not self._waited:
                self._waited = True
                self._barrier.wait(timeout=30)


def test_racing_signers_both_listed(registry, repo, docker_config, tmp_path, keypair, other_keypair):
    ref = f"{registry.host}/{repo}:race"
    with Client(Connection(plain_http=True)) as oc:
        digest = push_model(oc, ref, tmp_path)
    barrier = threading.Barrier(2)
    results: dict[str, SignResult] = {}
    errors: list[BaseException] = []

    def signer(name: str, key: Path) -> None:
        try:
            with Client(registry=RacingClient(barrier, Connection(plain_http=True))) as client:
                results[name] = client.sign(ref, key=key)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=signer, args=("a", keypair[0])),
        threading.Thread(target=signer, args=("b", other_keypair[0])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with Client(Connection(plain_http=True)) as oc:
        listed = {d.digest for d in fallback_index(oc.registry, ref, digest).manifests}
        assert listed == {results["a"].referrer, results["b"].referrer}
        both = VerificationPolicy(keys=(keypair[1], other_keypair[1]))
        assert len(oc.verify(ref, both).signatures) == 2


# ------------------------------------------------------------------- discovery robustness


@pytest.mark.parametrize("artifact_type", [None, "application/vnd.example.wrong"])
def test_fallback_entry_without_annotations_or_with_wrong_type_still_found(oc, model, keypair, artifact_type):
    ref, digest = model
    signed = oc.sign(ref, key=keypair[0])
    [entry] = fallback_index(oc.registry, ref, digest).manifests
    stripped = Descriptor(media_type=entry.media_type, digest=entry.digest, size=entry.size, artifact_type=artifact_type)
    put_fallback_index(oc.registry, ref, digest, [stripped])
    [info] = oc.verify(ref, VerificationPolicy(keys=(keypair[1],))).signatures
    assert info.digest == digest and signed.referrer == entry.digest


def test_unrelated_referrer_ignored(oc, model, keypair):
    ref, digest = model
    sbom = push_sbom(oc.registry, ref, digest)
    # Listed as if it were a signature: the manifest itself says it is not one.
    put_fallback_index(oc.registry, ref, digest, [Descriptor(sbom.media_type, sbom.digest, sbom.size, artifact_type=BUNDLE_MEDIA_TYPE)])
    with pytest.raises(VerificationError, match=f"no signature found for {digest}"):
        oc.verify(ref, VerificationPolicy(keys=(keypair[1],)))
    oc.sign(ref, key=keypair[0])
    listed = fallback_index(oc.registry, ref, digest).manifests
    assert len(listed) == 2 and sbom.digest in {d.digest for d in listed}  # merge kept it
    assert len(oc.verify(ref, VerificationPolicy(keys=(keypair[1],))).signatures) == 1
    assert len(oc.inspect(ref).signatures) == 1


def test_referrers_api_used_when_available(registry, repo, docker_config, tmp_path, keypair):
    """A registry with the referrers API: no fallback tag written, discovery through the API."""

    class ReferrersApiClient(RegistryClient):
        def __init__(self, connection: Connection) -> None:
            super().__init__(connection)
            self.indexed: dict[str, list[Descriptor]] = {}

        def put_manifest_result(self, ref: Reference, raw: bytes, media_type: str) -> Any:
            result = super().put_manifest_result(ref, raw, media_type)
            if media_type == MANIFEST_V1 and b'"subject"' in raw:
                manifest = Manifest.parse(raw)
                self.indexed.setdefault(manifest.subject.digest, []).append(manifest.descriptor())
            return result  # no OCI-Subject header: support is detected by probing referrers()

        def referrers(self, ref: Reference, subject_digest: str) -> list[Descriptor] | None:
            return list(self.indexed.get(subject_digest, []))

    ref = f"{registry.host}/{repo}:api"
    api_client = ReferrersApiClient(Connection(plain_http=True))
    with Client(registry=api_client) as oc:
        digest = push_model(oc, ref, tmp_path)
        signed = oc.sign(ref, key=keypair[0])
        assert signed.fallback_tag is None
        assert oc.registry.head_manifest(Reference.parse(ref).with_tag(fallback_tag(digest))) is None
        assert oc.verify(ref, VerificationPolicy(keys=(keypair[1],))).digest == digest
    with Client(Connection(plain_http=True)) as plain, pytest.raises(VerificationError, match="no signature found"):
        plain.verify(ref, VerificationPolicy(keys=(keypair[1],)))  # nothing in the fallback tag


# ------------------------------------------------------------------------------ refusals


def test_unsigned_model_refused_and_pull_writes_nothing(oc, model, tmp_path, sigstore_standin):
    ref, digest = model
    with pytest.raises(VerificationError, match=f"no signature found for {digest}"):
        oc.verify(ref, keyless_policy(sigstore_standin))
    dest = tmp_path / "out"
    with pytest.raises(VerificationError, match="no signature found"):
        oc.pull(ref, dest, policy=keyless_policy(sigstore_standin))
    assert not dest.exists()


def test_wrongly_signed_model_refused_by_verify_and_pull(oc, model, tmp_path, sigstore_standin):
    ref, _ = model
    sign_as(oc, ref, sigstore_standin, identity=MALLORY)
    with pytest.raises(VerificationError, match="wrong identity"):
        oc.verify(ref, keyless_policy(sigstore_standin))
    dest = tmp_path / "existing"
    dest.mkdir()
    with pytest.raises(VerificationError, match="wrong identity"):
        oc.pull(ref, dest, policy=keyless_policy(sigstore_standin))
    assert list(dest.iterdir()) == []


def test_signature_of_another_digest_refused(oc, registry, repo, tmp_path, keypair):
    signed_ref, unsigned_ref = f"{registry.host}/{repo}:signed", f"{registry.host}/{repo}:other"
    push_model(oc, signed_ref, tmp_path)
    other = push_model(oc, unsigned_ref, tmp_path)
    signed = oc.sign(signed_ref, key=keypair[0])
    client = oc.registry
    original = Manifest.parse(client.get_manifest(Reference.parse(signed_ref).with_digest(signed.referrer)).raw)
    # (a) the same referrer listed under the other model; (b) a copy re-pointed at it.
    other_desc = client.head_manifest(Reference.parse(unsigned_ref))
    copy = Manifest.build(original.config, list(original.layers), artifact_type=original.artifact_type,
                          subject=other_desc, annotations=original.annotations)
    entries = [original.descriptor(), push_referrer(client, unsigned_ref, copy)]
    policy = VerificationPolicy(keys=(keypair[1],))
    for entry in entries:
        put_fallback_index(client, unsigned_ref, other, [entry])
        with pytest.raises(VerificationError, match="digest mismatch"):
            oc.verify(unsigned_ref, policy)
    dest = tmp_path / "out"
    with pytest.raises(VerificationError, match="digest mismatch"):
        oc.pull(unsigned_ref, dest, policy=policy)
    assert not dest.exists()


# ------------------------------------------------------------------------- pull, inspect


class RecordingClient(RegistryClient):
    """A real client that records the references of every manifest request."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self.requested: list[Reference] = []

    def get_manifest(self, ref: Reference, *args: Any, **kwargs: Any) -> FetchedManifest:
        self.requested.append(ref)
        return super().get_manifest(ref, *args, **kwargs)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        self.requested.append(ref)
        return super().head_manifest(ref)


def test_pull_with_policy_pulls_exactly_the_verified_digest(oc, model, tmp_path, sigstore_standin):
    ref, digest = model
    sign_as(oc, ref, sigstore_standin)
    recording = RecordingClient(Connection(plain_http=True))
    with Client(registry=recording) as client:
        result = client.pull(ref, tmp_path / "out", policy=keyless_policy(sigstore_standin))
    assert result.digest == digest
    by_tag = [r for r in recording.requested if r.tag == "1.0" and not r.digest]
    assert len(by_tag) == 1  # resolved once; verification and download used the digest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".ocimodel-state.json", result.files[0].path]


def test_inspect_lists_signatures_unverified(oc, model, keypair, sigstore_standin):
    ref, _ = model
    assert oc.inspect(ref).signatures == []
    keyless = sign_as(oc, ref, sigstore_standin)
    by_key = oc.sign(ref, key=keypair[0])
    found = {s["referrer"]: s for s in oc.inspect(ref).signatures}
    assert set(found) == {keyless.referrer, by_key.referrer}
    assert found[keyless.referrer]["signer"] == ALICE and found[keyless.referrer]["issuer"] == ISSUER
    assert found[by_key.referrer]["kind"] == "key" and found[by_key.referrer]["signer"] == by_key.signer
    assert all(s["verified"] is False for s in found.values())


