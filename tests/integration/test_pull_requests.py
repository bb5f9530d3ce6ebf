"""Round trips of a pull, counted at a proxy in front of the real registry.

A pull of an N-file model makes at most N + 2 requests (manifest, config, blobs); a restart of
a digest already installed in DEST makes none (the init container's restart), unless
``--reverify``. A regression in round trips fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from process_helpers import run

from ocimodel import api
from ocimodel.registry.connection import Connection
from ocimodel.transfer.installed import STATE_NAME

pytestmark = pytest.mark.usefixtures("docker_config")

N_FILES = 5
PLAIN = Connection(plain_http=True)


def _pushed(fault_proxy, repo: str, tmp_path: Path) -> tuple[str, str]:
    """A model of N_FILES files pushed through the proxy: (tag reference, digest reference)."""
    model = tmp_path / "m"
    model.mkdir()
    for i in range(N_FILES):
        (model / f"f{i}.bin").write_bytes(os.urandom(100 + i))
    ref = f"{fault_proxy.host}/{repo}:v1"
    digest = api.push(str(model), ref, connection=PLAIN).digest
    fault_proxy.clear()
    return ref, f"{fault_proxy.host}/{repo}@{digest}"


def _steps(ref: str, dest: Path, **options) -> list[tuple[str, dict]]:
    seen: list[tuple[str, dict]] = []
    api.pull(ref, dest, connection=PLAIN, use_cache=False, events=lambda s, f: seen.append((s, dict(f))), **options)
    return seen


def test_pull_of_n_files_makes_at_most_n_plus_2_requests(fault_proxy, repo, tmp_path):
    ref, _ = _pushed(fault_proxy, repo, tmp_path)
    api.pull(ref, tmp_path / "out", connection=PLAIN, use_cache=False)
    requests = [(e.method, e.path.rsplit("/", 2)[1]) for e in fault_proxy.exchanges]
    assert len(requests) <= N_FILES + 2
    assert requests.count(("GET", "manifests")) == 1 and not any(m == "HEAD" for m, _ in requests)


def test_restart_by_digest_touches_no_network(fault_proxy, repo, tmp_path):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    fault_proxy.clear()
    steps = _steps(pinned, dest)
    assert fault_proxy.exchanges == []
    assert steps == [("up-to-date", {"digest": pinned.split("@")[1], "path": str(dest), "reverified": False,
                                     "offline": True})]


@pytest.mark.parametrize("layout", ["flat", "versioned"])
def test_restart_by_digest_succeeds_with_the_registry_unreachable(fault_proxy, repo, tmp_path, layout):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False, layout=layout)
    fault_proxy.stop()  # nothing listens there any more
    done = run("pull", pinned, str(dest), "--layout", layout, "--log-format", "json",
               env={"OCIMODEL_PLAIN_HTTP": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pinned.split("@")[1]
    [line] = [json.loads(line) for line in done.stderr.splitlines()]
    assert line["step"] == "up-to-date" and line["offline"] is True and "already installed" in line["message"]


def test_restart_with_reverify_asks_the_registry_and_rehashes(fault_proxy, repo, tmp_path):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    (dest / "f0.bin").write_bytes(b"x" * 100)  # same size, other bytes: only a hash sees it
    fault_proxy.clear()
    steps = [s for s, _ in _steps(pinned, dest, reverify=True)]
    assert fault_proxy.count("/manifests/", "GET") == 1
    assert "repairing" in steps and (dest / "f0.bin").read_bytes() != b"x" * 100


def test_restart_by_tag_still_resolves_the_tag(fault_proxy, repo, tmp_path):
    ref, _ = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(ref, dest, connection=PLAIN, use_cache=False)
    fault_proxy.clear()
    steps = [s for s, _ in _steps(ref, dest)]
    assert steps == ["resolved", "up-to-date"]
    assert len(fault_proxy.exchanges) <= 2  # the tag may have moved: manifest (and config) only


def test_restart_with_a_file_of_the_wrong_size_repairs_through_the_registry(fault_proxy, repo, tmp_path):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    good = (dest / "f1.bin").read_bytes()
    (dest / "f1.bin").write_bytes(b"short")
    fault_proxy.clear()
    assert "repairing" in [s for s, _ in _steps(pinned, dest)]
    assert (dest / "f1.bin").read_bytes() == good and fault_proxy.exchanges


def test_restart_with_other_checks_asks_the_registry(fault_proxy, repo, tmp_path):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    fault_proxy.clear()
    # A check the first pull did not make cannot be taken from its state file.
    with pytest.raises(Exception, match="licen"):
        _steps(pinned, dest, allow_licenses=["MIT"])
    assert fault_proxy.count("/manifests/", "GET") == 1


def test_forged_state_naming_another_repository_is_not_trusted_offline(fault_proxy, repo, tmp_path):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    state = json.loads((dest / STATE_NAME).read_text())
    state["reference"] = state["reference"].replace(repo, "other/repo")
    (dest / STATE_NAME).write_text(json.dumps(state))
    fault_proxy.clear()
    steps = [s for s, _ in _steps(pinned, dest)]
    assert steps[0] == "resolved" and fault_proxy.count("/manifests/", "GET") == 1


@pytest.mark.parametrize("field, value", [("checks", "not a digest"), ("files", [{"path": "../escape", "digest": "sha256:" + "0" * 64, "size": 1}])])
def test_hostile_state_is_ignored_and_the_registry_asked(fault_proxy, repo, tmp_path, field, value):
    _, pinned = _pushed(fault_proxy, repo, tmp_path)
    dest = tmp_path / "out"
    api.pull(pinned, dest, connection=PLAIN, use_cache=False)
    state = json.loads((dest / STATE_NAME).read_text())
    state[field] = value
    (dest / STATE_NAME).write_text(json.dumps(state))
    fault_proxy.clear()
    steps = [s for s, _ in _steps(pinned, dest)]
    assert "state-ignored" in steps and "installed" in steps
    assert fault_proxy.count("/manifests/", "GET") == 1
    assert not (tmp_path / "escape").exists()
