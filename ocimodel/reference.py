"""Parse and validate registry references (``host[:port]/repo[:tag][@sha256:hex]``).

Pure: no I/O. Follows the grammar of distribution/reference, with Docker Hub's
defaults (``docker.io``, ``library/``) so that ``ubuntu`` means what docker means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$"
)
_MAX_NAME = 255


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` + 64 lowercase hex, else raise."""
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(
            f"invalid digest {digest!r}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return digest


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag, else raise."""
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(
            f"invalid tag {tag!r}: use up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``tag`` and ``digest`` may both be set (the digest wins)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> "Reference":
        """Parse ``text``; a reference with neither tag nor digest gets ``default_tag``."""
        original = text
        if not text or text != text.strip():
            raise InvalidReferenceError(f"invalid reference {original!r}: empty or padded with spaces")
        if "://" in text:
            raise InvalidReferenceError(
                f"invalid reference {original!r}: drop the scheme, e.g. 'localhost:5000/repo:tag' "
                "(use --plain-http for http registries)"
            )
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            validate_digest(digest)
        tag = None
        last_slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > last_slash:
            text, tag = text[:colon], text[colon + 1 :]
            validate_tag(tag)
        first, sep, rest = text.partition("/")
        if sep and (("." in first) or (":" in first) or first == "localhost" or first.startswith("[")):
            registry, repository = first, rest
            if not _HOST_RE.fullmatch(registry):
                raise InvalidReferenceError(f"invalid reference {original!r}: bad registry host {registry!r}")
        else:
            registry, repository = DOCKER_HUB, text
            if "/" not in repository:
                repository = f"library/{repository}"
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
        if not repository or not _REPOSITORY_RE.fullmatch(repository):
            raise InvalidReferenceError(
                f"invalid reference {original!r}: repository {repository!r} must be lowercase "
                "path components of [a-z0-9] separated by '.', '_', '__' or '-'"
            )
        if len(registry) + 1 + len(repository) > _MAX_NAME:
            raise InvalidReferenceError(f"invalid reference {original!r}: name longer than {_MAX_NAME}")
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @classmethod
    def parse_repository(cls, text: str) -> "Reference":
        """Parse a repository (no tag or digest allowed), e.g. for ``tags REPO``."""
        ref = cls.parse(text, default_tag=None)
        if ref.tag or ref.digest:
            raise InvalidReferenceError(f"expected a repository without tag or digest, got {text!r}")
        return ref

    @classmethod
    def coerce(cls, value: "str | Reference", *, repository: bool = False) -> "Reference":
        """``value`` as a Reference: parsed if a string, else as given.

        With ``repository``, the repository only: a string must name no tag or digest
        (:meth:`parse_repository`), a Reference loses its tag and digest.
        """
        if isinstance(value, Reference):
            return replace(value, tag=None, digest=None) if repository else value
        return cls.parse_repository(value) if repository else cls.parse(value)

    @property
    def api_host(self) -> str:
        """The host to send HTTP requests to (Docker Hub's API host differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if known, else the tag."""
        ident = self.digest or self.tag
        if ident is None:
            raise InvalidReferenceError(f"reference {self} names no tag or digest")
        return ident

    def with_digest(self, digest: str) -> "Reference":
        """The same reference pinned to ``digest`` (tag kept for display)."""
        return replace(self, digest=validate_digest(digest))

    def with_tag(self, tag: str) -> "Reference":
        """The same repository at ``tag`` (any digest dropped)."""
        return replace(self, tag=validate_tag(tag), digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_registry_prefix(text: str) -> tuple[str, str]:
    """``REGISTRY[/PREFIX]`` (what ``list`` takes) as (registry host, repository prefix or "").

    The host must be spelled out (``localhost:5000``, ``ghcr.io``): unlike a reference, a
    bare ``name`` here cannot mean Docker Hub, whose catalog is closed anyway.
    """
    registry, _, prefix = text.strip().partition("/")
    prefix = prefix.rstrip("/")
    looks_like_host = "." in registry or ":" in registry or registry == "localhost" or registry.startswith("[")
    if not registry or not looks_like_host or not _HOST_RE.fullmatch(registry):
        raise InvalidReferenceError(
            f"invalid registry {text!r}: name its host, e.g. localhost:5000 or ghcr.io/acme (REGISTRY[/PREFIX])"
        )
    if prefix and not _REPOSITORY_RE.fullmatch(prefix):
        raise InvalidReferenceError(
            f"invalid repository prefix {prefix!r} in {text!r}: lowercase path components of [a-z0-9] "
            "separated by '.', '_', '__' or '-'"
        )
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    return registry, prefix
