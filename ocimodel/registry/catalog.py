"""The catalog endpoint (``GET /v2/_catalog``): which repositories a registry holds.

Paged with ``n`` and ``Link: <...>; rel="next"`` (distribution also accepts ``last``). The
catalog is optional in the distribution spec and most hosted registries close it (Docker Hub,
GHCR, ECR answer 401, 403 or 404): :class:`CatalogUnavailable` says so in one line. Every
page is hostile input: its size, its JSON, its types and names, the number of pages and of
repositories are bounded, and a ``next`` link may not leave the registry (the token that
reads the catalog is for it alone) nor come back to a page already read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from ..errors import AuthError, InvalidReferenceError, NotFoundError, RegistryError, SchemaError
from ..reference import DOCKER_HUB, DOCKER_HUB_API, Reference
from .client import next_link
from .transport import Operation, Transport

#: One page of names: 1000 names of 255 bytes, with room to spare.
MAX_PAGE_BYTES = 1024 * 1024
PAGE_SIZE = 1000
MAX_PAGES = 100
MAX_REPOSITORIES = 100_000
CATALOG_SCOPE = "registry:catalog:*"


class CatalogUnavailable(RegistryError):
    """The registry does not let this client list its repositories (disabled or forbidden)."""


class CatalogForbidden(CatalogUnavailable, AuthError):
    """401 or 403 on the catalog: closed to anonymous users, or to these credentials."""


class CatalogMissing(CatalogUnavailable, NotFoundError):
    """404, 405 or ``UNSUPPORTED``: the registry has no catalog API."""


@dataclass(frozen=True)
class CatalogLimits:
    """How much of a catalog is read before refusing (hostile registries page forever)."""

    page_size: int = PAGE_SIZE
    max_pages: int = MAX_PAGES
    max_repositories: int = MAX_REPOSITORIES
    max_page_bytes: int = MAX_PAGE_BYTES


def _same_origin(url: httpx.URL, first: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (first.scheme, first.host, first.port)


def _names(body: bytes, host: str) -> list[str]:
    """The ``repositories`` of one page; SchemaError for anything but a list of repository names."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise SchemaError(f"registry {host} sent a catalog page that is not JSON (or is nested too deeply); refusing it") from None
    names = document.get("repositories") if isinstance(document, dict) else None
    if names is None and isinstance(document, dict) and "repositories" in document:
        names = []  # distribution sends null for an empty registry
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SchemaError(
            f"registry {host} sent a catalog page without a list of repository names (\"repositories\"); refusing it"
        )
    for name in names:
        try:
            Reference.parse_repository(f"{host}/{name}")
        except InvalidReferenceError:
            shown = name[:80] + ("..." if len(name) > 80 else "")
            raise SchemaError(f"registry {host} listed {shown!r}, which is not a repository name; refusing its catalog") from None
    return names


def _refusal(status: int, code: str | None, host: str, detail: str) -> CatalogUnavailable:
    hint = "name the repositories instead: 'ocimodel tags REGISTRY/REPO', 'ocimodel stages REGISTRY/REPO'"
    if status in (401, 403):
        return CatalogForbidden(
            f"registry {host} does not let {detail} list its repositories (catalog API answered {status}"
            f"{' ' + code if code else ''}); log in with an account allowed to, or {hint}", status, code)
    return CatalogMissing(
        f"registry {host} has no catalog API (/v2/_catalog answered {status}{' ' + code if code else ''}): {hint}",
        status, code)


def list_repositories(
    transport: Transport, registry: str, prefix: str = "", limits: CatalogLimits | None = None
) -> list[str]:
    """Every repository of ``registry`` (sorted) equal to ``prefix`` or below ``prefix/``.

    Raises :class:`CatalogUnavailable` where the catalog is closed, SchemaError for a hostile
    page (not JSON, wrong types, an invalid name, over a limit, a next link off the registry
    or back to a page already read), RegistryError past ``max_pages``/``max_repositories``.
    """
    limits = limits or CatalogLimits()
    api_host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    op = Operation("GET", "the repository catalog", api_host, (CATALOG_SCOPE,), transport.scheme)
    first = httpx.URL(f"{transport.scheme}://{api_host}/v2/_catalog").copy_merge_params({"n": limits.page_size})
    url: httpx.URL | None = first
    seen: set[str] = set()
    found: set[str] = set()
    for _ in range(limits.max_pages):
        if url is None:
            wanted = [n for n in found if not prefix or n == prefix or n.startswith(prefix + "/")]
            return sorted(wanted)
        if not _same_origin(url, first) or str(url) in seen:
            why = "to another host" if not _same_origin(url, first) else "back to a page already read"
            raise SchemaError(f"registry {api_host} sent a catalog 'next' link {why}; refusing it")
        seen.add(str(url))
        with transport.open("GET", url, op) as response:
            if response.status_code != 200:
                error = transport.error(response, op)
                if response.status_code in (401, 403, 404, 405) or error.code == "UNSUPPORTED":
                    has = transport.auth_for(op).has_credentials(api_host)
                    raise _refusal(response.status_code, error.code, api_host,
                                   "these credentials" if has else "anonymous users") from None
                raise error
            body = transport.read_bounded(response, limits.max_page_bytes, op)
            url = next_link(response)
        found.update(_names(body, api_host))
        if len(found) > limits.max_repositories:
            raise RegistryError(
                f"registry {api_host} lists more than {limits.max_repositories} repositories; refusing to read on "
                "(name a narrower REGISTRY/PREFIX? the catalog API cannot filter: ask per repository)")
    raise RegistryError(f"registry {api_host} kept paging its catalog past {limits.max_pages} pages; refusing to read on")
