"""TLS for registry connections: verified by default, the CA bundle loaded only when needed."""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path
from typing import Any

from ..errors import UsageError


class DeferredTrustContext(ssl.SSLContext):
    """httpx's default TLS trust, loaded at the first TLS connection instead of up front.

    The same trust as httpx's ``verify=True`` (``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else
    certifi's bundle), but loading the bundle costs ~25-35 ms, measured, of every command's
    start-up; a command that never opens a TLS connection (a plain-http registry, a usage
    error) need not pay it. Certificate and host name checks are on from the start
    (``PROTOCOL_TLS_CLIENT``), so nothing connects unverified.
    """

    _trust_lock: threading.Lock
    _trusted: bool

    def __new__(cls) -> "DeferredTrustContext":
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context._trust_lock = threading.Lock()
        context._trusted = False
        return context

    def load_trust(self) -> None:
        """Load the CA certificates now (idempotent, thread-safe)."""
        with self._trust_lock:
            if self._trusted:
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi  # httpx's own dependency

                self.load_verify_locations(cafile=certifi.where())
            self._trusted = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)


def ssl_verify(insecure: bool, ca_file: str | Path | None) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` gets: False with ``insecure``, a context trusting ``ca_file``
    (as well as nothing else), else the deferred default trust."""
    if insecure:
        return False
    if ca_file is None:
        return DeferredTrustContext()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {ca_file}: {exc}") from None
