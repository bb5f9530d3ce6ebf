"""ocimodel: machine learning models as signed, versioned artifacts in any OCI registry.

The Python verbs mirror the CLI: :func:`push`, :func:`pull`, :func:`copy`, :func:`inspect`, :func:`tags`,
:func:`scan`, :func:`sign`, :func:`verify`, :func:`verify_blob`, :func:`keygen`,
:func:`promote`, :func:`rollback`, :func:`stages`, :func:`history`, :func:`delete`,
:func:`lineage`, :func:`list_models` (``list``), :func:`login`, :func:`logout`; :class:`Client` keeps a session for many calls
and :class:`Connection` says how to reach registries. Everything here is imported on first
use (one table, below), so ``import ocimodel`` and ``ocimodel --help`` stay fast.

No submodule or subpackage of ``ocimodel`` is named like a public name: importing one would
set the package attribute of that name to the module (``ocimodel.verify`` would stop being
the function). A test walks the tree to keep it so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> the module that defines it.
_LAZY = {
    # the verbs (ocimodel.api: one per CLI command)
    "push": "ocimodel.api",
    "pull": "ocimodel.api",
    "copy": "ocimodel.api",
    "inspect": "ocimodel.api",
    "tags": "ocimodel.api",
    "scan": "ocimodel.api",
    "sign": "ocimodel.api",
    "verify": "ocimodel.api",
    "verify_blob": "ocimodel.api",
    "keygen": "ocimodel.api",
    "promote": "ocimodel.api",
    "rollback": "ocimodel.api",
    "stages": "ocimodel.api",
    "history": "ocimodel.api",
    "delete": "ocimodel.api",
    "lineage": "ocimodel.api",
    "list_models": "ocimodel.api",
    "login": "ocimodel.api",
    "logout": "ocimodel.api",
    "verify_bundle": "ocimodel.signing.verify",
    # sessions, options and results
    "Client": "ocimodel.session",
    "Connection": "ocimodel.registry.connection",
    "RegistryClient": "ocimodel.registry.client",
    "RecordSigning": "ocimodel.session",
    "InspectResult": "ocimodel.session",
    "PushResult": "ocimodel.transfer.push",
    "PullResult": "ocimodel.transfer.pull",
    "CopyResult": "ocimodel.transfer.copy",
    "ModelRepository": "ocimodel.inventory",
    "SignResult": "ocimodel.provenance",
    "VerifyResult": "ocimodel.provenance",
    "VerificationPolicy": "ocimodel.signing.policy",
    "Reference": "ocimodel.reference",
    "ModelConfig": "ocimodel.config",
    "OcimodelError": "ocimodel.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .api import (
        copy,
        delete,
        history,
        inspect,
        keygen,
        lineage,
        list_models,
        login,
        logout,
        promote,
        pull,
        push,
        rollback,
        scan,
        sign,
        stages,
        tags,
        verify,
        verify_blob,
    )
    from .config import ModelConfig
    from .errors import OcimodelError
    from .inventory import ModelRepository
    from .provenance import SignResult, VerifyResult
    from .reference import Reference
    from .registry.client import RegistryClient
    from .registry.connection import Connection
    from .signing.policy import VerificationPolicy
    from .session import Client, InspectResult, RecordSigning
    from .signing.verify import verify_bundle
    from .transfer.copy import CopyResult
    from .transfer.pull import PullResult
    from .transfer.push import PushResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimodel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
