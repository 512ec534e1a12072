"""Compare AccessTracker with the naive trim-half tracker on one Zipf + one-off key stream.

Run from the repository root: ``python -m benchmarks.tracker_bench``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Protocol

from benchmarks.streams import true_top, zipf_stream
from django_cachewarmers.core.tracker import AccessTracker

MAX_KEYS = (1000, 10000)
TOP_N = 100
# Repeat timing (keeping the best run) only while a single pass is this quick.
REPEAT_BELOW_S = 5.0
REPEATS = 3


class TrimHalfTracker:
    """The naive reference: count every key, drop the least recently seen half when full."""

    def __init__(self, max_keys: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[int, float]] = {}

    def record_access(self, key: Hashable) -> None:
        """Count one access to ``key``."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries[key] = (entry[0] + 1, now)
                return
            if len(self._entries) >= self.max_keys:
                oldest_first = sorted(self._entries.items(), key=lambda item: item[1][1])
                for old_key, _ in oldest_first[: len(oldest_first) // 2]:
                    del self._entries[old_key]
            self._entries[key] = (1, now)

    def get_hot_keys(self, threshold: int = 5, limit: int = 100) -> list[Hashable]:
        """Return up to ``limit`` keys counted at least ``threshold`` times, hottest first."""
        with self._lock:
            hot = [(count, key) for key, (count, _) in self._entries.items() if count >= threshold]
        hot.sort(key=lambda item: item[0], reverse=True)
        return [key for _, key in hot[:limit]]


class _Tracker(Protocol):
    def record_access(self, key: Hashable) -> None: ...

    def get_hot_keys(self, threshold: int = 5, limit: int = 100) -> list[Hashable]: ...


def _measure(
    factory: Callable[[], _Tracker], stream: list[str], expected: set[str]
) -> tuple[int, float]:
    """Return (recall@TOP_N, best microseconds per record_access) over fresh trackers."""
    timings: list[float] = []
    recall = 0
    while not timings or (len(timings) < REPEATS and min(timings) < REPEAT_BELOW_S):
        tracker = factory()
        record = tracker.record_access
        start = time.perf_counter()
        for key in stream:
            record(key)
        timings.append(time.perf_counter() - start)
        recall = len(expected.intersection(tracker.get_hot_keys(threshold=1, limit=TOP_N)))
    return recall, min(timings) / len(stream) * 1e6


def run() -> list[dict[str, str]]:
    """Measure recall and speed of AccessTracker against TrimHalfTracker, one row per figure."""
    stream = zipf_stream()
    expected = true_top(stream, TOP_N)
    rows: list[dict[str, str]] = []
    for max_keys in MAX_KEYS:
        ours_recall, ours_us = _measure(partial(AccessTracker, max_keys), stream, expected)
        base_recall, base_us = _measure(partial(TrimHalfTracker, max_keys), stream, expected)
        recall_ratio = f"{ours_recall / base_recall:.2f}x" if base_recall else "inf"
        rows.append(
            {
                "benchmark": f"recall@{TOP_N} max_keys={max_keys}",
                "ours": f"{ours_recall}/{TOP_N}",
                "baseline": f"{base_recall}/{TOP_N}",
                "ratio": recall_ratio,
            }
        )
        rows.append(
            {
                "benchmark": f"us per record_access max_keys={max_keys}",
                "ours": f"{ours_us:.3f} us",
                "baseline": f"{base_us:.3f} us",
                "ratio": f"{ours_us / base_us:.2f}x",
            }
        )
    return rows


def _format_table(rows: list[dict[str, str]]) -> str:
    columns = ["benchmark", "ours", "baseline", "ratio"]
    widths = {col: max(len(col), *(len(row[col]) for row in rows)) for col in columns}
    lines = ["  ".join(col.ljust(widths[col]) for col in columns)]
    lines.append("  ".join("-" * widths[col] for col in columns))
    lines.extend("  ".join(row[col].ljust(widths[col]) for col in columns) for row in rows)
    return "\n".join(lines)


if __name__ == "__main__":
    print(_format_table(run()))
    print(
        "\nStream: zipf_stream() defaults, 700,000 Zipf(1.1) draws over 200,000 keys shuffled with"
        " 300,000 one-off keys.\nratio = ours / baseline (recall: higher is better; time: lower is"
        " better)."
    )
