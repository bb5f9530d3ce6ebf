"""When and how long to wait before trying a registry request again.

Small on purpose: the policy decides *whether* and *how long*; the client decides *what* to
redo (for uploads that means reopening the body, never resending a consumed generator).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

from ..errors import OcimodelError

T = TypeVar("T")


def is_retryable_status(status: int) -> bool:
    """True for 408, 429 and 5xx: statuses a later attempt may get past.

    501 Not Implemented and 505 HTTP Version Not Supported never get better, so they are not.
    """
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class RetryableFailure(Exception):
    """Raised by an attempt that may succeed later; carries the error to report if not."""

    def __init__(self, error: OcimodelError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``.

    ``max_attempts`` counts the first try. ``total_cap`` bounds the summed sleeps: a wait that
    would cross it ends the retries at once, so a ``Retry-After: 3600`` fails fast instead of
    hanging. ``sleep``, ``jitter`` and ``clock`` are injectable so tests run instantly and
    deterministically.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    total_cap: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        # Half fixed, half random: spreads parallel clients without ever waiting ~0.
        return ceiling / 2 + self.jitter() * ceiling / 2

    def run(self, attempt: Callable[[], T], *, budget: float | None = None) -> T:
        """Call ``attempt`` until it returns or raises something other than RetryableFailure.

        ``budget`` (seconds) bounds the whole: no new attempt starts once the time spent so far,
        attempts and the coming wait together, would exceed it (each attempt is bounded by the
        client's timeouts, so retrying never multiplies them beyond ``budget``).
        """
        slept = 0.0
        started = self.clock()
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except RetryableFailure as failure:
                wait = self.delay(number, failure.retry_after)
                if number == self.max_attempts or slept + wait > self.total_cap:
                    raise _final(failure, number, wait if number < self.max_attempts else None) from None
                if budget is not None and self.clock() - started + wait > budget:
                    raise _final(failure, number, None, budget) from None
                self.sleep(wait)
                slept += wait
        raise AssertionError("unreachable: __post_init__ ensures max_attempts >= 1")


def _final(
    failure: RetryableFailure, attempts: int, refused_wait: float | None, budget: float | None = None
) -> OcimodelError:
    """The error to report once retrying stops, saying why it stopped (one line)."""
    error = failure.error
    if attempts == 1 and refused_wait is None and budget is None:
        return error
    if refused_wait is not None:
        why = f"gave up after {attempts} attempt(s): the registry asked to wait {refused_wait:.0f}s more"
    elif budget is not None:
        why = f"gave up after {attempts} attempt(s): the {budget:g}s retry budget is spent"
    else:
        why = f"gave up after {attempts} attempts"
    error.message = f"{error.message} ({why})"
    error.args = (error.message,)
    return error
