"""The air-gapped flow of docs/airgap.md, command for command, in real processes.

Connected side: a plain registry, a model signed keyless (the local Sigstore stand-in) and with
a key, promoted to prod with signed records, copied into one ``oci-archive`` file. The file is
carried (copied) to the isolated side, where everything runs in its own network namespace
(``unshare -n``: no route to anything, loopback down) or against the internal registry only:
``verify`` offline with a pinned trusted root, ``history`` offline, ``copy`` into the internal
registry (TLS + basic auth), and the init container's pull with the same policy. ``verify`` and
``history`` on the far side give the answers they gave at the source.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import run
from test_provenance import AMBIENT_VARS

pytest_plugins = ["sigstore_fixtures"]

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/churn/.github/workflows/release.yml@refs/heads/main"


def _can_unshare_network() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


#: Where a machine cannot make network namespaces (no CAP_SYS_ADMIN), every proxy variable points
#: at a closed port instead: anything that tried to reach out would fail.
_DEAD_PROXY = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "all_proxy",
                                                     "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}


def _offline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``ocimodel ARGS`` in a new network namespace: no network at all, loopback down."""
    prefix = ["unshare", "-n"] if _can_unshare_network() else []
    return subprocess.run([*prefix, sys.executable, "-m", "ocimodel", *args], capture_output=True, text=True,
                          env={**os.environ, **env, **({} if prefix else {**_DEAD_PROXY, "NO_PROXY": "", "no_proxy": ""})},
                          timeout=120)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if done.returncode:
        print(done.stdout, done.stderr)
    assert done.returncode == 0, (done.args[:6], done.stderr)
    return done


def _history(done: subprocess.CompletedProcess) -> list[tuple]:
    """What a history says, without where it was read from."""
    report = json.loads(done.stdout)
    assert report["ok"] and report["complete"] and not report["findings"], report
    return [(e["from"], e["to"], e["reason"], e["actor"]["name"], e["repository"], e["signedBy"], e["signatureVerified"])
            for e in report["entries"]]


