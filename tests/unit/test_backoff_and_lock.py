"""Retry backoff and the destination lock, without a registry."""

from __future__ import annotations

import threading
import time

from ocimodel.registry.retry import RetryPolicy
from ocimodel.transfer.destination import LOCK_NAME, DestinationLock


def test_jitter_spreads_waits_between_half_and_full_ceiling():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=lambda: 0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_destination_lock_excludes_a_second_holder(tmp_path):
    dest = tmp_path / "d"
    order: list[str] = []
    with DestinationLock(dest):
        def second() -> None:
            with DestinationLock(dest):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(timeout=10)
    assert order == ["first done", "second"]
    assert not (dest / LOCK_NAME).exists()
