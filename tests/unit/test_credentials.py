"""CredentialStore: docker config files, credential helpers, env credentials, login/logout."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ocimodel.errors import AuthError, UsageError
from ocimodel.registry.credentials import DOCKER_HUB_KEY, Credential, CredentialStore, normalise_host

# A real executable speaking the docker-credential-helpers protocol, storing into a JSON file
# named after itself next to it.
HELPER = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
path = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name + ".json")
data = json.load(open(path)) if os.path.exists(path) else {{}}
action, payload = sys.argv[1], sys.stdin.read()
if action == "get":
    url = payload.strip()
    if url not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": url, "Username": data[url][0], "Secret": data[url][1]}}))
elif action == "store":
    entry = json.loads(payload)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
elif action == "erase":
    url = payload.strip()
    if url not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    del data[url]
json.dump(data, open(path, "w"))
"""


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH directory with fake helpers ``docker-credential-test`` and ``-other``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("test", "other"):
        script = bin_dir / f"docker-credential-{name}"
        script.write_text(HELPER.format(python=sys.executable))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def _write_config(docker_config: Path, config: dict) -> None:
    (docker_config / "config.json").write_text(json.dumps(config))


def _helper_data(bin_dir: Path, name: str) -> dict:
    path = bin_dir / f"docker-credential-{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_no_config_means_anonymous(docker_config: Path) -> None:
    assert CredentialStore().get("example.com") is None


def test_auths_entry_forms(docker_config: Path) -> None:
    _write_config(
        docker_config,
        {
            "auths": {
                "a.example.com": {"auth": _b64("alice:pa:ss")},
                "https://b.example.com/v1/": {"username": "bob", "password": "pw"},
                "c.example.com": {"auth": "", "identitytoken": "refresh-me"},
                DOCKER_HUB_KEY: {"auth": _b64("hubuser:hubpw")},
            }
        },
    )
    store = CredentialStore()
    assert store.get("a.example.com") == Credential("alice", "pa:ss")  # only the first ':' splits
    assert store.get("b.example.com") == Credential("bob", "pw")
    assert store.get("c.example.com") == Credential(identity_token="refresh-me")
    assert store.get("docker.io") == Credential("hubuser", "hubpw")
    assert store.get("registry-1.docker.io") == Credential("hubuser", "hubpw")
    assert store.get("d.example.com") is None


def test_secrets_hidden_from_repr() -> None:
    text = repr(Credential("alice", "hunter2", "tok3n"))
    assert "alice" in text and "hunter2" not in text and "tok3n" not in text


def test_env_credentials_take_precedence_for_their_registry(docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(docker_config, {"auths": {"h.example.com": {"auth": _b64("file:pw")}, "o.example.com": {"auth": _b64("o:pw")}}})
    monkeypatch.setenv("OCIMODEL_USERNAME", "ci")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "ci-secret")
    store = CredentialStore.for_registry("h.example.com")
    assert store.get("h.example.com") == Credential("ci", "ci-secret")
    assert store.get("o.example.com") == Credential("o", "pw")  # another registry: its own login
    assert CredentialStore().get("h.example.com") == Credential("file", "pw")  # bound to nothing: unused


@pytest.mark.parametrize("username, password", [("u", None), (None, "p"), ("", "p")])
def test_half_a_credential_is_a_usage_error(username, password, docker_config: Path) -> None:
    with pytest.raises(UsageError, match="a username needs a password"):
        CredentialStore.for_registry("h.example.com", username, password)


def test_auth_error_hint_names_the_registry_credentials_were_given_for(docker_config: Path, monkeypatch) -> None:
    given = CredentialStore().given_to("ghcr.io", Credential("ci", "secret-pw"))
    assert "for ghcr.io only" in given.hint("quay.io") and given.hint("ghcr.io") == ""
    assert "secret" not in given.hint("quay.io")
    monkeypatch.setenv("OCIMODEL_USERNAME", "ci")
    monkeypatch.setenv("OCIMODEL_PASSWORD", "secret-pw")
    assert "credentials_for" in CredentialStore().hint("quay.io")


