"""No secrets in what we publish: git remotes lose every credential form before they are stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimodel.transfer.gitinfo import strip_credentials


@pytest.mark.parametrize(
    "remote, stored",
    [
        ("https://user:p@ss@host/org/r.git", "https://host/org/r.git"),  # '@' in the password
        ("https://user:pa/ss@host/org/r.git", "https://host/org/r.git"),  # '/' in the password
        ("https://user:pa?ss#x@host/r.git", "https://host/r.git"),  # '?' and '#' in the password
        ("https://oauth2:glpat-XYZ@gitlab.com/g/r.git", "https://gitlab.com/g/r.git"),
        ("https://ghp_abc123@github.com/o/r", "https://github.com/o/r"),  # a token as the user name
        ("https://gitlab.com/g/r.git?private_token=abc&x=1", "https://gitlab.com/g/r.git"),
        ("https://host/r.git?x=1&access_token=zz#frag", "https://host/r.git"),
        ("HTTPS://U:P@Host:8443/x", "HTTPS://Host:8443/x"),
        ("user:token@host:path/r.git", "host:path/r.git"),  # scp-like with a password
        ("oauth2:tok@gitlab.com:g/r.git", "gitlab.com:g/r.git"),
        ("ssh://git:pw@host:22/r.git", "ssh://host:22/r.git"),
        # Kept: an ssh user authenticates with a key, the name is no secret (and keeps the URL usable).
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:org/r.git", "git@github.com:org/r.git"),
        ("https://host:8443/org/r.git", "https://host:8443/org/r.git"),
        ("https://[::1]:8443/r", "https://[::1]:8443/r"),
        ("/srv/git/r.git", "/srv/git/r.git"),
        ("https://host/org/r@v1", "https://host/org/r@v1"),
    ],
)
def test_credentials_stripped(remote, stored):
    assert strip_credentials(remote) == stored


_ANY = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
_TOKEN = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_.~"), min_size=1, max_size=20)


@given(secret=_ANY, template=st.sampled_from([
    "https://user:SECRET{}@host/org/r.git",
    "https://oauth2:SECRET{}@gitlab.com/g/r.git",
    "http://u:SECRET{}@h:80/r",
    "ssh://git:SECRET{}@host/r.git",
    "user:SECRET{}@host:path/r.git",
    "https://host/r.git?private_token=SECRET{}",
    "https://host/r.git?x=1&access_token=SECRET{}",
    "https://host/r.git#SECRET{}",
]))
def test_no_password_or_query_token_survives(secret, template):
    assert "SECRET" not in strip_credentials(template.format(secret))


@given(token=_TOKEN, scheme=st.sampled_from(["https", "http", "git", "ftp"]))
def test_no_bare_user_survives_outside_ssh(token, scheme):
    assert "SECRET" not in strip_credentials(f"{scheme}://SECRET{token}@host/org/r.git")


def test_given_and_detected_remotes_are_stripped_in_config_and_manifest(registry, repo, tmp_path, docker_config):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "w.bin").write_bytes(b"weights")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "OCIMODEL_PLAIN_HTTP": "1", "DOCKER_CONFIG": str(docker_config)}
    for cmd in (["init", "-q"], ["remote", "add", "origin", "https://oauth2:TOKEN1@gitlab.com/g/r.git?private_token=TOKEN2"],
                ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, env=env)

    def push_and_inspect(tag: str, *extra: str) -> dict:
        ref = f"{registry.host}/{repo}:{tag}"
        pushed = subprocess.run([sys.executable, "-m", "ocimodel", "push", str(root), ref, *extra],
                                capture_output=True, text=True, env=env, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        shown = subprocess.run([sys.executable, "-m", "ocimodel", "inspect", ref, "--json"],
                               capture_output=True, text=True, env=env, timeout=120)
        assert "TOKEN" not in pushed.stdout + pushed.stderr + shown.stdout
        return json.loads(shown.stdout)

    detected = push_and_inspect("detected")
    assert detected["config"]["lineage"]["code"]["remote"] == "https://gitlab.com/g/r.git"
    assert detected["annotations"]["org.opencontainers.image.source"] == "https://gitlab.com/g/r.git"
    given_remote = push_and_inspect("given", "--git-remote", "https://me:p@ss@git.example.com/r.git?access_token=TOKEN3")
    assert given_remote["config"]["lineage"]["code"]["remote"] == "https://git.example.com/r.git"
    assert given_remote["annotations"]["org.opencontainers.image.source"] == "https://git.example.com/r.git"
