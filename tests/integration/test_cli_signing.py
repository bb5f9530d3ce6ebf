"""keygen, sign, verify, verify-blob, pull with a policy and inspect, as a user runs them.

Real processes against the real registry and the local Sigstore stand-in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from process_helpers import run
from sigstore_standin import GITHUB_ISSUER, SigstoreStandin
from test_provenance import ALICE, AMBIENT_VARS, ISSUER, WORKFLOW

pytest_plugins = ["sigstore_fixtures"]

WILLIAM = "william@yossarian.net"
GITHUB_OAUTH = "https://github.com/login/oauth"


@pytest.fixture
def cli_env(docker_config, monkeypatch) -> dict[str, str]:
    for name in (*AMBIENT_VARS, "OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN", "OCIMODEL_KEY"):
        monkeypatch.delenv(name, raising=False)
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_KEY_PASSWORD": "pw"}


@pytest.fixture
def model(registry, repo, tmp_path, cli_env) -> tuple[str, str]:
    """(tag reference, digest) of a pushed one-file model."""
    (tmp_path / "w.bin").write_bytes(os.urandom(3000))
    ref = f"{registry.host}/{repo}:1.0"
    pushed = run("push", str(tmp_path / "w.bin"), ref, "--no-git", env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    return ref, pushed.stdout.strip()


def keyless_flags(standin: SigstoreStandin, identity: str = ALICE, issuer: str = ISSUER) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
            "--trusted-root", str(standin.trusted_root_path)]


def sign_keyless(ref: str, standin: SigstoreStandin, env: dict[str, str], identity: str = ALICE) -> dict:
    token = standin.mint_token(identity, ISSUER)
    out = run("sign", ref, "--identity-token", token, "--trust-config", str(standin.trust_config_path), "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_one_line_failure(out, code: int, fragment: str) -> None:
    """One ``error:`` line (after pull's ``ocimodel:`` step lines, if any), no traceback."""
    assert out.returncode == code, (out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr
    assert all(line.startswith("ocimodel: ") for line in lines[:-1]), out.stderr
    assert fragment in errors[0] and "Traceback" not in out.stderr


def test_keygen_sign_verify_with_key(model, tmp_path, cli_env):
    ref, digest = model
    made = run("keygen", "--output-prefix", str(tmp_path / "k"), env=cli_env)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "k.key").exists() and made.stdout.strip() == str(tmp_path / "k.pub")
    other = run("keygen", "--output-prefix", str(tmp_path / "other"), env=cli_env)
    assert other.returncode == 0 and (tmp_path / "other.pub").exists()

    signed = run("sign", ref, "--key", str(tmp_path / "k.key"), env=cli_env)
    assert signed.returncode == 0, signed.stderr
    assert digest in signed.stderr and "key " in signed.stderr
    referrer = signed.stdout.strip()
    assert referrer.startswith("sha256:") and referrer != digest

    verified = run("verify", ref, "--key", str(tmp_path / "k.pub"), "--json", env=cli_env)
    assert verified.returncode == 0, verified.stderr
    data = json.loads(verified.stdout)
    assert data["digest"] == digest and [s["kind"] for s in data["signatures"]] == ["key"]

    wrong = run("verify", ref, "--key", str(tmp_path / "other.pub"), env=cli_env)
    assert_one_line_failure(wrong, 5, "wrong key")
    # The same policy from the environment.
    by_env = run("verify", ref, env={**cli_env, "OCIMODEL_KEY": str(tmp_path / "k.pub")})
    assert by_env.returncode == 0 and f"Verified {digest}" in by_env.stdout


def test_keyless_sign_verify_and_refusals(model, sigstore_standin, cli_env):
    ref, digest = model
    signed = sign_keyless(ref, sigstore_standin, cli_env)
    assert (signed["digest"], signed["signer"], signed["issuer"]) == (digest, ALICE, ISSUER)
    assert signed["fallbackTag"] == "sha256-" + digest.removeprefix("sha256:")

    ok = run("verify", ref, *keyless_flags(sigstore_standin), env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert f"Verified {digest}: signed by {ALICE} (issuer {ISSUER})" in ok.stdout
    regexp = run("verify", ref, "--certificate-identity-regexp", r".*@example\.com",
                 "--certificate-oidc-issuer-regexp", r"https://issuer\..*",
                 "--trusted-root", str(sigstore_standin.trusted_root_path), env=cli_env)
    assert regexp.returncode == 0, regexp.stderr

    assert_one_line_failure(run("verify", ref, *keyless_flags(sigstore_standin, "bob@example.com"), env=cli_env),
                            5, "wrong identity")
    assert_one_line_failure(run("verify", ref, *keyless_flags(sigstore_standin, issuer="https://evil.example"), env=cli_env),
                            5, "wrong issuer")
    no_issuer = run("verify", ref, "--certificate-identity", ALICE, env=cli_env)
    assert_one_line_failure(no_issuer, 2, "issuer")
    assert_one_line_failure(run("verify", ref, env=cli_env), 2, "no verification policy")


def test_github_actions_sign_then_verify_workflow_repository(model, sigstore_standin, cli_env):
    ref, digest = model
    env = {**cli_env, **sigstore_standin.github_env("acme/models", WORKFLOW)}
    signed = run("sign", ref, "--trust-config", str(sigstore_standin.trust_config_path), env=env)
    assert signed.returncode == 0, signed.stderr
    flags = ["--certificate-identity", f"https://github.com/{WORKFLOW}", "--certificate-oidc-issuer", GITHUB_ISSUER,
             "--trusted-root", str(sigstore_standin.trusted_root_path)]
    ok = run("verify", ref, *flags, "--certificate-github-workflow-repository", "acme/models", env=cli_env)
    assert ok.returncode == 0, ok.stderr
    wrong = run("verify", ref, *flags, "--certificate-github-workflow-repository", "acme/other", env=cli_env)
    assert_one_line_failure(wrong, 5, "wrong GitHub workflow repository")


def test_unsigned_model_verify_and_pull_refused(model, tmp_path, sigstore_standin, cli_env):
    ref, digest = model
    assert_one_line_failure(run("verify", ref, *keyless_flags(sigstore_standin), env=cli_env),
                            5, f"no signature found for {digest}")
    dest = tmp_path / "out"
    pulled = run("pull", ref, str(dest), *keyless_flags(sigstore_standin), env=cli_env)
    assert_one_line_failure(pulled, 5, "no signature found")
    assert not dest.exists()
    policy_env = {
        **cli_env,
        "OCIMODEL_CERTIFICATE_IDENTITY": ALICE,
        "OCIMODEL_CERTIFICATE_OIDC_ISSUER": ISSUER,
        "OCIMODEL_TRUSTED_ROOT": str(sigstore_standin.trusted_root_path),
    }
    assert_one_line_failure(run("pull", ref, str(dest), env=policy_env), 5, "no signature found")
    assert not dest.exists()


def test_wrongly_signed_model_pull_refused(model, tmp_path, sigstore_standin, cli_env):
    ref, _ = model
    sign_keyless(ref, sigstore_standin, cli_env, identity="mallory@example.com")
    dest = tmp_path / "out"
    dest.mkdir()
    pulled = run("pull", ref, str(dest), *keyless_flags(sigstore_standin), env=cli_env)
    assert_one_line_failure(pulled, 5, "wrong identity")
    assert list(dest.iterdir()) == []


def test_pull_with_policy_file_on_signed_model(model, tmp_path, sigstore_standin, cli_env):
    ref, digest = model
    sign_keyless(ref, sigstore_standin, cli_env)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "certificate-identity": ALICE,
        "certificate-oidc-issuer": ISSUER,
        "trusted-root": str(sigstore_standin.trusted_root_path),
    }))
    dest = tmp_path / "out"
    pulled = run("pull", ref, str(dest), "--json", env={**cli_env, "OCIMODEL_POLICY": str(policy)})
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == digest
    assert sorted(p.name for p in dest.iterdir()) == [".ocimodel-state.json", "w.bin"]
    state = json.loads((dest / ".ocimodel-state.json").read_text())
    assert state["digest"] == digest and state["verification"]["signers"][0]["signer"] == ALICE


