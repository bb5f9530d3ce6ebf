"""OCI image layouts (``oci:DIR``, ``oci-archive:FILE``) as a user meets them: every verb in a
real process, skopeo reading what ocimodel wrote and the other way round (through the real
registry), oras-py pulling a model that travelled through a layout, and a writer killed
mid-push leaving a layout that reads and that a re-run completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import run
from test_cli_signing import assert_one_line_failure, keyless_flags, sign_keyless

pytest_plugins = ["sigstore_fixtures"]


@pytest.fixture
def cli_env(docker_config, monkeypatch) -> dict[str, str]:
    for name in ("OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN", "OCIMODEL_KEY", "GITHUB_ACTIONS", "CI"):
        monkeypatch.delenv(name, raising=False)
    return {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config), "OCIMODEL_KEY_PASSWORD": "pw"}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(4000))
    (model / "sub" / "README.md").write_text("a model\n")
    return model


def ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.startswith(".ocimodel")}


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_every_verb_on_a_layout(transport, model_dir, tmp_path, cli_env, sigstore_standin):
    where = tmp_path / ("layout" if transport == "oci" else "model.tar")
    store, ref = f"{transport}:{where}", f"{transport}:{where}:1.0"
    digest = ok(run("push", str(model_dir), ref, "--version", "1.0", "--no-git", env=cli_env)).strip()
    assert ok(run("tags", store, env=cli_env)).split() == ["1.0"]
    info = json.loads(ok(run("inspect", ref, "--json", env=cli_env)))
    assert info["digest"] == digest and sorted(f["path"] for f in info["files"]) == ["sub/README.md", "weights.safetensors"]

    for pulled_ref, dest in ((ref, tmp_path / "out"), (f"{store}@{digest}", tmp_path / "by-digest"), (store, tmp_path / "only")):
        ok(run("pull", pulled_ref, str(dest), env=cli_env))
        assert tree(dest) == tree(model_dir)

    # Signatures by key and keyless, verified offline (a pinned trusted root, no registry).
    ok(run("keygen", "--output-prefix", str(tmp_path / "k"), env=cli_env))
    ok(run("sign", ref, "--key", str(tmp_path / "k.key"), env=cli_env))
    sign_keyless(ref, sigstore_standin, cli_env)
    assert f"Verified {digest}" in ok(run("verify", ref, "--key", str(tmp_path / "k.pub"), env=cli_env))
    assert f"Verified {digest}" in ok(run("verify", ref, *keyless_flags(sigstore_standin), env=cli_env))
    assert_one_line_failure(run("verify", ref, *keyless_flags(sigstore_standin, "bob@example.com"), env=cli_env),
                            5, "wrong identity")

    promoted = ok(run("promote", ref, "prod", "--reason", "tested", env=cli_env))
    assert digest in promoted
    history = ok(run("history", store, "prod", env=cli_env))
    assert digest in history and "tested" in ok(run("history", store, "prod", "--json", env=cli_env))
    assert ok(run("tags", store, env=cli_env)).split() == ["1.0", "prod"]
    assert digest[:19] in ok(run("lineage", f"{store}:prod", env=cli_env))
    scanned = run("scan", ref, env=cli_env)
    assert scanned.returncode == 0 and "0 dangerous" in scanned.stdout, scanned.stdout
    # The stage holds the same manifest bytes; the original tag is untouched.
    assert json.loads(ok(run("inspect", f"{store}:prod", "--json", env=cli_env)))["digest"] == digest
    if transport == "oci-archive":
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model.tar")) == []


def test_a_layout_with_several_models_needs_a_tag(model_dir, tmp_path, cli_env):
    layout = f"oci:{tmp_path / 'l'}"
    ok(run("push", str(model_dir), f"{layout}:a", "--version", "1", "--no-git", env=cli_env))
    ok(run("push", str(model_dir), f"{layout}:b", "--version", "2", "--no-git", env=cli_env))
    dest = tmp_path / "out"
    assert_one_line_failure(run("pull", layout, str(dest), env=cli_env), 2, "tags: a, b")
    assert not dest.exists()


def test_retag_keeps_the_old_manifest_unnamed(model_dir, tmp_path, cli_env):
    layout = tmp_path / "l"
    first = ok(run("push", str(model_dir), f"oci:{layout}:v", "--version", "1", "--no-git", env=cli_env)).strip()
    second = ok(run("push", str(model_dir), f"oci:{layout}:v", "--version", "2", "--no-git", env=cli_env)).strip()
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    names = {e["digest"]: e.get("annotations", {}).get("org.opencontainers.image.ref.name") for e in entries}
    assert names == {first: None, second: "v"}
    out = ok(run("pull", f"oci:{layout}@{first}", str(tmp_path / "old"), env=cli_env))
    assert first in out


def test_skopeo_reads_what_ocimodel_wrote_and_copies_it_to_a_registry(model_dir, tmp_path, registry, repo, cli_env):
    layout, archive = tmp_path / "l", tmp_path / "m.tar"
    digest = ok(run("push", str(model_dir), f"oci:{layout}:1.0", "--no-git", env=cli_env)).strip()
    ok(run("push", str(model_dir), f"oci-archive:{archive}:1.0", "--no-git", env=cli_env))
    raw = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text()
    assert ok(skopeo("inspect", "--raw", f"oci:{layout}:1.0")) == raw
    assert json.loads(ok(skopeo("inspect", "--raw", f"oci-archive:{archive}:1.0")))["artifactType"]

    dest = f"{registry.host}/{repo}:copied"
    ok(skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:1.0", f"docker://{dest}"))
    pulled = ok(run("pull", dest, str(tmp_path / "out"), "--json", env=cli_env))
    assert json.loads(pulled)["digest"] == digest and tree(tmp_path / "out") == tree(model_dir)


def test_ocimodel_reads_what_skopeo_wrote_and_oras_pulls_the_round_trip(model_dir, tmp_path, registry, repo, cli_env):
    import oras.client

    source = f"{registry.host}/{repo}:1.0"
    digest = ok(run("push", str(model_dir), source, "--no-git", env=cli_env)).strip()
    layout = tmp_path / "from-skopeo"
    ok(skopeo("copy", "--src-tls-verify=false", f"docker://{source}", f"oci:{layout}:1.0"))
    pulled = json.loads(ok(run("pull", f"oci:{layout}:1.0", str(tmp_path / "out"), "--json", env=cli_env)))
    assert pulled["digest"] == digest and tree(tmp_path / "out") == tree(model_dir)
    # skopeo writes an index without mediaType and entries without artifactType: still read.
    assert "mediaType" not in json.loads((layout / "index.json").read_text())

    back = f"{registry.host}/{repo}:back"
    ok(skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:1.0", f"docker://{back}"))
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.pull(target=back, outdir=str(tmp_path / "oras"))
    assert tree(tmp_path / "oras") == tree(model_dir)


#: Runs the CLI, SIGKILLing itself halfway through writing the second blob of the layout.
KILLER = """
import os, signal, sys
from ocimodel.layout import files

