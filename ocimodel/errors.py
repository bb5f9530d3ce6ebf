"""Errors ocimodel raises, each carrying a one-line diagnostic meant for a person.

Every error a user can cause (bad reference, wrong password, tampered blob...) is an
:class:`OcimodelError`; the CLI prints ``str(err)`` on one line and exits with
``err.exit_code``. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes, distinct per failure class (documented in README)."""

    OK = 0
    ERROR = 1  # generic / unexpected
    USAGE = 2  # bad arguments, bad reference, bad config
    AUTH = 3  # authentication or authorization failure
    NOT_FOUND = 4  # repository, tag, manifest or blob missing
    VERIFICATION = 5  # signature / policy verification failed
    INTEGRITY = 6  # digest or size mismatch, hostile content
    NETWORK = 7  # connection failures, timeouts, 5xx after retries


class OcimodelError(Exception):
    """Base class: a failure with a message fit to show a user as is."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(OcimodelError):
    """Invalid input from the user: arguments, files, configuration."""

    exit_code = ExitCode.USAGE


class InvalidReferenceError(UsageError):
    """A reference string that cannot be parsed."""


class RegistryError(OcimodelError):
    """The registry (or another store) answered with an error (the OCI error body, summarised).

    ``status`` and ``code`` are the HTTP status and OCI error code when known; ``origin`` names
    who refused, for messages built elsewhere (``registry ghcr.io``).
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None, origin: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.origin = origin


class AuthError(RegistryError):
    """Credentials missing, wrong, or insufficient."""

    exit_code = ExitCode.AUTH


class NotFoundError(RegistryError):
    """Repository, manifest, tag or blob unknown to the registry."""

    exit_code = ExitCode.NOT_FOUND


class NetworkError(OcimodelError):
    """The registry could not be reached (after retries)."""

    exit_code = ExitCode.NETWORK


class TransferInterrupted(NetworkError):
    """The connection broke in the middle of a blob body; ``position`` bytes had arrived.

    Distinct from other network errors so a download can resume with ``Range`` from there.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class StalledError(OcimodelError):
    """The registry sends a body so slowly that it would never finish (a trickle, not a cut).

    Exit code of a network failure, but deliberately not a :class:`NetworkError`: those get
    retried and resumed, and resuming a server that trickles only repeats the wait.
    """

    exit_code = ExitCode.NETWORK


class IntegrityError(OcimodelError):
    """Content does not match what its descriptor promises, or is hostile."""

    exit_code = ExitCode.INTEGRITY


class DigestMismatchError(IntegrityError):
    """Bytes whose sha256 is not the digest that named them."""


class SizeMismatchError(IntegrityError):
    """Bytes longer or shorter than the size their descriptor declares."""


class UnsafeContentError(IntegrityError):
    """An artifact that would write outside its destination, or is otherwise hostile."""


class SchemaError(IntegrityError):
    """A manifest or config that is not valid JSON or not of a schema we know."""


class VerificationError(OcimodelError):
    """A signature is missing or does not satisfy the policy."""

    exit_code = ExitCode.VERIFICATION


class PolicyError(VerificationError):
    """A model refused by a content policy: its license, or what its files could run (exit 5).

    Like a signature policy, the content is exactly what its publisher pushed and a policy
    says no; INTEGRITY (6) stays for bytes that do not match their digest or content hostile
    to ocimodel itself, which retrying or another mirror can fix.
    """
