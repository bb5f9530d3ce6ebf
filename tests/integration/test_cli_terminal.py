"""What the CLI leaves on a real terminal: a pseudo-terminal of 60, 80 and 120 columns whose
output is replayed in a terminal emulator (pyte), against the real registry."""

from __future__ import annotations

import fcntl
import os
import re
import pty
import struct
import subprocess
import sys
import termios

import pyte
import pytest
from process_helpers import read_until_closed

BAR_CHARACTERS = "━╸╺"


def run_in_terminal(args: list[str], env: dict[str, str], columns: int, rows: int = 50) -> tuple[int, list[str]]:
    """Run ``ocimodel ARGS`` with stdout and stderr on a pty of ``columns``; the final screen."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    full_env = {**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    full_env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "ocimodel", *args], stdin=slave, stdout=slave, stderr=slave,
                               env=full_env, close_fds=True)
    os.close(slave)
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(read_until_closed(master))
    return process.wait(timeout=120), screen.display


def whole(text: str, display: list[str]) -> bool:
    """``text`` is on the screen unbroken (a line the terminal wrapped continues on the next row)."""
    return text in "".join(display)


@pytest.fixture
def model(registry, repo, tmp_path, docker_config):
    source = tmp_path / "model"
    nested = source / "very" / "deeply" / "nested" / "directory" / "of" / "checkpoints" / "epoch-0042"
    nested.mkdir(parents=True)
    (nested / "model-weights-final.safetensors.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    for i in range(12):
        (source / f"small-{i}.txt").write_bytes(os.urandom(2000))
    env = {"OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    ref = f"{registry.host}/{repo}:1.0"
    pushed = subprocess.run([sys.executable, "-m", "ocimodel", "push", str(source), ref, "--no-git"],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    return ref, pushed.stdout.strip(), env


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_pull_leaves_whole_log_lines_and_no_bar(model, tmp_path, columns):
    ref, digest, env = model
    dest = tmp_path / f"dest-{columns}"
    code, display = run_in_terminal(["pull", ref, str(dest), "--no-cache"], env, columns)
    assert code == 0, "\n".join(display)
    assert not any(c in row for row in display for c in BAR_CHARACTERS), "\n".join(display)
    for line in (f"ocimodel: resolved {ref} to {digest}", f"ocimodel: installed {digest} in {dest}",
                 f"ocimodel: downloaded and verified 13 files"):
        assert whole(line, display), (line, "\n".join(display))
    # Each log line starts a row of its own (nothing glued behind a stale bar).
    starts = [row for row in display if row.startswith("ocimodel: ")]
    assert len(starts) == 3, "\n".join(display)
    assert display[[i for i, row in enumerate(display) if row.strip()][-1]].strip() != ""


@pytest.mark.parametrize("columns", [60, 120])
def test_push_summary_whole_on_a_terminal(model, tmp_path, columns):
    ref, digest, env = model
    source = tmp_path / "model"
    code, display = run_in_terminal(["push", str(source), ref.replace(":1.0", ":2.0"), "--no-git"], env, columns)
    assert code == 0, "\n".join(display)
    assert not any(c in row for row in display for c in BAR_CHARACTERS), "\n".join(display)
    assert whole(f"Pushed {ref.replace(':1.0', ':2.0')} (13 files, ", display), "\n".join(display)
    assert re.search(r"^sha256:[0-9a-f]{64}", "".join(display[display.index(next(r for r in display if r.startswith("sha256:"))):])), "\n".join(display)


def test_piped_pull_is_quiet_unless_verbose(model, tmp_path):
    """Piped (not a terminal): no step lines unless -v; -q leaves stderr empty on success."""
    ref, digest, env = model
    full_env = {**os.environ, **env}

    def pull(dest: str, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ocimodel", "pull", ref, str(tmp_path / dest), *flags],
                              capture_output=True, text=True, env=full_env, timeout=120)

    plain = pull("a")
    assert plain.returncode == 0 and plain.stdout.strip() == digest and plain.stderr == "", plain.stderr
    verbose = pull("b", "-v")
    assert f"ocimodel: installed {digest} in {tmp_path / 'b'}\n" in verbose.stderr
    quiet = pull("c", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.strip() == digest
    missing = subprocess.run([sys.executable, "-m", "ocimodel", "inspect", ref + "-missing", "-q"],
                             capture_output=True, text=True, env=full_env, timeout=120)
    assert missing.returncode == 4 and missing.stderr.startswith("error: "), missing.stderr


def test_piped_push_summary_hidden_by_quiet(model, tmp_path):
    ref, _, env = model
    full_env = {**os.environ, **env}
    args = [sys.executable, "-m", "ocimodel", "push", str(tmp_path / "model"), ref.replace(":1.0", ":q"), "--no-git", "--no-scan"]
    loud = subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=120)
    assert loud.returncode == 0 and loud.stderr.startswith("Pushed "), loud.stderr
    quiet = subprocess.run([*args, "-q"], capture_output=True, text=True, env=full_env, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.startswith("sha256:")


def _digests_whole(rows: list[str]) -> bool:
    return all(re.fullmatch(r"sha256:[0-9a-f]{64}", m) for row in rows for m in re.findall(r"sha256:[0-9a-f]*", row))


def test_inspect_never_wraps_a_digest(model):
    ref, digest, env = model
    piped = subprocess.run([sys.executable, "-m", "ocimodel", "inspect", ref], capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=120)
    assert piped.returncode == 0 and digest in piped.stdout
    assert piped.stdout.count("sha256:") >= 14 and _digests_whole(piped.stdout.splitlines()), piped.stdout
    assert " MB" not in piped.stdout and "3.0 MiB" in piped.stdout
    code, display = run_in_terminal(["inspect", ref], env, 80)
    assert code == 0 and _digests_whole(display) and sum(row.count("sha256:") for row in display) >= 14, "\n".join(display)
