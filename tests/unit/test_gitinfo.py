"""No secrets in what we publish: git remotes lose every credential form before they are stored."""

from __future__ import annotations

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


