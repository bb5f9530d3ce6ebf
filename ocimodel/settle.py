"""Moving a tag safely on a store without compare-and-swap: write, then read back twice.

Registries offer no atomic "set this tag only if it still points there". A writer that read
the old value before our write and writes after it silently undoes ours. So after moving a
tag (a referrers fallback index, a stage's history head) the writer reads it back at once
and again after :data:`SETTLE_SECONDS` (longer than a racer's read-to-write), and only then
believes its write stands. The wait is jittered so racers do not keep colliding in step.

Pure: no I/O of its own (``check`` does the reading).
"""

from __future__ import annotations

import random
import time
from typing import Callable

#: Seconds between the two read-backs (longer than a racer's read-merge-PUT or check-to-PUT).
SETTLE_SECONDS = 0.3


def holds(check: Callable[[], bool], settle: float = SETTLE_SECONDS, *, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Whether ``check()`` is true now and still true ``settle`` to twice ``settle`` seconds later."""
    if not check():
        return False
    sleep(settle * (1 + random.random()))
    return check()
