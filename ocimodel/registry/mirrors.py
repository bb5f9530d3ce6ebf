"""Registry mirrors: pull-through caches that reads try before the registry itself.

The semantics are containerd's ``hosts.toml`` mirrors, kept small:

- a mirror is configured per registry name, as in a reference (``docker.io``, ``ghcr.io``,
  ``127.0.0.1:5000``); several mirrors are tried in the order given, then the registry;
- only reads go to mirrors (GET/HEAD of manifests and blobs, tag lists, referrers); uploads,
  manifest PUTs and DELETEs always go to the registry itself;
- a mirror that fails in any way (connection error, timeout, 5xx, 401/403/404, or content that
  does not verify) is skipped for that read, and the next source is tried; the registry's own
  answer is final. Digests are checked whatever served the bytes;
- a mirror only ever gets its own credentials (from the docker config, keyed by the mirror's
  host), never the registry's, nor ``OCIMODEL_USERNAME``/``OCIMODEL_PASSWORD``.

A mirror URL is ``http[s]://host[:port][/path]``: the scheme decides http or https for that
mirror (independently of ``--plain-http``), and an optional path is put before ``/v2/`` (a
trailing ``/v2`` is accepted and dropped). Like containerd, requests to a mirror carry
``?ns=<registry>`` so a mirror serving several registries (Spegel, Dragonfly) knows which one
is meant; distribution and Harbor ignore it. Schemes that rewrite the repository name (Harbor's
proxy-cache projects, ``/v2/<project>/<repo>``) are not supported.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import httpx

from ..errors import InvalidReferenceError, UsageError
from ..reference import DOCKER_HUB, Reference

logger = logging.getLogger(__name__)

MIRROR_ENV = "OCIMODEL_MIRROR"
MIRROR_COOLDOWN = 30.0  # seconds a mirror that could not be reached (or answered 5xx) is skipped
_SEPARATORS = re.compile(r"[\s,]+")
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Mirror:
    """One mirror's base URL, split: ``scheme://host`` + ``prefix`` + ``/v2/...``."""

    scheme: str
    host: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> "Mirror":
        """Parse and check a mirror URL; UsageError says what is wrong."""
        what = f"mirror URL {url!r}"
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"{what}: use http://host[:port] or https://host[:port]")
        if "@" in parts.netloc:
            raise UsageError(f"{what}: no credentials in the URL; use 'ocimodel login' for the mirror's host")
        if parts.query or parts.fragment:
            raise UsageError(f"{what}: no query or fragment allowed")
        try:
            parts.port  # noqa: B018 - validates the port
            # As httpx spells it (lowercase, default port dropped), so Authorization matching works.
            host = httpx.URL(f"{parts.scheme}://{parts.netloc}/").netloc.decode("ascii")
        except (ValueError, httpx.InvalidURL):
            raise UsageError(f"{what}: bad host or port") from None
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v2"):
            prefix = prefix[: -len("/v2")]
        return cls(scheme=parts.scheme, host=host, prefix=prefix)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}{self.prefix}"


def registry_key(name: str) -> str:
    """A registry name as :class:`Reference` spells it (lowercase, Docker Hub as ``docker.io``)."""
    key = name.strip().lower()
    return DOCKER_HUB if key in _HUB_ALIASES else key


def _check_registry(name: str, entry: str) -> str:
    key = registry_key(name)
    problem = "expected REGISTRY=URL, e.g. docker.io=https://mirror.local"
    if not key or "://" in key or "/" in key:
        raise UsageError(f"bad mirror {entry!r}: {problem} (the registry is a name such as ghcr.io, not a URL)")
    try:
        parsed = Reference.parse(f"{key}/x")
    except InvalidReferenceError:
        parsed = None
    if parsed is None or parsed.registry != key:
        raise UsageError(f"bad mirror {entry!r}: {key!r} is not a registry name (a host with a dot or a port)")
    return key


def parse_mirrors(values: Sequence[str]) -> dict[str, list[str]]:
    """``REGISTRY=URL`` strings to ``{registry: [url, ...]}``, in order, duplicates dropped.

    Each value may hold several entries separated by commas or whitespace (how
    ``OCIMODEL_MIRROR`` lists them): ``"docker.io=http://127.0.0.1:5001 ghcr.io=https://m.local"``.
    Every URL is checked here, so a typo fails before anything is fetched.
    """
    mirrors: dict[str, list[str]] = {}
    for value in values:
        for entry in _SEPARATORS.split(value.strip()):
            if not entry:
                continue
            name, sep, url = entry.partition("=")
            if not sep or not name or not url:
                raise UsageError(f"bad mirror {entry!r}: expected REGISTRY=URL, e.g. docker.io=https://mirror.local")
            key = _check_registry(name, entry)
            text = str(Mirror.parse(url))
            if text not in mirrors.setdefault(key, []):
                mirrors[key].append(text)
    return mirrors


def resolve_mirrors(mirrors: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[Mirror, ...]]:
    """The client's table: registry key → parsed mirrors (checked like :func:`parse_mirrors`)."""
    table: dict[str, tuple[Mirror, ...]] = {}
    for name, urls in (mirrors or {}).items():
        if isinstance(urls, str):
            raise UsageError(f"mirrors for {name!r} must be a list of URLs, not one string")
        key = _check_registry(name, name)
        parsed = [Mirror.parse(url) for url in urls]
        table[key] = tuple(dict.fromkeys(table.get(key, ()) + tuple(parsed)))
    return {key: found for key, found in table.items() if found}


class MirrorHealth:
    """Which mirrors to skip, shared by a client's threads: one that could not be reached or
    failed (5xx, 429, too slow) is skipped for :data:`MIRROR_COOLDOWN` seconds; one that served
    wrong bytes for a digest is never asked for that digest again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[Mirror, float] = {}  # mirror -> monotonic time to try it again
        self._bad: set[tuple[Mirror, str]] = set()  # (mirror, digest) that failed verification

    def usable(self, mirror: Mirror, digest: str | None) -> bool:
        """Whether to ask ``mirror`` (for content ``digest``, if known) now."""
        with self._lock:
            if digest and (mirror, digest) in self._bad:
                return False
            return self._down.get(mirror, 0.0) <= time.monotonic()

    def cool_down(self, mirror: Mirror) -> None:
        """Skip ``mirror`` for a while instead of waiting on it at every read."""
        with self._lock:
            self._down[mirror] = time.monotonic() + MIRROR_COOLDOWN

    def served_badly(self, mirror: Mirror, digest: str, fault: str) -> None:
        """``mirror`` served ``digest`` wrong (``fault`` says how): never ask it for that digest again."""
        logger.warning("mirror %s served blob %s %s; using the next source", mirror, digest, fault)
        with self._lock:
            self._bad.add((mirror, digest))

    def any_served_badly(self, digest: str) -> bool:
        """Whether some mirror served ``digest`` wrong (a resumed read must then start over)."""
        with self._lock:
            return any(bad == digest for _, bad in self._bad)
