"""Running a transfer's blobs side by side: the first failure wins and stops the others."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, TypeVar

DEFAULT_CONCURRENCY = 2  # two blob streams gave +25% on 2 cores; three gave nothing more

T = TypeVar("T")
R = TypeVar("R")


class Cancelled(Exception):
    """Another part of the transfer failed: stop this one (a download, a hash) at its next chunk."""


def run_all(
    fn: Callable[[T], R], items: list[T], concurrency: int, cancelled: threading.Event | None = None
) -> list[R]:
    """Run ``fn`` over ``items`` with a thread pool; the first error wins and is re-raised.

    ``cancelled`` is set on the first error, before waiting for the running calls, so that
    long ones (a big download) can notice and stop instead of finishing for nothing.
    """
    if concurrency <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ocimodel-blob") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            # FIRST_EXCEPTION, not result() in order: a failure of the second blob must not
            # wait for the first (maybe many GiB) to finish before it is noticed.
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
            return [f.result() for f in futures]
        except BaseException:
            if cancelled is not None:
                cancelled.set()
            for f in futures:
                f.cancel()
            raise
