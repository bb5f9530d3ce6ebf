"""ocimodel: machine learning models as signed, versioned artifacts in any OCI registry.

The Python verbs mirror the CLI: :func:`push`, :func:`pull`, :func:`inspect`, :func:`tags`,
:func:`sign`, :func:`verify`, :func:`verify_blob`, :func:`keygen`.
Imports are lazy so that ``import ocimodel`` (and ``ocimodel --help``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "push": "ocimodel.api",
    "pull": "ocimodel.api",
    "inspect": "ocimodel.api",
    "tags": "ocimodel.api",
    "login": "ocimodel.api",
    "logout": "ocimodel.api",
    "sign": "ocimodel.api",
    "verify": "ocimodel.api",
    "verify_blob": "ocimodel.api",
    "verify_bundle": "ocimodel.api",
    "keygen": "ocimodel.api",
    "SignResult": "ocimodel.api",
    "VerifyResult": "ocimodel.api",
    "VerificationPolicy": "ocimodel.api",
    "Client": "ocimodel.api",
    "PushResult": "ocimodel.api",
    "PullResult": "ocimodel.api",
    "InspectResult": "ocimodel.api",
    "Reference": "ocimodel.reference",
    "ModelConfig": "ocimodel.config",
    "RegistryClient": "ocimodel.registry.client",
    "Connection": "ocimodel.registry.connection",
    "OcimodelError": "ocimodel.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .api import (
        Client,
        InspectResult,
        PullResult,
        PushResult,
        SignResult,
        VerificationPolicy,
        VerifyResult,
        inspect,
        keygen,
        login,
        logout,
        pull,
        push,
        sign,
        tags,
        verify,
        verify_blob,
        verify_bundle,
    )
    from .config import ModelConfig
    from .errors import OcimodelError
    from .reference import Reference
    from .registry.client import RegistryClient
    from .registry.connection import Connection


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimodel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
