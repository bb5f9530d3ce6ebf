"""The OCI distribution API (spec v1.1) endpoints: blobs, manifests, tags, referrers, ping.

Everything above this module works with :class:`~ocimodel.reference.Reference` and
:class:`~ocimodel.descriptor.Descriptor`; everything below it is httpx. Each method names its
operation and reads the answer; sending (auth, redirects, retries, timeouts, mirrors) is
:mod:`.transport`'s, reading blob bodies :mod:`.blobs`', uploading :mod:`.uploads`'. Every
failure leaves as an :mod:`ocimodel.errors` type with a one-line message. Content is checked
against its digest here (manifests, in-memory blobs) or by the caller's verifying writer or
reader (streamed blobs, see :mod:`ocimodel.storage`).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import httpx

from ..descriptor import (
    INDEX_V1,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    Index,
    check_digest,
    media_type_of,
    sha256_digest,
)
from ..errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    SchemaError,
    UnsafeContentError,
    UsageError,
)
from ..reference import DOCKER_HUB, DOCKER_HUB_API, Reference
from ..storage import FetchedManifest, ManifestPutResult
from .auth import repository_scope
from .blobs import BlobStream, blob_start, raise_read_size
from .connection import Connection
from .credentials import CredentialStore, normalise_host
from .mirrors import registry_key
from .retry import RetryPolicy, is_retryable_status
from .transport import BodyFactory, Operation, Transport, content_media_type
from .uploads import DEFAULT_CHUNK_SIZE, PIECE_SIZE, UploadBody, Uploads, split_pieces

if TYPE_CHECKING:
    from .catalog import CatalogLimits

ARTIFACT_MANIFEST_V1 = "application/vnd.oci.artifact.manifest.v1+json"
DEFAULT_MANIFEST_ACCEPT: tuple[str, ...] = MANIFEST_MEDIA_TYPES + (ARTIFACT_MANIFEST_V1,)
_MAX_TAGS_BODY = 64 * 1024 * 1024
_MAX_PAGES = 10_000
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?')


def next_link(response: httpx.Response) -> httpx.URL | None:
    """The ``rel="next"`` page of a paginated listing (relative to the response URL), or None."""
    match = _LINK_NEXT_RE.search(response.headers.get("link", ""))
    return response.url.join(match.group(1)) if match else None


class RegistryClient:
    """Blobs, manifests, tags and referrers over HTTP, with auth, retries and verification.

    ``connection`` says how to reach registries (scheme, TLS, timeouts, mirrors, which registry
    given credentials are for: see :class:`.Connection`); ``credentials`` overrides the store
    it implies (``login`` tests exactly the credentials it is given). Thread-safe for
    concurrent transfers. A mirror gets one attempt per request (no retries: the next source
    is the retry); one that cannot be reached or answers 5xx is skipped for a while.
    """

    def __init__(
        self,
        connection: Connection | None = None,
        *,
        credentials: CredentialStore | None = None,
        retry: RetryPolicy | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        connection = connection or Connection()
        raise_read_size()
        store = credentials if credentials is not None else connection.credential_store()
        self.transport = Transport(connection, store, retry or RetryPolicy(), event_hooks)
        self.uploads = Uploads(self.transport, chunk_size)
        self._no_streamed_uploads: set[str] = set()  # registries that refused push_blob_streamed

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy every request runs under (a resumed download too)."""
        return self.transport.retry

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs ------------------------------------------------------------------------------

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        """True if the registry itself has the blob (HEAD; never a mirror: it decides uploads)."""
        return self._head_blob(ref, digest, self.transport.op(ref, "HEAD", f"blob {digest} in {ref.repository}", "pull"))

    def _head_blob(self, ref: Reference, digest: str, op: Operation) -> bool:
        with self.transport.open("HEAD", self.transport.url(op, ref, "blobs", digest), op) as response:
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self.transport.error(response, op)

    def push_blob(
        self,
        ref: Reference,
        descriptor: Descriptor,
        open_chunks: BodyFactory,
        *,
        progress: Callable[[int], None] | None = None,
        mount_from: str | None = None,
        chunked: bool = False,
        checked: bool = False,
    ) -> bool:
        """Upload a blob unless present; False if it was already there, True if uploaded or mounted.

        ``open_chunks()`` must return a fresh iterable over the whole content each call (a retry
        reopens it). ``mount_from`` names another repository on the same registry to mount the
        blob from. ``chunked`` forces the PATCH upload, otherwise only a fallback for registries
        that refuse the monolithic PUT. ``checked``: the caller already knows the registry lacks
        the blob, so no HEAD (a wrong guess only costs the bytes: uploading a present blob is allowed).
        """
        actions = [repository_scope(ref.repository, "pull", "push")]
        if mount_from:
            actions.append(repository_scope(mount_from, "pull"))
        op = self.transport.op(ref, "push", f"blob {descriptor.digest} to {ref.repository}", scopes=actions)
        # HEAD with the push scopes: one token serves the whole upload.
        if not checked and self._head_blob(ref, descriptor.digest, op):
            return False
        body = UploadBody(open_chunks, descriptor.size, f"blob {descriptor.digest}", progress)
        self.transport.retry.run(lambda: self.uploads.upload(ref, descriptor, body, op, mount_from, chunked))
        return True

    def blob_exists_for_push(self, ref: Reference, digest: str) -> bool:
        """:meth:`blob_exists` asked with the push scopes (the token the uploads will reuse)."""
        op = self.transport.op(ref, "HEAD", f"blob {digest} in {ref.repository}", "pull", "push")
        return self._head_blob(ref, digest, op)

    def streams_uploads(self, registry: str) -> bool:
        """False once a streamed upload to ``registry`` failed (see :meth:`push_blob_streamed`)."""
        return registry_key(registry) not in self._no_streamed_uploads

    def stop_streaming_uploads(self, registry: str) -> None:
        """Use only hash-then-upload with ``registry`` from now on (it refused a streamed upload)."""
        self._no_streamed_uploads.add(registry_key(registry))

    def mount_blob(self, ref: Reference, digest: str, from_repository: str) -> bool:
        """Mount blob ``digest`` from another repository of the same registry; True if mounted.

        A registry that declines (no such blob there, no permission, no mount support) answers
        with an upload session instead, which is cancelled: False.
        """
        scopes = [repository_scope(ref.repository, "pull", "push"), repository_scope(from_repository, "pull")]
        op = self.transport.op(ref, "mount", f"blob {digest} from {from_repository} to {ref.repository}", scopes=scopes)
        session = self.transport.retry.run(lambda: self.uploads.start(ref, digest, op, from_repository))
        if session is None:
            return True
        self.uploads.cancel(session, op)
        return False

    def push_blob_streamed(
        self,
        ref: Reference,
        size: int,
        open_chunks: BodyFactory,
        decision: "Future[str | None]",
        *,
        what: str = "blob",
        progress: Callable[[int], None] | None = None,
    ) -> str | None:
        """Upload ``size`` bytes whose digest is still being computed; returns it, or None.

        See :meth:`.uploads.Uploads.streamed`: ``decision`` resolves elsewhere to the digest
        (the upload is committed) or to None (abandoned); :class:`~.uploads.StreamedUploadFailed`
        when the registry does not take it, and nothing is committed.
        """
        op = self.transport.op(ref, "push", f"{what} to {ref.repository}", scopes=[repository_scope(ref.repository, "pull", "push")])
        return self.uploads.streamed(ref, op, size, open_chunks, decision, what, progress)

    def push_blob_bytes(self, ref: Reference, media_type: str, data: bytes, *, checked: bool = False) -> Descriptor:
        """Upload a small in-memory blob (a config, say); returns its descriptor. ``checked``: as
        for :meth:`push_blob` (no HEAD first)."""
        descriptor = Descriptor.from_bytes(media_type, data)
        self.push_blob(ref, descriptor, lambda: (data,), checked=checked)
        return descriptor

    @contextmanager
    def open_blob(
        self, ref: Reference, descriptor: Descriptor, *, offset: int = 0, retry: bool = True
    ) -> Iterator[BlobStream]:
        """Open a blob for streaming from ``offset``; the caller verifies the digest.

        ``retry=False`` lets a caller that retries the whole download (resuming it) own the
        retry policy, instead of nesting two retry loops.

        With mirrors, the first source that answers serves the blob. A whole blob from a mirror
        is verified here too (see :class:`BlobStream`); once a mirror has served wrong bytes for
        a digest, a resumed read of it starts again from byte 0 (``offset`` 0 in the stream),
        since the caller's prefix may hold the mirror's bad bytes.
        """
        if offset < 0 or (offset and offset >= descriptor.size):
            raise UsageError(f"cannot resume blob {descriptor.digest} at byte {offset} of {descriptor.size}")
        if offset and self.transport.health.any_served_badly(descriptor.digest):
            offset = 0
        with ExitStack() as keep:

            def start(op: Operation) -> BlobStream:
                return keep.enter_context(self._open_blob(ref, descriptor, offset, op, retry))

            yield self.transport.read(ref, "GET", f"blob {descriptor.digest} in {ref.repository}", start, descriptor.digest)

    @contextmanager
    def _open_blob(
        self, ref: Reference, descriptor: Descriptor, offset: int, op: Operation, retry: bool, *, stream_check: bool = True
    ) -> Iterator[BlobStream]:
        """Open the blob on one source; ``stream_check``: a mirror's whole blob is verified as it streams."""
        # identity: iter_raw hands us the wire bytes, which must be the blob's own bytes.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self.transport.url(op, ref, "blobs", descriptor.digest)
        with self.transport.open("GET", url, op, headers=headers, retry=retry) as response:
            start = blob_start(self.transport, response, descriptor, offset, op)
            on_bad = None
            if stream_check and op.mirror is not None and start == 0 and descriptor.digest.startswith("sha256:"):
                on_bad = partial(self.transport.health.served_badly, op.mirror, descriptor.digest)
            yield BlobStream(response, descriptor, start, op, on_bad)

    def fetch_blob_bytes(self, ref: Reference, descriptor: Descriptor, *, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        """Download a small blob into memory, verifying size and digest."""
        if descriptor.size > max_size:
            raise UnsafeContentError(
                f"blob {descriptor.digest} declares {descriptor.size} bytes, over the {max_size}-byte "
                "limit for in-memory blobs; refusing it"
            )

        def fetch(op: Operation) -> bytes:
            with self._open_blob(ref, descriptor, 0, op, True, stream_check=False) as stream:
                data = b"".join(stream.chunks())
            source = f"mirror {op.host}" if op.mirror else ref.name
            check_digest(data, descriptor.digest, f"blob {descriptor.digest} from {source}")
            return data

        return self.transport.read(ref, "GET", f"blob {descriptor.digest} in {ref.repository}", fetch, descriptor.digest)

    # -- manifests --------------------------------------------------------------------------

    def get_manifest(self, ref: Reference, accept: Sequence[str] = DEFAULT_MANIFEST_ACCEPT) -> FetchedManifest:
        """Fetch a manifest by tag or digest, keeping its bytes exactly; digest verified.

        Through a mirror, a tag resolves to whatever the mirror has cached for it: pin by digest
        to trust no mirror with tags.
        """
        noun = f"manifest {ref.repository}:{ref.identifier}"
        return self.transport.read(ref, "GET", noun, partial(self._get_manifest, ref, accept), ref.digest)

    def _get_manifest(self, ref: Reference, accept: Sequence[str], op: Operation) -> FetchedManifest:
        headers = {"Accept": ", ".join(accept)}
        with self.transport.open("GET", self.transport.url(op, ref, "manifests", ref.identifier), op, headers=headers) as response:
            if response.status_code != 200:
                raise self.transport.error(response, op)
            announced_type = content_media_type(response.headers.get("content-type"))
            if announced_type is not None and announced_type not in DEFAULT_MANIFEST_ACCEPT:
                raise SchemaError(
                    f"registry {op.host} served manifest {ref} as {announced_type!r}, not a manifest media type; "
                    "refusing it"
                )
            raw = self._read_manifest(response, op)
            digest = sha256_digest(raw)
            what = f"manifest {ref} from {op.host}"
            if ref.digest:
                check_digest(raw, ref.digest, what)
            else:
                announced = response.headers.get("docker-content-digest", "")
                if announced.startswith("sha256:") and announced != digest:
                    raise DigestMismatchError(
                        f"{what}: digest mismatch (registry says {announced}, bytes are {digest}); refusing it"
                    )
            declared = media_type_of(raw)
            if announced_type and declared and declared != announced_type:
                raise SchemaError(
                    f"manifest {ref} from {op.host} is served as {announced_type!r} but declares "
                    f"{declared!r}; refusing it"
                )
            media_type = announced_type or declared or ""
            return FetchedManifest(raw=raw, media_type=media_type, digest=digest)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The manifest's descriptor (HEAD), or None if the tag or digest is unknown."""
        noun = f"manifest {ref.repository}:{ref.identifier}"
        try:
            return self.transport.read(ref, "HEAD", noun, partial(self._head_manifest, ref), ref.digest)
        except NotFoundError:
            return None

    def _head_manifest(self, ref: Reference, op: Operation) -> Descriptor:
        headers = {"Accept": ", ".join(DEFAULT_MANIFEST_ACCEPT)}
        with self.transport.open("HEAD", self.transport.url(op, ref, "manifests", ref.identifier), op, headers=headers) as response:
            if response.status_code != 200:
                raise self.transport.error(response, op)
            digest = response.headers.get("docker-content-digest", "")
            length = response.headers.get("content-length", "")
            media_type = content_media_type(response.headers.get("content-type"))
        if not (digest.startswith("sha256:") and length.isdigit() and media_type):
            # Not every registry answers HEAD fully: fall back to a (verified) GET.
            fetched = self._get_manifest(ref, DEFAULT_MANIFEST_ACCEPT, replace(op, verb="GET"))
            return Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw))
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"manifest {ref} from {op.host}: registry answered for digest {digest}")
        return Descriptor(media_type=media_type, digest=digest, size=int(length))

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> str:
        """Store a manifest under the reference's tag (or digest); returns its digest."""
        return self.put_manifest_result(ref, raw, media_type).digest

    def put_manifest_result(self, ref: Reference, raw: bytes, media_type: str) -> ManifestPutResult:
        """Like :meth:`put_manifest`, also reporting the ``OCI-Subject`` header."""
        digest = sha256_digest(raw)
        if ref.digest and ref.digest != digest:
            raise DigestMismatchError(f"manifest for {ref}: its bytes have digest {digest}, not {ref.digest}")
        op = self.transport.op(ref, "PUT", f"manifest {ref.repository}:{ref.identifier}", "pull", "push")
        headers = {"Content-Type": media_type, "Content-Length": str(len(raw))}
        url = self.transport.url(op, ref, "manifests", ref.identifier)
        with self.transport.open("PUT", url, op, headers=headers, body=lambda: split_pieces((raw,), PIECE_SIZE)) as response:
            if response.status_code in (200, 201):
                stored = response.headers.get("docker-content-digest", "")
                if stored.startswith("sha256:") and stored != digest:
                    raise DigestMismatchError(f"registry {op.host} stored manifest {ref} as {stored}, not {digest}")
                return ManifestPutResult(digest=digest, subject=response.headers.get("oci-subject"))
            error = self.transport.error(response, op)
        if response.status_code == 413 or (error.code == "MANIFEST_INVALID" and len(raw) > MAX_MANIFEST_SIZE):
            raise RegistryError(
                f"registry {op.host} refused manifest {ref}: {len(raw)} bytes is over its size limit "
                "(4 MiB is the usual maximum); use fewer layers or shorter annotations",
                status=response.status_code,
                code=error.code,
            )
        raise error

    def delete_manifest(self, ref: Reference) -> None:
        """Delete a manifest by digest (tags pointing at it go too)."""
        if not ref.digest:
            raise UsageError(f"deleting needs a digest, got {ref}: resolve the tag first")
        refused = (
            f"registry {ref.api_host} has deletion disabled, so {ref} stays; ask its operator to enable it "
            "(distribution: storage.delete.enabled: true)"
        )
        self._delete(ref, ref.digest, f"manifest {ref.repository}@{ref.digest}", ("UNSUPPORTED",), refused)

    def _delete(self, ref: Reference, identifier: str, noun: str, refusals: tuple[str, ...], refused: str) -> None:
        """DELETE ``manifests/<identifier>``; a 405 or an error code in ``refusals`` raises
        RegistryError(``refused``) keeping the registry's status and code."""
        op = self.transport.op(ref, "DELETE", noun, "delete")
        with self.transport.open("DELETE", self.transport.url(op, ref, "manifests", identifier), op) as response:
            if response.status_code in (200, 202):
                return
            error = self.transport.error(response, op)
        if response.status_code == 405 or error.code in refusals:
            raise RegistryError(refused, status=response.status_code, code=error.code, origin=f"registry {ref.registry}")
        raise error

    # -- tags and referrers -----------------------------------------------------------------

    def delete_tag(self, ref: Reference) -> None:
        """Delete just the tag ``ref.tag`` (``DELETE /v2/<name>/manifests/<tag>``, spec 1.1).

        Many registries delete manifests by digest only and refuse this: distribution 2.8.2
        answers 400 DIGEST_INVALID, others 405 or UNSUPPORTED. The RegistryError raised then
        keeps the registry's ``status`` and ``code`` so callers can offer the digest instead.
        """
        if not ref.tag:
            raise UsageError(f"deleting a tag needs a tag, got {ref}")
        refused = f"registry {ref.api_host} cannot delete the tag {ref.tag} alone (it deletes manifests by digest only)"
        self._delete(ref, ref.tag, f"tag {ref.repository}:{ref.tag}", ("UNSUPPORTED", "DIGEST_INVALID"), refused)

    def list_tags(self, ref: Reference, *, page_size: int = 1000) -> list[str]:
        """All tags of the repository, sorted (registries may page and may not sort)."""
        return self.transport.read(ref, "GET", f"tags of {ref.repository}", partial(self._list_tags, ref, page_size))

    def _list_tags(self, ref: Reference, page_size: int, op: Operation) -> list[str]:
        url: httpx.URL | None = self.transport.url(op, ref, "tags", "list").copy_merge_params({"n": page_size})
        tags: set[str] = set()
        for _ in range(_MAX_PAGES):
            if url is None:
                return sorted(tags)
            with self.transport.open("GET", url, op) as response:
                if response.status_code != 200:
                    raise self.transport.error(response, op)
                body = self.transport.read_bounded(response, _MAX_TAGS_BODY, op)
                url = next_link(response)
            try:
                page = json.loads(body).get("tags") or []
                if not isinstance(page, list):
                    raise ValueError("tags is not a list")
            except (ValueError, AttributeError, RecursionError):
                raise SchemaError(f"registry {op.host} sent a malformed tag list for {ref.repository}") from None
            tags.update(tag for tag in page if isinstance(tag, str))
        raise RegistryError(f"registry {op.host} kept paging tags of {ref.repository} past {_MAX_PAGES} pages")

    def referrers(self, ref: Reference, subject_digest: str) -> list[Descriptor] | None:
        """Manifests whose subject is ``subject_digest``, or None if the referrers API is missing.

        None tells the caller to use the ``sha256-<hex>`` fallback tag instead. A mirror without
        the API counts as failing (the next source is asked); only the registry's answer is final.
        """

        def ask(op: Operation) -> list[Descriptor] | None:
            found = self._referrers(ref, subject_digest, op)
            if found is None and op.mirror is not None:
                raise NotFoundError(f"mirror {op.host} has no referrers API")
            return found

        return self.transport.read(ref, "GET", f"referrers of {subject_digest} in {ref.repository}", ask)

    def _referrers(self, ref: Reference, subject_digest: str, op: Operation) -> list[Descriptor] | None:
        url: httpx.URL | None = self.transport.url(op, ref, "referrers", subject_digest)
        found: list[Descriptor] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                return found
            with self.transport.open("GET", url, op, headers={"Accept": INDEX_V1}) as response:
                if response.status_code in (401, 403) or is_retryable_status(response.status_code):
                    raise self.transport.error(response, op)
                if response.status_code != 200 or content_media_type(response.headers.get("content-type")) != INDEX_V1:
                    return None
                raw = self._read_manifest(response, op)
                url = next_link(response)
            found.extend(Index.parse(raw, f"referrers of {subject_digest} from {op.host}").manifests)
        raise RegistryError(f"registry {op.host} kept paging referrers past {_MAX_PAGES} pages")

    def catalog(self, registry: str, prefix: str = "", limits: "CatalogLimits | None" = None) -> list[str]:
        """The repositories of ``registry`` under ``prefix``, sorted (``GET /v2/_catalog``, paged);
        see :func:`.catalog.list_repositories` for the limits and the refusals."""
        from .catalog import list_repositories

        return list_repositories(self.transport, registry, prefix, limits)

    def ping(self, registry: str) -> None:
        """Check the registry answers and accepts our credentials (for ``login``)."""
        host = normalise_host(registry)
        api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        op = Operation("GET", "the API root /v2/", api_host, scheme=self.transport.scheme)
        with self.transport.open("GET", httpx.URL(f"{self.transport.scheme}://{api_host}/v2/"), op) as response:
            if response.status_code == 200:
                return
            if response.status_code == 404:
                raise NotFoundError(f"{api_host} does not serve the registry API at /v2/: is it an OCI registry?", 404)
            raise self.transport.error(response, op)

    def _read_manifest(self, response: httpx.Response, op: Operation) -> bytes:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
            raise SchemaError(f"{op.noun} from {op.host} is {length} bytes, over the 4 MiB limit; refusing it")
        return self.transport.read_bounded(response, MAX_MANIFEST_SIZE, op)
