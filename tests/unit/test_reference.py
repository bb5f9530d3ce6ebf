"""Reference parsing: docker-style names, clear errors for malformed input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimodel.errors import InvalidReferenceError
from ocimodel.reference import Reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("localhost:5000/models/churn:1.0", "localhost:5000", "models/churn", "1.0", None),
        ("127.0.0.1:5000/m", "127.0.0.1:5000", "m", "latest", None),
        ("ghcr.io/acme/model@" + DIGEST, "ghcr.io", "acme/model", None, DIGEST),
        ("ghcr.io/acme/model:v2@" + DIGEST, "ghcr.io", "acme/model", "v2", DIGEST),
        ("ubuntu", "docker.io", "library/ubuntu", "latest", None),
        ("acme/model:x", "docker.io", "acme/model", "x", None),
        ("index.docker.io/acme/model:x", "docker.io", "acme/model", "x", None),
        ("localhost/a__b/c-d.e:t_1", "localhost", "a__b/c-d.e", "t_1", None),
        ("[::1]:5000/m:t", "[::1]:5000", "m", "t", None),
    ],
)
def test_parse(text, registry, repository, tag, digest):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert Reference.parse(str(ref)) == ref


def test_identifier_prefers_digest_and_docker_hub_api_host():
    assert Reference.parse("ghcr.io/a/b:v1@" + DIGEST).identifier == DIGEST
    assert Reference.parse("ubuntu").api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("https://ghcr.io/a/b", "drop the scheme"),
        ("ghcr.io/Acme/model", "lowercase"),
        ("ghcr.io/a/b:" + "t" * 200, "invalid tag"),
        ("ghcr.io/a/b:-bad", "invalid tag"),
        ("ghcr.io/a/b@sha256:123", "invalid digest"),
        ("ghcr.io/a/b@md5:" + "a" * 32, "invalid digest"),
        ("ghcr.io/a//b", "repository"),
        ("ghcr.io/a/b ", "spaces"),
    ],
)
def test_invalid(text, fragment):
    with pytest.raises(InvalidReferenceError) as err:
        Reference.parse(text)
    assert fragment in str(err.value)


def test_repository_only():
    assert Reference.parse_repository("localhost:5000/a/b").tag is None
    with pytest.raises(InvalidReferenceError):
        Reference.parse_repository("localhost:5000/a/b:tag")


def test_coerce_parses_strings_and_keeps_references():
    parsed = Reference.parse("localhost:5000/a/b:1")
    assert Reference.coerce(parsed) is parsed
    assert Reference.coerce("localhost:5000/a/b:1") == parsed
    assert Reference.coerce(parsed.with_digest(DIGEST), repository=True) == Reference("localhost:5000", "a/b")
    assert Reference.coerce("localhost:5000/a/b", repository=True) == Reference("localhost:5000", "a/b")
    with pytest.raises(InvalidReferenceError, match="without tag or digest"):
        Reference.coerce("localhost:5000/a/b:1", repository=True)


@given(st.text(max_size=300))
def test_parse_never_crashes(text):
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError as exc:
        assert str(exc)
    else:
        assert Reference.parse(str(ref)) == ref