@pytest.fixture
def sides(tmp_path, registry, tls_basic_registry, sigstore_standin, monkeypatch, repo):
    for name in (*AMBIENT_VARS, "OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN", "OCIMODEL_KEY", "DOCKER_CONFIG",
                 "OCIMODEL_USERNAME", "OCIMODEL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    connected = {"DOCKER_CONFIG": str(tmp_path / "connected-docker"), "OCIMODEL_KEY_PASSWORD": "pw"}
    isolated_docker = tmp_path / "isolated-docker"
    isolated_docker.mkdir()
    reg = tls_basic_registry
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (isolated_docker / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    isolated = {"DOCKER_CONFIG": str(isolated_docker), "OCIMODEL_CA_FILE": str(reg.ca_file)}
    return connected, isolated, sigstore_standin


def test_air_gapped_flow_end_to_end(sides, registry, tls_basic_registry, repo, tmp_path):
    connected, isolated, standin = sides
    source = f"{registry.host}/{repo}"
    internal = f"{tls_basic_registry.host}/{repo}"
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(200_000))
    (model / "config.json").write_text('{"threshold": 0.5}')

    # -- the connected side: push, sign (keyless and key), promote with signed records, export
    _ok(run("keygen", "--output-prefix", str(tmp_path / "release"), env=connected))
    public = tmp_path / "release.pub"
    digest = _ok(run("push", str(model), f"{source}:1.0", "--no-git", "--plain-http", env=connected)).stdout.strip()
    token = standin.mint_token(WORKFLOW, GITHUB_ISSUER, **standin.github_claims("acme/churn", WORKFLOW.split("github.com/")[1]))
    _ok(run("sign", f"{source}:1.0", "--identity-token", token, "--trust-config", str(standin.trust_config_path),
            "--plain-http", env=connected))
    _ok(run("sign", f"{source}:1.0", "--key", str(tmp_path / "release.key"), "--plain-http", env=connected))
    keyless = ["--certificate-identity", WORKFLOW, "--certificate-oidc-issuer", GITHUB_ISSUER,
               "--trusted-root", str(standin.trusted_root_path)]
    for stage in ("staging", "prod"):
        _ok(run("promote", f"{source}:1.0", stage, "--reason", f"release to {stage}", "--actor", "release-bot",
                "--sign-key", str(tmp_path / "release.key"), "--key", str(public), "--plain-http", env=connected))
    source_history = _ok(run("history", source, "prod", "--key", str(public), "--json", "--plain-http", env=connected))

    archive = tmp_path / "outbox" / "m.tar"
    archive.parent.mkdir()
    out = _ok(run("copy", f"{source}:prod", f"oci-archive:{archive}", "--tags", "--json", "--plain-http", env=connected))
    assert json.loads(out.stdout)["digest"] == digest

    # -- carry the file
    carried = tmp_path / "inbox" / "m.tar"
    carried.parent.mkdir()
    shutil.copyfile(archive, carried)
    # The trusted root travels with it; nothing on the isolated side reaches the internet.
    root = tmp_path / "inbox" / "root.json"
    shutil.copyfile(standin.trusted_root_path, root)
    keyless_offline = [*keyless[:-1], str(root)]

    # -- the isolated side, offline: verify both signatures and the history from the file alone
    for policy in (keyless_offline, ["--key", str(public)]):
        verified = _ok(_offline("verify", f"oci-archive:{carried}:prod", *policy, "--json", env=isolated))
        assert json.loads(verified.stdout)["digest"] == digest
    # The records name the repository they were written in; the copy's history accepts them when
    # asked for that origin, and refuses them otherwise (a signed promotion elsewhere is none here).
    foreign = _offline("history", f"oci-archive:{carried}", "prod", "--key", str(public), "--json", env=isolated)
    assert foreign.returncode == 6 and "--origin" in foreign.stdout
    offline_history = _ok(_offline("history", f"oci-archive:{carried}", "prod", "--origin", source, "--key", str(public),
                                   "--json", env=isolated))
    assert _history(offline_history) == _history(source_history)
    assert len(_history(source_history)) == 1 and _history(source_history)[0][1] == digest

    # A tampered file is refused offline, with one error line.
    tampered = tmp_path / "inbox" / "tampered.tar"
    data = bytearray(carried.read_bytes())
    weights = bytes(data).find((model / "weights.bin").read_bytes()[:64])
    assert weights > 0
    data[weights] ^= 1
    tampered.write_bytes(data)
    refused = _offline("pull", f"oci-archive:{tampered}:prod", str(tmp_path / "nowhere"), "--key", str(public), env=isolated)
    assert refused.returncode == 6 and refused.stderr.count("error:") == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert not (tmp_path / "nowhere").exists()

    # -- into the internal registry (TLS + basic auth from the isolated docker config)
    _ok(run("copy", f"oci-archive:{carried}:prod", f"{internal}:prod", "--tags", env=isolated))
    for policy in (keyless_offline, ["--key", str(public)]):
        verified = _ok(run("verify", f"{internal}:prod", *policy, "--json", env=isolated))
        assert json.loads(verified.stdout)["digest"] == digest
    far_history = _ok(run("history", internal, "prod", "--key", str(public), "--json", env=isolated))
    assert _history(far_history) == _history(source_history)
    stages = _ok(run("stages", internal, "--json", env=isolated))
    assert {s["stage"]: s["digest"] for s in json.loads(stages.stdout)} == {"prod": digest, "staging": digest}

    # -- the init container: pull from the internal registry with the same policy
    dest = tmp_path / "models"
    pulled = _ok(run("pull", f"{internal}:prod", str(dest), "--layout", "versioned", *keyless_offline,
                     "--log-format", "json", env=isolated))
    steps = [json.loads(line)["step"] for line in pulled.stderr.splitlines() if line.startswith("{")]
    assert steps[:2] == ["resolved", "verified"] and steps[-1] == "installed"
    assert (dest / "current" / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