written = []
original = files.LayoutDir._write_temp

def dying(self, dir_fd, chunks):
    def pieces():
        for chunk in chunks:
            yield chunk
            if written:  # the first piece is in the temp file: die before the rest
                os.kill(os.getpid(), signal.SIGKILL)
    result = original(self, dir_fd, pieces())
    written.append(result)
    return result

files.LayoutDir._write_temp = dying
sys.argv = ["ocimodel", *sys.argv[1:]]
from ocimodel.cli.app import main
main()
"""


def test_a_killed_push_leaves_a_layout_that_reads_and_a_rerun_completes(tmp_path, cli_env):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (model / name).write_bytes(os.urandom(300_000))
    layout = tmp_path / "l"
    ok(run("push", str(model / "a.bin"), f"oci:{layout}:old", "--no-git", "--no-scan", env=cli_env))
    before = (layout / "index.json").read_bytes()

    killed = subprocess.run(
        [sys.executable, "-c", KILLER, "push", str(model), f"oci:{layout}:new", "--no-git", "--no-scan",
         "--concurrency", "1"],
        capture_output=True, text=True, env={**os.environ, **cli_env}, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = list((layout / "blobs" / "sha256").glob(".tmp-*"))
    assert temps, "the writer was not killed mid-blob"
    assert (layout / "index.json").read_bytes() == before  # never half-written, never ahead of its blobs
    assert ok(run("tags", f"oci:{layout}", env=cli_env)).split() == ["old"]
    ok(run("pull", f"oci:{layout}:old", str(tmp_path / "old"), env=cli_env))
    assert_one_line_failure(run("pull", f"oci:{layout}:new", str(tmp_path / "x"), env=cli_env), 4, "new")

    digest = ok(run("push", str(model), f"oci:{layout}:new", "--no-git", "--no-scan", env=cli_env)).strip()
    assert ok(run("tags", f"oci:{layout}", env=cli_env)).split() == ["new", "old"]
    pulled = json.loads(ok(run("pull", f"oci:{layout}:new", str(tmp_path / "new"), "--json", env=cli_env)))
    assert pulled["digest"] == digest and tree(tmp_path / "new") == tree(model)
    assert ok(skopeo("inspect", "--raw", f"oci:{layout}:new"))


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_stages_rollback_and_delete_on_a_layout(transport, model_dir, tmp_path, cli_env):
    where = tmp_path / ("layout" if transport == "oci" else "model.tar")
    store = f"{transport}:{where}"
    v1 = ok(run("push", str(model_dir), f"{store}:1", "--version", "1", "--no-git", env=cli_env)).strip()
    (model_dir / "sub" / "README.md").write_text("a better model\n")
    v2 = ok(run("push", str(model_dir), f"{store}:2", "--version", "2", "--no-git", env=cli_env)).strip()
    ok(run("promote", f"{store}:1", "prod", "--reason", "first", env=cli_env))
    ok(run("promote", f"{store}:2", "prod", "--reason", "second", env=cli_env))
    stages = json.loads(ok(run("stages", store, "--json", env=cli_env)))
    assert [(s["stage"], s["digest"]) for s in stages] == [("prod", v2)]

    rolled = run("rollback", store, "prod", "--reason", "bad metrics", env=cli_env)
    assert rolled.returncode == 0 and rolled.stdout.strip() == v1, rolled.stderr
    history = json.loads(ok(run("history", store, "prod", "--json", env=cli_env)))
    assert history["ok"] and [e["to"] for e in history["entries"]] == [v1, v2, v1]
    assert history["entries"][0]["reason"] == "rollback: bad metrics"

    # delete refuses what a stage holds, removes a tag, and the layout still reads
    assert_one_line_failure(run("delete", f"{store}@{v1}", "--yes", env=cli_env), 2, "prod")
    ok(run("delete", f"{store}:2", env=cli_env))
    assert "2" not in ok(run("tags", store, env=cli_env)).split()
    assert json.loads(ok(run("inspect", f"{store}:prod", "--json", env=cli_env)))["digest"] == v1


def test_oras_pulls_a_model_ocimodel_copied_through_an_archive(model_dir, tmp_path, registry, repo, cli_env):
    import oras.client

    source = f"{registry.host}/{repo}:1.0"
    digest = ok(run("push", str(model_dir), source, "--no-git", env=cli_env)).strip()
    archive = f"oci-archive:{tmp_path / 'm.tar'}"
    ok(run("copy", source, archive, env=cli_env))
    back = f"{registry.host}/{repo}-copied:1.0"
    assert ok(run("copy", f"{archive}:1.0", back, env=cli_env)).strip() == digest
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.pull(target=back, outdir=str(tmp_path / "oras"))
    assert tree(tmp_path / "oras") == tree(model_dir)
