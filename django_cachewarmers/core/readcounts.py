"""Counts of one warmer's read path in this process: hits, misses, stale served, refreshes."""

from __future__ import annotations

import threading
from collections import deque
from typing import Final

__all__ = [
    "BACKLOG_LIMIT",
    "EVENTS",
    "HIT",
    "MISS",
    "REFRESH",
    "REFRESH_FAILED",
    "STALE",
    "ReadCounts",
]

#: What ``get`` records, one event per call (``REFRESH``, ``REFRESH_FAILED``: one per background
#: refresh).
HIT: Final = 0
MISS: Final = 1
STALE: Final = 2
REFRESH: Final = 3
REFRESH_FAILED: Final = 4
#: The events' names, in index order, as ``ReadCounts.totals()`` reports them.
EVENTS: Final[tuple[str, ...]] = ("hits", "misses", "stale", "refreshes", "refresh_failures")
#: ``record`` counts its backlog once it holds this many events.
BACKLOG_LIMIT = 256


class ReadCounts:
    """Exact counts of read-path events, cheap enough for every ``get``.

    ``record(event)`` takes no lock: it appends the event to a backlog (``deque.append`` is
    atomic), counted by every read (``totals``), by ``flush()``, and whenever the backlog reaches
    ``BACKLOG_LIMIT`` events, as ``AccessTracker.record_access_later`` does.
    """

    __slots__ = ("_counts", "_lock", "backlog")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The events not counted yet. A hot path may append to it directly (as ``record`` does,
        #: calling ``flush()`` when it holds ``BACKLOG_LIMIT``), saving a call.
        self.backlog: deque[int] = deque()
        self._counts = [0] * len(EVENTS)

    def record(self, event: int) -> None:
        """Count one event (``HIT``, ``MISS``, ``STALE``, ``REFRESH`` or ``REFRESH_FAILED``)."""
        backlog = self.backlog
        backlog.append(event)
        if len(backlog) >= BACKLOG_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Count every event recorded so far."""
        backlog = self.backlog
        if not backlog:
            return
        with self._lock:
            counts = self._counts
            pop = backlog.popleft
            while backlog:
                try:
                    counts[pop()] += 1
                except IndexError:  # another thread took the last one
                    break

    def totals(self) -> dict[str, int]:
        """Every count by name (``EVENTS``), since this process started counting."""
        self.flush()
        with self._lock:
            return dict(zip(EVENTS, self._counts, strict=True))

    def reset(self) -> None:
        """Forget every count (and replace the lock: a forked child's may be held)."""
        self._lock = threading.Lock()
        self.backlog.clear()
        self._counts = [0] * len(EVENTS)
