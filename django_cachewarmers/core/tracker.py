"""Thread-safe, memory-bounded counting of which cache keys are accessed most."""

from __future__ import annotations

import heapq
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["AccessTracker"]

_DOORKEEPER_SLOTS_PER_KEY = 16
_DOORKEEPER_PERIOD_PER_KEY = 1
_EVICT_FRACTION = 10

_by_rank = operator.itemgetter(1)

#: Counts halve every hour by default.
DEFAULT_HALF_LIFE_S = 3600.0
#: ``record_access_later`` counts its backlog once it holds this many accesses.
BACKLOG_LIMIT = 256


def _require_non_negative(name: str, value: float) -> None:
    # `not >=` also rejects NaN.
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


class AccessTracker:
    """Estimate per-key access counts in bounded memory, keeping the heavy hitters.

    Algorithm: Space-Saving (equivalently Misra-Gries) with batch eviction, behind a TinyLFU-style
    doorkeeper, with exponential aging.

    * Until ``max_keys`` distinct keys have been seen, every key is counted exactly.
    * Once the table has overflowed, a new key is admitted only on a sighting the doorkeeper
      already remembers, so keys seen once (crawlers, scans) never displace counted keys. The
      doorkeeper is a Bloom filter of ``16 * max_keys`` one-byte slots probed by hash (it never
      holds keys), cleared after every ``max_keys`` insertions (under 1.5% false positives). An
      admitted key starts at ``F + 2``: the floor ``F`` its earlier accesses may reach, plus the
      remembered sighting, plus this one.
    * When a key is admitted into a full table, the ``B = max(1, max_keys // 10)`` keys with the
      lowest counts (least recently seen first among ties) are evicted at once, amortised O(1)
      per admission instead of a per-access minimum structure; the floor ``F`` becomes the
      largest evicted count.
    * Every ``half_life_s`` of ``clock``, all counts and ``F`` are halved, so yesterday's hot keys
      fade. Below, accesses are weighted the same way.

    Error bound, after ``N`` accesses: ``F <= 2 * N / (max_keys - B + 1)`` (the 2 allows for
    remembered sightings counted at admission; skewed streams stay far below it).
    For a tracked key, ``count - F - 1 <= true count <= count + r``; an untracked key has had at
    most ``F + 1 + r`` accesses. ``r`` counts the key's sightings the doorkeeper forgot: at most
    one per doorkeeper reset while the key was untracked. So every key with more than
    ``F + 1 + r`` accesses is tracked.

    ``get_access_count`` returns ``floor(count)``: exactly ``n`` for a key seen ``n`` times as
    long as no more than ``max_keys`` distinct keys have been recorded since creation or
    ``clear()`` (and no halving happened). At most ``max_keys`` keys are ever counted.

    ``record_access`` counts at once. ``record_access_later`` is the request path's way: it takes
    no lock and reads no clock, and appends to a backlog that is counted, as seen at that moment,
    by every read, by ``flush()``, and whenever it reaches ``BACKLOG_LIMIT`` accesses (it can
    hold one more access per thread waiting for the lock to count it).
    """

    __slots__ = (
        "_backlog",
        "_batch",
        "_clock",
        "_dk_inserted",
        "_dk_modulus",
        "_dk_modulus2",
        "_dk_period",
        "_dk_seen",
        "_entries",
        "_floor",
        "_half_life_s",
        "_lock",
        "_max_keys",
        "_next_aging",
        "_saturated",
    )

    def __init__(
        self,
        max_keys: int = 10000,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty tracker; ``half_life_s=math.inf`` disables aging."""
        max_keys = operator.index(max_keys)
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys!r}")
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s!r}")
        self._max_keys = max_keys
        self._half_life_s = float(half_life_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._batch = max(1, max_keys // _EVICT_FRACTION)

        # A byte per slot, not a bit: in CPython bit arithmetic costs more than the memory saved.
        # The two probe moduli are consecutive odd numbers, hence coprime.
        self._dk_modulus = 2 * (_DOORKEEPER_SLOTS_PER_KEY * max_keys // 2) + 1
        self._dk_modulus2 = self._dk_modulus - 2
        self._dk_seen = bytearray(self._dk_modulus)
        self._dk_period = _DOORKEEPER_PERIOD_PER_KEY * max_keys
        self._dk_inserted = 0

        # key -> [count, last_seen]; a mutable list so the hot path updates it without rehashing.
        self._entries: dict[Hashable, list[float]] = {}
        # deque's append and popleft are atomic: recording needs no lock, counting takes it.
        self._backlog: deque[Hashable] = deque()
        self._floor = 0.0
        self._saturated = False
        self._next_aging = clock() + self._half_life_s

    @property
    def max_keys(self) -> int:
        """Upper bound on the number of keys held."""
        return self._max_keys

    @property
    def half_life_s(self) -> float:
        """Seconds of ``clock`` after which every count is halved."""
        return self._half_life_s

    def record_access(self, key: Hashable) -> None:
        """Count one access to ``key`` now."""
        now = self._clock()
        # acquire/release, not `with`: callers may count on every request, and `with` costs twice
        # as much.
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._next_aging:
                self._age(now)
            self._count(key, now)
        finally:
            lock.release()

    def record_access_later(self, key: Hashable) -> None:
        """Count one access to ``key`` soon: no lock, no clock, for the request path.

        The access is counted, as seen at that moment, by the next read, ``flush()``, or the call
        that brings the backlog to ``BACKLOG_LIMIT`` accesses. Safe from any thread. An unhashable
        key raises ``TypeError`` here, not in a later read.
        """
        hash(key)
        backlog = self._backlog
        backlog.append(key)
        if len(backlog) >= BACKLOG_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Count every access ``record_access_later`` has recorded so far."""
        if self._backlog:
            now = self._clock()
            with self._lock:
                self._catch_up(now)

    def get_access_count(self, key: Hashable) -> int:
        """Return the estimated (aged) access count of ``key``, 0 if it is not tracked."""
        now = self._clock()
        with self._lock:
            self._catch_up(now)
            entry = self._entries.get(key)
            return 0 if entry is None else int(entry[0])

    def get_hot_keys(self, threshold: int = 5, limit: int = 100) -> list[Hashable]:
        """Return up to ``limit`` keys with an estimated count >= ``threshold``, hottest first."""
        _require_non_negative("threshold", threshold)
        _require_non_negative("limit", limit)
        return [key for key, _ in self._ranked(threshold, limit)]

    def get_recent_keys(self, seconds: float = 300.0, limit: int = 100) -> list[Hashable]:
        """Return up to ``limit`` tracked keys seen in the last ``seconds``, most recent first."""
        _require_non_negative("seconds", seconds)
        _require_non_negative("limit", limit)
        now = self._clock()
        cutoff = now - seconds
        with self._lock:
            self._catch_up(now)
            # Copy under the lock, rank outside it so recording threads are not held up.
            recent = [
                (key, (entry[1], entry[0]))
                for key, entry in self._entries.items()
                if entry[1] >= cutoff
            ]
        return [key for key, _ in heapq.nlargest(limit, recent, key=_by_rank)]

    def top(self, limit: int = 100) -> list[tuple[Hashable, int]]:
        """Return up to ``limit`` ``(key, estimated count)`` pairs, hottest first."""
        _require_non_negative("limit", limit)
        return [(key, int(rank[0])) for key, rank in self._ranked(0, limit)]

    def clear(self) -> None:
        """Forget every key and count, returning to exact counting."""
        with self._lock:
            self._backlog.clear()
            self._entries = {}
            self._floor = 0.0
            self._saturated = False
            self._reset_doorkeeper()

    def __len__(self) -> int:
        """Return the number of keys currently tracked."""
        now = self._clock()
        with self._lock:
            self._catch_up(now)
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self)}/{self._max_keys} keys>"

    def _ranked(self, threshold: float, limit: int) -> list[tuple[Hashable, tuple[float, float]]]:
        now = self._clock()
        with self._lock:
            self._catch_up(now)
            candidates = [
                (key, (entry[0], entry[1]))
                for key, entry in self._entries.items()
                if entry[0] >= threshold
            ]
        # Ties on count go to the most recently seen key.
        return heapq.nlargest(limit, candidates, key=_by_rank)

    def _catch_up(self, now: float) -> None:
        # Caller holds the lock: what every read does first. Age, then count the backlog as seen
        # now; only what is there now, appends meanwhile wait for the next call.
        if now >= self._next_aging:
            self._age(now)
        backlog = self._backlog
        if backlog:
            popleft = backlog.popleft
            count = self._count
            for _ in range(len(backlog)):
                count(popleft(), now)

    def _count(self, key: Hashable, now: float) -> None:
        # Caller holds the lock and has aged the counts to `now`.
        entry = self._entries.get(key)
        if entry is None:
            self._admit(key, now)
        else:
            entry[0] += 1.0
            entry[1] = now

    def _admit(self, key: Hashable, now: float) -> None:
        # Caller holds the lock and has checked that `key` is not tracked.
        if not self._saturated:
            if len(self._entries) < self._max_keys:
                self._entries[key] = [1.0, now]
                return
            self._saturated = True

        # Remainders modulo two coprime odd numbers act as two independent probes, even for ints
        # (which hash to themselves) in power-of-two strides.
        hashed = hash(key)
        first = hashed % self._dk_modulus
        second = hashed % self._dk_modulus2
        seen = self._dk_seen
        if not (seen[first] and seen[second]):
            seen[first] = seen[second] = 1
            self._dk_inserted += 1
            if self._dk_inserted >= self._dk_period:
                self._reset_doorkeeper()
            return

        if len(self._entries) >= self._max_keys:
            self._evict()
        self._entries[key] = [self._floor + 2.0, now]

    def _evict(self) -> None:
        # Dropping a whole batch in one O(max_keys) pass amortises eviction over `_batch`
        # admissions. The floor must rise to the largest dropped count: an evicted key may come
        # back, and Space-Saving's bounds need its earlier count covered.
        entries = self._entries
        victims = heapq.nsmallest(self._batch, entries.items(), key=_by_rank)
        for key, _ in victims:
            del entries[key]
        cutoff = victims[-1][1][0]
        if cutoff > self._floor:
            self._floor = cutoff

    def _age(self, now: float) -> None:
        periods = (now - self._next_aging) // self._half_life_s + 1.0
        # Past ~1100 halvings a double is 0 anyway; the test also maps a NaN (infinite clock) to 0.
        factor = 0.5**periods if periods < 1100.0 else 0.0
        for entry in self._entries.values():
            entry[0] *= factor
        self._floor *= factor
        self._next_aging += periods * self._half_life_s

    def _reset_doorkeeper(self) -> None:
        self._dk_seen = bytearray(self._dk_modulus)
        self._dk_inserted = 0
