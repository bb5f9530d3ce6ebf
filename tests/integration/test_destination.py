"""The destination is ours alone: hostile state files, symlinks planted during a real pull,
layout collisions, and all-or-nothing installs into a DEST that already holds a model.

Every attack runs a real pull against the real registry; "outside" is a directory next to
DEST holding files an attacker would like the pull to read, overwrite or delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest
from transfer_helpers import everything, model_tree

from ocimodel.api import Client
from ocimodel.errors import OcimodelError, UnsafeContentError, UsageError
from ocimodel.registry.connection import Connection
from ocimodel.transfer.installed import STATE_NAME


@pytest.fixture
def oc(registry, docker_config):
    with Client(Connection(plain_http=True)) as client:
        yield client


def _push(oc, registry, repo, tmp_path: Path, tag: str, files: dict[str, bytes]) -> str:
    root = tmp_path / f"src-{tag}"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    ref = f"{registry.host}/{repo}:{tag}"
    oc.push(root, ref, code=False, scan=False)
    return ref


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside DEST with a file a hostile state or link points at."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "victim").write_bytes(b"not yours")
    return directory


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: file bytes, 'dir', or 'link -> target'."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[key] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[key] = "dir"
        else:
            out[key] = path.read_bytes()
    return out


class Planter:
    """An observer that runs ``plant`` once, when the first file starts downloading."""

    def __init__(self, plant: Callable[[], None]) -> None:
        self._plant = plant
        self._lock = threading.Lock()
        self.planted = False

    def begin(self, name: str, total: int) -> None:
        with self._lock:
            if not self.planted:
                self.planted = True
                self._plant()

    def advance(self, name: str, amount: int) -> None:
        pass

    def end(self, name: str) -> None:
        pass


# ----------------------------------------------------------------------------- state file


V1 = {"a.bin": b"a" * 1000, "sub/b.bin": b"b" * 2000}
V2 = {"a.bin": b"A" * 1000}


def _hostile_state(dest: Path, ref: str, victim: Path, paths: list[str], **overrides: object) -> None:
    """A state saying ``paths`` were installed, each with the victim's size and digest (so
    only the path decides whether the pull would delete it)."""
    data = victim.read_bytes()
    state = json.loads((dest / STATE_NAME).read_text())
    state["files"] += [{"path": p, "digest": _digest(data), "size": len(data)} for p in paths]
    state.update(overrides)
    (dest / STATE_NAME).write_text(json.dumps(state))


@pytest.mark.parametrize(
    "paths",
    [
        ["../outside/victim"],
        ["/{outside}/victim"],
        ["versions/../../outside/victim"],
        ["sub/../../outside/victim"],
        ["link/victim"],  # DEST/link -> outside: a valid title, but through a symlink
    ],
)
def test_hostile_state_paths_never_delete_outside(oc, registry, repo, tmp_path, outside, paths):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    ref2 = _push(oc, registry, repo, tmp_path, "2", V2)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    (dest / "link").symlink_to(outside)
    _hostile_state(dest, ref1, outside / "victim", [p.format(outside=str(outside).lstrip("/")) for p in paths])
    events: list[tuple[str, dict]] = []
    oc.pull(ref2, dest, events=lambda step, fields: events.append((step, dict(fields))))
    assert _snapshot(outside) == {"victim": b"not yours"}
    if paths == ["link/victim"]:  # a valid title: the state is used, the link not followed
        assert model_tree(dest) == V2
    else:  # a path that is not a title makes the whole state unusable: v1's extra file stays
        assert "unsafe path" in [f["reason"] for s, f in events if s == "state-ignored"][0]
        assert model_tree(dest) == {**V1, **V2}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"layout": "../../outside"}, "layout"),
        ({"layout": ["flat"]}, "layout"),
        ({"digest": "sha256:../../outside"}, "not a sha256 digest"),
        ({"files": [{"path": "a.bin", "digest": "md5:x", "size": 1}]}, "not a sha256 digest"),
        ({"files": [{"path": "a.bin", "digest": _digest(b""), "size": -1}]}, "negative"),
        ({"files": {"a.bin": 1}}, "'files'"),
        ({"state_version": 99}, "state_version"),
        ({"include": [1]}, "include"),
    ],
)
def test_mistyped_state_is_ignored_and_the_pull_installs_again(oc, registry, repo, tmp_path, change, reason):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    state = json.loads((dest / STATE_NAME).read_text())
    state.update(change)
    (dest / STATE_NAME).write_text(json.dumps(state))
    events: list[tuple[str, dict]] = []
    result = oc.pull(ref1, dest, events=lambda step, fields: events.append((step, dict(fields))))
    assert not result.skipped  # no usable state: installed again, not trusted
    assert reason in [f["reason"] for s, f in events if s == "state-ignored"][0]
    assert model_tree(dest) == V1
    assert json.loads((dest / STATE_NAME).read_text())["digest"] == result.digest  # a good state again


def test_state_file_symlink_fifo_huge_or_deep_is_ignored_and_never_followed(oc, registry, repo, tmp_path, outside):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    good = (dest / STATE_NAME).read_text()
    (outside / "state.json").write_text(good)  # a valid state, but not DEST's own file
    attacks: list[Callable[[Path], None]] = [
        lambda p: p.symlink_to(outside / "state.json"),
        lambda p: os.mkfifo(p),  # reading it would block the pull forever
        lambda p: _sparse(p, 17 * 1024 * 1024),  # over the 16 MiB limit
        lambda p: p.write_text('{"a":' * 50_000 + "1" + "}" * 50_000),
        lambda p: p.write_bytes(b"\xff\xfe not json"),
    ]
    for attack in attacks:
        (dest / STATE_NAME).unlink()
        attack(dest / STATE_NAME)
        events: list[str] = []
        result = oc.pull(ref1, dest, events=lambda step, fields: events.append(step))
        assert not result.skipped and "state-ignored" in events
        assert model_tree(dest) == V1
        assert not (dest / STATE_NAME).is_symlink() and json.loads((dest / STATE_NAME).read_text())["digest"] == result.digest
    assert (outside / "state.json").read_text() == good  # written through the link: never
    assert sorted(p.name for p in outside.iterdir()) == ["state.json", "victim"]


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


def test_flat_update_removes_only_unchanged_files_it_installed(oc, registry, repo, tmp_path):
    ref1 = _push(oc, registry, repo, tmp_path, "1", {**V1, "c.bin": b"c" * 10})
    ref2 = _push(oc, registry, repo, tmp_path, "2", V2)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    (dest / "sub" / "b.bin").write_bytes(b"B" * 2000)  # edited in place, same size: the user's now
    oc.pull(ref2, dest)
    assert model_tree(dest) == {"a.bin": V2["a.bin"], "sub/b.bin": b"B" * 2000}  # c.bin (unchanged) went


# ----------------------------------------------------------------------------- races


def test_symlinked_subdirectory_planted_mid_pull_cannot_redirect_the_write(oc, registry, repo, tmp_path, outside):
    ref = _push(oc, registry, repo, tmp_path, "1", {"sub/file.bin": os.urandom(300_000)})
    dest = tmp_path / "dest"
    dest.mkdir()
    # Checked before the download (no "sub" yet), planted while it runs.
    planter = Planter(lambda: (dest / "sub").symlink_to(outside))
    with pytest.raises(UnsafeContentError, match="symlink"):
        oc.pull(ref, dest, observer=planter)
    assert planter.planted
    assert _snapshot(outside) == {"victim": b"not yours"}
    assert everything(dest) == ["sub"]  # only what the attacker planted


def test_symlink_planted_over_a_file_or_our_partials_dir_is_not_followed(oc, registry, repo, tmp_path, outside):
    data = os.urandom(300_000)
    ref = _push(oc, registry, repo, tmp_path, "1", {"file.bin": data})
    dest = tmp_path / "dest"
    dest.mkdir()
    # Followed, the link would make the pull resume from (and then overwrite and move away)
    # this file of the same name.
    bait = _digest(data).replace(":", "-")
    (outside / bait).write_bytes(b"x" * 10)

    def plant() -> None:
        (dest / "file.bin").symlink_to(outside / "victim")  # the file's own name
        (dest / ".ocimodel-partial").rename(dest / "moved")  # our dir, in use, swapped for a link
        (dest / ".ocimodel-partial").symlink_to(outside)

    planter = Planter(plant)
    oc.pull(ref, dest, observer=planter)
    assert planter.planted
    assert _snapshot(outside) == {"victim": b"not yours", bait: b"x" * 10}
    assert not (dest / "file.bin").is_symlink() and (dest / "file.bin").read_bytes() == data


def test_versions_dir_swapped_for_a_symlink_mid_pull_writes_nothing_outside(oc, registry, repo, tmp_path, outside):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    ref2 = _push(oc, registry, repo, tmp_path, "2", V2)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest, layout="versioned")

    def plant() -> None:
        (dest / "versions").rename(dest / "moved")
        (dest / "versions").symlink_to(outside)

    oc.pull(ref2, dest, layout="versioned", observer=Planter(plant))
    assert _snapshot(outside) == {"victim": b"not yours"}


# ----------------------------------------------------------------------------- layouts


def test_flat_and_versioned_layouts_do_not_mix(oc, registry, repo, tmp_path):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    clash = _push(oc, registry, repo, tmp_path, "clash", {"current": b"c", "versions/x.bin": b"x"})
    versioned = tmp_path / "versioned"
    oc.pull(ref1, versioned, layout="versioned")
    before = _snapshot(versioned)
    for ref in (ref1, clash):
        with pytest.raises(UsageError, match="holds a versioned install.*--layout versioned"):
            oc.pull(ref, versioned)
        assert _snapshot(versioned) == before

    flat = tmp_path / "flat"
    oc.pull(clash, flat)  # no versioned layout there: 'current' is just a file
    before = _snapshot(flat)
    with pytest.raises(UsageError, match="holds a flat install.*--layout flat"):
        oc.pull(ref1, flat, layout="versioned")
    assert _snapshot(flat) == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "current").write_text("a user's file")
    with pytest.raises(UsageError, match="'current' that ocimodel did not make"):
        oc.pull(ref1, mine, layout="versioned")
    assert _snapshot(mine) == {"current": b"a user's file"}


def test_current_or_versions_pointing_outside_is_never_used(oc, registry, repo, tmp_path, outside):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    hexname = "a" * 64
    (outside / hexname).mkdir()
    (outside / hexname / "keep").write_text("old data")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "current").symlink_to(outside / hexname)
    with pytest.raises(UsageError, match="did not make"):
        oc.pull(ref1, dest, layout="versioned")
    (dest / "current").unlink()
    (dest / "current").symlink_to(f"versions/../../outside/{hexname}")
    with pytest.raises(UsageError, match="did not make"):
        oc.pull(ref1, dest, layout="versioned")
    (dest / "current").unlink()
    (dest / "versions").symlink_to(outside)
    with pytest.raises(UnsafeContentError, match="symlink"):
        oc.pull(ref1, dest, layout="versioned")
    assert _snapshot(outside) == {"victim": b"not yours", hexname: "dir", f"{hexname}/keep": b"old data"}


def test_flat_into_versioned_is_exit_2_with_one_line(registry, repo, tmp_path, docker_config, oc):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest, layout="versioned")
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    done = subprocess.run([sys.executable, "-m", "ocimodel", "pull", ref1, str(dest)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--layout versioned" in errors[0] and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- all or nothing


def test_failure_while_moving_files_in_puts_the_previous_ones_back(oc, registry, repo, tmp_path):
    v1 = {"a.bin": b"1" * 100, "b.bin": b"2" * 100, "old.bin": b"3" * 100}
    v2 = {"a.bin": b"x" * 100, "b.bin": b"y" * 100, "new/c.bin": b"z" * 100, "zz.bin": b"w" * 100}
    ref1 = _push(oc, registry, repo, tmp_path, "1", v1)
    ref2 = _push(oc, registry, repo, tmp_path, "2", v2)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    state = (dest / STATE_NAME).read_bytes()

    def plant() -> None:  # the last file's name becomes a directory after the pre-check
        (dest / "zz.bin").mkdir()
        (dest / "zz.bin" / "x").write_text("in the way")

    with pytest.raises(OcimodelError, match="zz.bin"):
        oc.pull(ref2, dest, observer=Planter(plant))
    assert model_tree(dest) == {**v1, "zz.bin/x": b"in the way"}  # a.bin, b.bin were replaced, then restored
    assert (dest / STATE_NAME).read_bytes() == state
    assert everything(dest) == sorted([*v1, STATE_NAME, "zz.bin", "zz.bin/x"])  # no new/, no staging


def test_failure_writing_the_state_restores_replaced_and_removed_files(oc, registry, repo, tmp_path):
    v1 = {"a.bin": b"1" * 100, "gone/old.bin": b"3" * 100}
    v2 = {"a.bin": b"x" * 100}
    ref1 = _push(oc, registry, repo, tmp_path, "1", v1)
    ref2 = _push(oc, registry, repo, tmp_path, "2", v2)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)

    def plant() -> None:  # the state file cannot be replaced: a directory holds its name
        (dest / STATE_NAME).unlink()
        (dest / STATE_NAME).mkdir()
        (dest / STATE_NAME / "x").write_text("")

    with pytest.raises(OSError):
        oc.pull(ref2, dest, observer=Planter(plant))
    assert model_tree(dest) == {**v1, f"{STATE_NAME}/x": b""}


def test_cli_says_when_it_ignores_a_state_file(registry, repo, tmp_path, docker_config, oc):
    ref1 = _push(oc, registry, repo, tmp_path, "1", V1)
    dest = tmp_path / "dest"
    oc.pull(ref1, dest)
    (dest / STATE_NAME).write_text('{"layout": "../x"}')
    env = {**os.environ, "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    done = subprocess.run([sys.executable, "-m", "ocimodel", "pull", ref1, str(dest)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"ocimodel: ignoring {dest / STATE_NAME}: state_version None is not 1; installing again" in done.stderr
    assert model_tree(dest) == V1