def test_explicit_path_overrides_docker_config(docker_config: Path, tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"h.example.com": {"auth": _b64("u:p")}}}))
    assert CredentialStore(auth_file).get("h.example.com") == Credential("u", "p")
    assert CredentialStore().get("h.example.com") is None


def test_login_logout_round_trip_preserves_other_keys(docker_config: Path) -> None:
    _write_config(docker_config, {"auths": {"other.example.com": {"auth": _b64("o:p")}}, "psFormat": "x"})
    store = CredentialStore()
    store.login("h.example.com:5000", "alice", "s3cret")
    path = docker_config / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert config["psFormat"] == "x" and "other.example.com" in config["auths"]
    assert config["auths"]["h.example.com:5000"] == {"auth": _b64("alice:s3cret")}
    assert store.get("h.example.com:5000") == Credential("alice", "s3cret")
    assert [p.name for p in docker_config.iterdir()] == ["config.json"]  # no temp file left
    assert store.logout("h.example.com:5000") is True
    assert store.get("h.example.com:5000") is None
    assert store.logout("h.example.com:5000") is False
    assert "other.example.com" in json.loads(path.read_text())["auths"]


def test_login_to_docker_hub_uses_its_key(docker_config: Path) -> None:
    CredentialStore().login("docker.io", "u", "p")
    assert DOCKER_HUB_KEY in json.loads((docker_config / "config.json").read_text())["auths"]


def test_login_creates_missing_config_dir(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "new" / "dir" / "config.json")
    store.login("h.example.com", "u", "p")
    assert store.get("h.example.com") == Credential("u", "p")


def test_helper_get_store_erase(docker_config: Path, helpers: Path) -> None:
    _write_config(docker_config, {"credsStore": "test"})
    store = CredentialStore()
    assert store.get("h.example.com") is None
    store.login("h.example.com", "alice", "s3cret")
    assert _helper_data(helpers, "test") == {"h.example.com": ["alice", "s3cret"]}
    assert store.get("h.example.com") == Credential("alice", "s3cret")
    assert "auths" not in json.loads((docker_config / "config.json").read_text())  # secret not in the file
    assert store.logout("h.example.com") is True
    assert store.get("h.example.com") is None


def test_cred_helpers_beat_creds_store(docker_config: Path, helpers: Path) -> None:
    _write_config(docker_config, {"credsStore": "test", "credHelpers": {"special.example.com": "other"}})
    store = CredentialStore()
    store.login("special.example.com", "s", "from-other")
    store.login("plain.example.com", "p", "from-test")
    assert _helper_data(helpers, "other") == {"special.example.com": ["s", "from-other"]}
    assert store.get("special.example.com") == Credential("s", "from-other")
    assert store.get("plain.example.com") == Credential("p", "from-test")


def test_helper_token_username_means_identity_token(docker_config: Path, helpers: Path) -> None:
    _write_config(docker_config, {"credsStore": "test"})
    (helpers / "docker-credential-test.json").write_text(json.dumps({DOCKER_HUB_KEY: ["<token>", "refresh"]}))
    assert CredentialStore().get("docker.io") == Credential(identity_token="refresh")


def test_missing_helper_has_clear_message(docker_config: Path) -> None:
    _write_config(docker_config, {"credsStore": "does-not-exist-anywhere"})
    with pytest.raises(AuthError, match="docker-credential-does-not-exist-anywhere .* not on PATH"):
        CredentialStore().get("h.example.com")


def test_corrupt_config_is_usage_error(docker_config: Path) -> None:
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        CredentialStore().get("h.example.com")


@pytest.mark.parametrize(
    ("server", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://Example.com:5000/path", "example.com:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_normalise_host(server: str, host: str) -> None:
    assert normalise_host(server) == host
