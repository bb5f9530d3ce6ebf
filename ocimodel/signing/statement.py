"""The in-toto statement ocimodel signs, and the constants that name it.

A signature covers a DSSE envelope (payload type :data:`PAYLOAD_TYPE`) of an in-toto v1
statement whose subject is the repository with ``digest.sha256`` = the manifest digest and
whose predicate type is cosign's :data:`PREDICATE_TYPE`, as ``cosign sign`` writes it.
Statements are parsed with :mod:`json`, not sigstore's model: cosign writes subjects
without a ``name``, which sigstore's model refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ocimodel.errors import UsageError, VerificationError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: Media types of v0.3 bundles: the current one and the older alternate spelling.
BUNDLE_V03_MEDIA_TYPES = frozenset(
    {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(digest: str) -> str:
    """The hex part of ``sha256:<hex>`` (or of a bare hex digest); UsageError otherwise."""
    hex_part = digest.removeprefix("sha256:")
    if not _HEX64.fullmatch(hex_part):
        raise UsageError(f"not a sha256 digest: {digest!r}")
    return hex_part


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature actually signs."""
    header = f"DSSEv1 {len(payload_type)} {payload_type} {len(payload)} ".encode()
    return header + payload


def build_statement(
    repository: str, digest: str, annotations: Mapping[str, str] | None = None
) -> bytes:
    """The statement bytes that sign manifest ``digest`` of ``repository``.

    ``annotations`` go where ``cosign sign -a key=value`` puts them and ``cosign verify -a``
    looks for them: the subject's ``annotations``. The predicate is ``{}`` as cosign writes
    it. (Statements from before this placement carried them in ``predicate.annotations``;
    :func:`parse_statement` reads both.)
    """
    subject: dict[str, Any] = {"name": repository, "digest": {"sha256": sha256_hex(digest)}}
    if annotations:
        subject["annotations"] = dict(annotations)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {},
    }
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Statement:
    """What a verifier needs from a signed statement."""

    predicate_type: str
    subject_sha256: tuple[str, ...]
    predicate: dict[str, Any] = field(default_factory=dict)
    #: String annotations of the subjects (cosign ``-a``), else of the older
    #: ``predicate.annotations``; non-string values are dropped.
    annotations: dict[str, str] = field(default_factory=dict)


def parse_statement(payload: bytes) -> Statement:
    """Parse an in-toto v1 statement; VerificationError naming what is malformed."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"bad statement: not JSON ({exc})") from None
    except RecursionError:
        raise VerificationError("bad statement: JSON nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise VerificationError("bad statement: not an in-toto v1 statement")
    subjects = doc.get("subject")
    predicate_type = doc.get("predicateType")
    if not isinstance(subjects, list) or not isinstance(predicate_type, str):
        raise VerificationError("bad statement: missing subject or predicateType")
    digests = tuple(
        s["digest"]["sha256"]
        for s in subjects
        if isinstance(s, dict)
        and isinstance(s.get("digest"), dict)
        and isinstance(s["digest"].get("sha256"), str)
    )
    predicate = doc.get("predicate")
    predicate = predicate if isinstance(predicate, dict) else {}
    annotations: dict[str, str] = {}
    for holder in [predicate, *(s for s in subjects if isinstance(s, dict))]:
        found = holder.get("annotations")
        if isinstance(found, dict):
            annotations.update({k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)})
    return Statement(predicate_type, digests, predicate, annotations)
