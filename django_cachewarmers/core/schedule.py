"""Fixed-rate schedules: slots on a grid, and waits for them that a stop can cut short."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable


def next_slot(interval: float, now: float, *, origin: float = 0.0, min_gap: float = 0.0) -> float:
    """The first slot ``origin + k * interval`` at least ``min_gap`` seconds after ``now``.

    With ``origin=0`` and the wall clock, every process aligns on the same boundaries, so their
    claims meet in the same slot. With ``min_gap=0`` the slot is after ``now`` and at most
    ``interval`` seconds after it; a run that overran skips the slots it missed.
    """
    return origin + (math.floor((now + min_gap - origin) / interval) + 1) * interval


#: The longest single wait: longer ones overflow a thread's timeout (threading.TIMEOUT_MAX).
_MAX_WAIT_S = 3600.0


def wait_until(event: threading.Event, at: float, clock: Callable[[], float]) -> bool:
    """Wait until ``clock()`` reaches ``at`` (even infinity) or ``event`` is set; True if set.

    A long wait is waited out in bounded steps, so no interval overflows a thread's timeout.
    """
    while True:
        remaining = at - clock()
        if remaining <= 0:
            return event.is_set()
        if event.wait(min(remaining, _MAX_WAIT_S)):
            return True