def test_inspect_shows_unverified_signatures(model, sigstore_standin, cli_env):
    ref, _ = model
    signed = sign_keyless(ref, sigstore_standin, cli_env)
    human = run("inspect", ref, env=cli_env)
    assert human.returncode == 0, human.stderr
    assert "unverified" in human.stdout and ALICE in human.stdout and signed["referrer"] in human.stdout
    data = json.loads(run("inspect", ref, "--json", env=cli_env).stdout)
    [sig] = data["signatures"]
    assert (sig["signer"], sig["issuer"], sig["verified"]) == (ALICE, ISSUER, False)


def test_verify_blob_public_staging_bundle(sigstore_data: Path, cli_env):
    blob, bundle = sigstore_data / "bundle_v3.txt", sigstore_data / "bundle_v3.txt.sigstore"
    root = sigstore_data / "trusted_root.staging.json"
    common = [str(blob), "--bundle", str(bundle), "--trusted-root", str(root), "--certificate-oidc-issuer", GITHUB_OAUTH]
    ok = run("verify-blob", *common, "--certificate-identity", WILLIAM, env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert WILLIAM in ok.stdout
    wrong = run("verify-blob", *common, "--certificate-identity", "someone@else.example", env=cli_env)
    assert_one_line_failure(wrong, 5, "wrong identity")


def test_cosign_key_pair_signs_verifies_and_promotes(model, tmp_path, cli_env):
    """A key written by ``cosign generate-key-pair`` (cosign's own test key, password hello)."""
    from cryptography.hazmat.primitives import serialization

    from ocimodel.signing.keys import load_private_key

    ref, digest = model
    cosign_key = Path(__file__).parent.parent / "data" / "cosign" / "pemsigstorekey.key"
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(load_private_key(cosign_key, b"hello").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {**cli_env, "OCIMODEL_KEY_PASSWORD": "hello"}
    wrong = run("sign", ref, "--key", str(cosign_key), env=cli_env)
    assert_one_line_failure(wrong, 2, "pemsigstorekey.key: wrong password")
    signed = run("sign", ref, "--key", str(cosign_key), env=env)
    assert signed.returncode == 0, signed.stderr
    verified = run("verify", ref, "--key", str(pub), env=env)
    assert verified.returncode == 0 and f"Verified {digest}" in verified.stdout, verified.stderr
    swapped = run("verify", ref, "--key", str(cosign_key), env=env)
    assert_one_line_failure(swapped, 2, "is a private key; verifying needs the public key")
    promoted = run("promote", ref, "prod", "--key", str(pub), "--sign", "--sign-key", str(cosign_key), env=env)
    assert promoted.returncode == 0, promoted.stderr


def test_verify_blob_cosign_message_bundle_exit_codes(tmp_path, cli_env):
    """``cosign sign-blob --key --bundle`` output: verifies; another file's bundle exits 5."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    blob, other = tmp_path / "m.bin", tmp_path / "other.bin"
    blob.write_bytes(os.urandom(2000))
    other.write_bytes(os.urandom(2000))
    content = blob.read_bytes()
    bundle = tmp_path / "m.bin.bundle"
    bundle.write_text(json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "ignored"}},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(hashlib.sha256(content).digest()).decode()},
            "signature": base64.b64encode(key.sign(content, ec.ECDSA(hashes.SHA256()))).decode()},
    }))
    ok = run("verify-blob", str(blob), "--bundle", str(bundle), "--key", str(pub), env=cli_env)
    assert ok.returncode == 0, ok.stderr
    mismatch = run("verify-blob", str(other), "--bundle", str(bundle), "--key", str(pub), env=cli_env)
    assert_one_line_failure(mismatch, 5, "digest mismatch")
