"""Tests for AccessTracker: exactness, heavy-hitter recall, memory bound, aging and threads."""

from __future__ import annotations

import itertools
import math
import sys
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator

import pytest

from benchmarks.streams import true_top, zipf_stream
from benchmarks.tracker_bench import TrimHalfTracker
from django_cachewarmers.core.tracker import BACKLOG_LIMIT, AccessTracker


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record_many(tracker: AccessTracker | TrimHalfTracker, keys: Iterable[Hashable]) -> None:
    record = tracker.record_access
    for key in keys:
        record(key)


@pytest.fixture(scope="module")
def zipf() -> tuple[list[str], set[str]]:
    stream = zipf_stream()
    return stream, true_top(stream, 100)


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_keys", [0, -1])
def test_max_keys_below_one_is_rejected(max_keys: int) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        AccessTracker(max_keys)


def test_max_keys_must_be_an_integer() -> None:
    with pytest.raises(TypeError):
        AccessTracker(2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("half_life_s", [0.0, -1.0, math.nan])
def test_non_positive_half_life_is_rejected(half_life_s: float) -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        AccessTracker(10, half_life_s=half_life_s)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda t: t.get_hot_keys(threshold=-1), "threshold"),
        (lambda t: t.get_hot_keys(limit=-1), "limit"),
        (lambda t: t.get_recent_keys(seconds=-0.5), "seconds"),
        (lambda t: t.get_recent_keys(seconds=math.nan), "seconds"),
        (lambda t: t.get_recent_keys(limit=-1), "limit"),
        (lambda t: t.top(limit=-1), "limit"),
    ],
)
def test_negative_query_arguments_are_rejected(
    call: Callable[[AccessTracker], object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        call(AccessTracker(10))


def test_max_keys_is_read_only() -> None:
    tracker = AccessTracker(42)
    assert tracker.max_keys == 42
    with pytest.raises(AttributeError):
        tracker.max_keys = 7  # type: ignore[misc]


def test_zero_limit_returns_nothing() -> None:
    tracker = AccessTracker(10)
    record_many(tracker, ["a"] * 10)
    assert tracker.get_hot_keys(threshold=0, limit=0) == []
    assert tracker.get_recent_keys(limit=0) == []
    assert tracker.top(limit=0) == []


# --- exact counting below capacity -------------------------------------------------------------


def test_counts_are_exact_while_the_table_never_overflowed() -> None:
    tracker = AccessTracker(max_keys=20)
    expected = {f"key{i}": i + 1 for i in range(20)}
    # Interleaved so that no key's sightings are consecutive.
    for round_ in range(20):
        for key, n in expected.items():
            if round_ < n:
                tracker.record_access(key)

    assert len(tracker) == 20
    assert {key: tracker.get_access_count(key) for key in expected} == expected
    assert tracker.get_access_count("never-seen") == 0


def test_a_key_seen_five_times_has_count_five() -> None:
    tracker = AccessTracker()
    record_many(tracker, ["page"] * 5)
    assert tracker.get_access_count("page") == 5
    assert tracker.top() == [("page", 5)]


def test_hot_keys_are_thresholded_and_ordered_hottest_first() -> None:
    tracker = AccessTracker(max_keys=100)
    for key, n in [("a", 3), ("b", 9), ("c", 5), ("d", 7), ("e", 1)]:
        record_many(tracker, [key] * n)

    assert tracker.get_hot_keys() == ["b", "d", "c"]
    assert tracker.get_hot_keys(threshold=1, limit=2) == ["b", "d"]
    assert tracker.get_hot_keys(threshold=10) == []
    assert tracker.top(limit=4) == [("b", 9), ("d", 7), ("c", 5), ("a", 3)]
    assert all(type(count) is int for _, count in tracker.top())


def test_any_hashable_key_is_supported() -> None:
    tracker = AccessTracker(max_keys=4)
    keys: list[Hashable] = [-1, -2, ("tuple", 1), 2**70]  # hash(-1) == hash(-2)
    for _ in range(3):
        record_many(tracker, keys)
    assert [tracker.get_access_count(key) for key in keys] == [3, 3, 3, 3]


# --- behaviour after overflow ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["str-", None])
def test_after_overflow_one_off_keys_wait_at_the_doorkeeper(prefix: str | None) -> None:
    tracker = AccessTracker(max_keys=100, clock=itertools.count().__next__)  # strictly increasing

    def key(i: int) -> Hashable:
        # Ints hash to themselves: the doorkeeper must still tell them apart.
        return i if prefix is None else f"{prefix}{i}"

    for _ in range(3):
        record_many(tracker, (key(i) for i in range(100)))
    tracker.record_access(key(1000))  # first overflowing key: only remembered
    assert tracker.get_access_count(key(1000)) == 0
    assert len(tracker) == 100

    tracker.record_access(key(1000))  # second sighting: admitted
    assert len(tracker) <= 100
    # Space-Saving estimate: floor F = 3 (the evicted count) plus both sightings, within the
    # documented count - F - 1 <= true count <= count.
    assert 2 <= tracker.get_access_count(key(1000)) <= 6
    # The batch evicted was the least recently seen of the tied lowest counts.
    batch = 100 // 10
    assert [tracker.get_access_count(key(i)) for i in range(batch)] == [0] * batch
    assert [tracker.get_access_count(key(i)) for i in range(batch, 100)] == [3] * (100 - batch)


def test_doorkeeper_spreads_int_keys_in_power_of_two_strides() -> None:
    tracker = AccessTracker(max_keys=100)
    record_many(tracker, range(100))
    record_many(tracker, range(100))
    # Ints hash to themselves; probes taken from low bits alone would see all of these as one.
    strided = [i << 20 for i in range(1, 1001)]
    record_many(tracker, strided)

    admitted = sum(1 for key in strided if tracker.get_access_count(key))
    assert admitted <= 50  # a few false positives, not one admission per key


def test_hot_set_survives_a_flood_of_one_off_keys() -> None:
    hot = [f"hot{i}" for i in range(50)]
    ours = AccessTracker(max_keys=1000)
    naive = TrimHalfTracker(max_keys=1000)
    for tracker in (ours, naive):
        for _ in range(100):
            record_many(tracker, hot)
        record_many(tracker, (f"crawl{i}" for i in range(200_000)))

    assert set(ours.get_hot_keys(threshold=1, limit=50)) == set(hot)
    assert all(ours.get_access_count(key) == 100 for key in hot)
    # The scenario is one the naive design fails, so the assertion above is not vacuous.
    assert not set(naive.get_hot_keys(threshold=1, limit=50)) & set(hot)


@pytest.mark.parametrize("max_keys", [1000, 10000])
def test_recall_of_the_true_top_100_on_zipf_with_one_off_keys(
    zipf: tuple[list[str], set[str]], max_keys: int
) -> None:
    stream, expected = zipf
    tracker = AccessTracker(max_keys)
    record_many(tracker, stream)

    found = tracker.get_hot_keys(threshold=1, limit=100)
    assert len(found) == 100
    assert len(expected.intersection(found)) >= 98


@pytest.mark.parametrize("doorkeeper_resets", [True, False])
def test_documented_error_bounds_hold(doorkeeper_resets: bool) -> None:
    stream = zipf_stream(n_accesses=100_000, n_keys=20_000, seed=7)
    true_counts = Counter(stream)
    tracker = AccessTracker(max_keys=200)
    if not doorkeeper_resets:
        # Then no sighting is forgotten (r = 0) and the upper bounds are exact too.
        tracker._dk_period = 10**12
    record_many(tracker, stream)

    floor = tracker._floor
    assert 0 < floor <= 2 * len(stream) / (200 - tracker._batch + 1)
    for key, true_count in true_counts.items():
        entry = tracker._entries.get(key)
        if entry is not None:
            assert entry[0] - floor - 1 <= true_count, key
            assert doorkeeper_resets or true_count <= entry[0], key
        else:
            assert doorkeeper_resets or true_count <= floor + 1, key


# --- memory ------------------------------------------------------------------------------------


def test_memory_is_bounded_by_max_keys_not_by_the_stream() -> None:
    keys = [f"unique{i}" for i in range(500_000)]
    clock = FakeClock()  # time.monotonic() would allocate a float per call under tracemalloc
    tracemalloc.start()
    try:
        tracker = AccessTracker(max_keys=1000, clock=clock)
        record_many(tracker, keys[:100_000])
        after_100k, _ = tracemalloc.get_traced_memory()
        record_many(tracker, keys[100_000:])
        after_500k, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(tracker) <= 1000
    assert abs(after_500k - after_100k) < 0.25 * after_100k
    # A few hundred bytes per tracked key, including the doorkeeper; nowhere near 100k keys.
    assert after_500k < 1000 * 500


# --- aging -------------------------------------------------------------------------------------


def test_counts_halve_every_half_life() -> None:
    clock = FakeClock(1000.0)
    tracker = AccessTracker(max_keys=10, half_life_s=60.0, clock=clock)
    record_many(tracker, ["a"] * 8)

    clock.now = 1059.9
    assert tracker.get_access_count("a") == 8
    clock.now = 1060.0
    assert tracker.get_access_count("a") == 4
    clock.now = 1185.0  # two more half-lives passed between queries
    assert tracker.get_access_count("a") == 1
    tracker.record_access("a")
    assert tracker.get_access_count("a") == 2  # 1 + 1


def test_stale_keys_fade_while_a_key_in_use_stays_hot() -> None:
    clock = FakeClock()
    tracker = AccessTracker(max_keys=10, half_life_s=60.0, clock=clock)
    record_many(tracker, ["yesterday"] * 1000)
    for minute in range(1, 24 * 60):
        clock.now = minute * 60.0
        record_many(tracker, ["today"] * 10)

    assert tracker.get_hot_keys(threshold=5) == ["today"]
    assert tracker.get_access_count("yesterday") == 0
    # 10 per half-life converges to 10 + 5 + 2.5 + ... = 20.
    assert 19 <= tracker.get_access_count("today") <= 20


def test_aging_lets_a_new_hot_key_displace_an_old_one_in_a_full_table() -> None:
    clock = FakeClock()
    tracker = AccessTracker(max_keys=10, half_life_s=60.0, clock=clock)
    for i in range(10):
        record_many(tracker, [f"old{i}"] * 50)
    clock.now = 60.0 * 20
    record_many(tracker, ["new"] * 30)

    assert tracker.get_hot_keys(threshold=5) == ["new"]
    assert len(tracker) <= 10


# --- recency -----------------------------------------------------------------------------------


def test_recent_keys_honour_seconds_most_recent_first() -> None:
    clock = FakeClock()
    tracker = AccessTracker(max_keys=10, clock=clock)
    for now, key in [(0.0, "a"), (10.0, "b"), (20.0, "c"), (25.0, "a"), (29.0, "d")]:
        clock.now = now
        tracker.record_access(key)

    clock.now = 30.0
    assert tracker.get_recent_keys(seconds=10) == ["d", "a", "c"]
    assert tracker.get_recent_keys(seconds=5) == ["d", "a"]  # a, seen at 25, is just in
    assert tracker.get_recent_keys(seconds=4.5) == ["d"]
    assert tracker.get_recent_keys(seconds=100) == ["d", "a", "c", "b"]
    assert tracker.get_recent_keys(seconds=100, limit=2) == ["d", "a"]
    assert tracker.get_recent_keys(seconds=0) == []


# --- record_access_later -----------------------------------------------------------------------


def test_later_accesses_are_counted_by_every_read_as_seen_then() -> None:
    clock = FakeClock()
    tracker = AccessTracker(max_keys=10, clock=clock)
    reads: list[Callable[[], object]] = [
        lambda: tracker.get_access_count("a"),
        lambda: tracker.get_hot_keys(threshold=1),
        lambda: tracker.get_recent_keys(),
        lambda: tracker.top(),
        lambda: len(tracker),
    ]
    for round_, read in enumerate(reads, start=1):
        tracker.record_access_later("a")
        clock.now += 10
        read()
        assert tracker._entries["a"] == [round_, clock.now]  # counted by that read, at its time
    tracker.record_access_later("b")
    clock.now += 10
    tracker.flush()
    clock.now += 10
    assert tracker.top() == [("a", 5), ("b", 1)]
    assert tracker.get_recent_keys(seconds=10) == ["b"]  # counted by flush(), 10 s ago


def test_the_backlog_is_counted_when_it_reaches_its_limit() -> None:
    clock = FakeClock()
    tracker = AccessTracker(max_keys=10, clock=clock)
    for _ in range(BACKLOG_LIMIT - 1):
        tracker.record_access_later("x")
    assert len(tracker._backlog) == BACKLOG_LIMIT - 1  # nothing counted yet
    clock.now = 5.0
    tracker.record_access_later("x")  # the limit: counted now, at 5
    assert len(tracker._backlog) == 0
    clock.now = 100.0
    assert tracker.get_recent_keys(seconds=95) == ["x"]
    assert tracker.get_recent_keys(seconds=94) == []
    assert tracker.get_access_count("x") == BACKLOG_LIMIT


def test_a_flood_recorded_later_keeps_memory_bounded_and_the_hot_set_hot() -> None:
    tracker = AccessTracker(max_keys=100)
    for i in range(50_000):
        tracker.record_access_later(f"hot{i // 5 % 10}" if i % 5 == 0 else f"crawl{i}")
        assert len(tracker._backlog) < BACKLOG_LIMIT
    assert set(tracker.get_hot_keys(threshold=100, limit=10)) == {f"hot{i}" for i in range(10)}
    assert len(tracker) <= 100


def test_an_unhashable_key_is_refused_at_once_and_spoils_no_read() -> None:
    tracker = AccessTracker(max_keys=10)
    tracker.record_access_later("a")
    with pytest.raises(TypeError):
        tracker.record_access_later(["not", "hashable"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tracker.record_access(["not", "hashable"])  # type: ignore[arg-type]
    assert tracker.top() == [("a", 1)]


def test_clear_drops_the_backlog() -> None:
    tracker = AccessTracker(max_keys=10)
    tracker.record_access_later("a")
    tracker.clear()
    assert tracker.top() == []


# --- clear -------------------------------------------------------------------------------------


def test_clear_forgets_everything_and_restores_exact_counting() -> None:
    tracker = AccessTracker(max_keys=100)
    record_many(tracker, (f"k{i}" for i in range(1000)))
    record_many(tracker, ["x"] * 3)
    assert len(tracker) > 0

    tracker.clear()
    assert len(tracker) == 0
    assert tracker.get_access_count("x") == 0
    assert tracker.get_hot_keys(threshold=0) == []
    assert tracker.get_recent_keys() == []
    assert tracker.top() == []

    # Back below capacity, a key's first sighting counts again.
    tracker.record_access("fresh")
    assert tracker.get_access_count("fresh") == 1


# --- threads -----------------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("method", ["record_access", "record_access_later"])
def test_concurrent_recording_counts_every_call(method: str) -> None:
    keys = [f"key{i}" for i in range(20_000)]
    tracker = AccessTracker(max_keys=len(keys))
    record = getattr(tracker, method)
    rounds = 2
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        # All threads walk the keys in the same order, so first sightings collide.
        for _ in range(rounds):
            for key in keys:
                record(key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counts = [tracker.get_access_count(key) for key in keys]
    assert sum(counts) == 8 * rounds * len(keys)
    assert set(counts) == {8 * rounds}


@pytest.mark.usefixtures("frequent_thread_switches")
def test_queries_are_safe_while_other_threads_evict() -> None:
    tracker = AccessTracker(max_keys=200)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        # Half the writers count at once, half later: both race the readers' counting.
        record = tracker.record_access if n % 2 else tracker.record_access_later
        try:
            for i in range(10_000):
                record(f"w{n}-{i % 3000}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                assert len(tracker) <= 200
                tracker.get_hot_keys(threshold=1)
                tracker.get_recent_keys()
                tracker.top(limit=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()

    assert errors == []
    assert len(tracker) <= 200
