"""The core engine against real caches: a dict, LocMemCache and the database cache."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

import pytest
from django.core.cache import caches

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableKeyProvider,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from django_cachewarmers.core.pool import backoff_delay
from django_cachewarmers.core.schedule import wait_until
from tests.conftest import RecordingCache, cached

KEYS = [f"item:{i}" for i in range(25)]


def value_of(key: Any) -> str:
    return f"value of {key}"


def make_warmer(
    cache: Any, keys: list[Any] = KEYS, loader: Any = None, **config: Any
) -> CacheWarmer:
    config.setdefault("retry_backoff_s", 0.0)
    return CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        loader if loader is not None else CallableValueLoader(value_of),
        WarmingConfig(**config),
        name="test",
    )


class _WatchedEvent(threading.Event):
    """An Event that tells (``waiting``) when a thread starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def watch_waiters(warmer: CacheWarmer) -> threading.Event:
    """Set once another call waits for the run in flight (which must not have finished)."""
    run = warmer._current
    assert run is not None
    watched = _WatchedEvent()
    run.done = watched  # nothing waits on it yet: the run's own thread only sets it at its end
    return watched.waiting


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll until predicate() is true; returns its final value (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- warming into each backend ---------------------------------------------------------------


def test_warms_every_key(backend: Any) -> None:
    stats = make_warmer(backend).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.success_rate) == (25, 0, 1.0)
    assert stats.ok
    assert stats.finished_at is not None
    assert stats.total_time_ms > 0
    for key in KEYS:
        assert cached(backend, key) == value_of(key)


def test_batch_loader_warms_every_key(backend: Any) -> None:
    calls: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        return {k: value_of(k) for k in keys}

    stats = make_warmer(backend, loader=BatchValueLoader(load_many), batch_size=10).warm()
    assert stats.keys_warmed == 25
    assert sorted(len(c) for c in calls) == [5, 10, 10]
    assert sorted(k for c in calls for k in c) == sorted(KEYS)
    for key in KEYS:
        assert cached(backend, key) == value_of(key)


def test_warm_is_idempotent(backend: Any) -> None:
    warmer = make_warmer(backend)
    first, second = warmer.warm(), warmer.warm()
    assert first.keys_warmed == second.keys_warmed == 25
    assert cached(backend, KEYS[3]) == value_of(KEYS[3])


def test_failed_key_keeps_the_value_already_cached(backend: Any) -> None:
    backend_set = backend.__setitem__ if isinstance(backend, dict) else backend.set
    backend_set("item:3", "good old value")
    backend_set("item:4", "other old value")

    def load(key: str) -> str:
        if key == "item:3":
            raise RuntimeError("database said no")
        return value_of(key)

    stats = make_warmer(backend, loader=CallableValueLoader(load), max_retries=1).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (24, 1)
    assert stats.errors == ["item:3: RuntimeError: database said no"]
    assert cached(backend, "item:3") == "good old value"
    assert cached(backend, "item:4") == value_of("item:4")


def test_failed_batch_keeps_values_and_counts_every_key(backend: Any) -> None:
    backend_set = backend.__setitem__ if isinstance(backend, dict) else backend.set
    backend_set("item:0", "good old value")
    attempts: list[int] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        if "item:0" in keys:
            attempts.append(len(keys))
            raise ConnectionError("replica down")
        return {k: value_of(k) for k in keys}

    warmer = make_warmer(backend, loader=BatchValueLoader(load_many), batch_size=10, max_retries=2)
    stats = warmer.warm()
    assert attempts == [10, 10, 10]  # first try + max_retries
    assert (stats.keys_warmed, stats.keys_failed) == (15, 10)
    assert all("batch load failed: ConnectionError: replica down" in e for e in stats.errors)
    assert cached(backend, "item:0") == "good old value"
    assert cached(backend, "item:10") == value_of("item:10")


def test_key_missing_from_batch_result_counts_as_failed(backend: Any) -> None:
    def load_many(keys: list[str]) -> dict[str, str]:
        return {k: value_of(k) for k in keys if k != "item:7"}

    stats = make_warmer(backend, loader=BatchValueLoader(load_many)).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (24, 1)
    assert stats.errors == ["item:7: batch loader returned no value for this key"]


# -- writes: one set_many per batch, with the configured timeout -----------------------------


@pytest.mark.parametrize("alias", ["default", pytest.param("db", marks=pytest.mark.django_db)])
def test_one_set_many_per_batch_never_one_round_trip_per_key(alias: str) -> None:
    cache = RecordingCache(caches[alias])
    keys = [f"k{i}" for i in range(250)]
    stats = make_warmer(cache, keys=keys, batch_size=100, cache_timeout=600).warm()
    assert stats.keys_warmed == 250
    assert len(cache.set_many_calls) == 3
    assert sorted(k for written, _ in cache.set_many_calls for k in written) == sorted(keys)
    assert all(kwargs == {"timeout": 600} for _, kwargs in cache.set_many_calls)
    assert caches[alias].get("k249") == value_of("k249")


def test_batch_mode_writes_once_per_batch() -> None:
    cache = RecordingCache(caches["default"])
    loader = BatchValueLoader(lambda keys: {k: value_of(k) for k in keys})
    stats = make_warmer(cache, loader=loader, batch_size=10).warm()
    assert stats.keys_warmed == 25
    assert sorted(len(written) for written, _ in cache.set_many_calls) == [5, 10, 10]


def test_default_timeout_is_the_caches_own() -> None:
    cache = RecordingCache(caches["default"])
    make_warmer(cache).warm()
    assert [kwargs for _, kwargs in cache.set_many_calls] == [{}]


def test_timeout_none_means_never_expire() -> None:
    cache = RecordingCache(caches["default"])
    make_warmer(cache, cache_timeout=None).warm()
    assert [kwargs for _, kwargs in cache.set_many_calls] == [{"timeout": None}]


def test_timeout_jitter_spreads_batches_within_bounds() -> None:
    cache = RecordingCache(caches["default"])
    keys = [f"k{i}" for i in range(2000)]
    make_warmer(cache, keys=keys, batch_size=10, cache_timeout=1000, timeout_jitter=0.1).warm()
    timeouts = [kwargs["timeout"] for _, kwargs in cache.set_many_calls]
    assert len(timeouts) == 200
    assert all(1000 <= t <= 1100 for t in timeouts)
    assert len(set(timeouts)) > 10  # spread, not one expiry second for every entry


def test_unpicklable_value_fails_only_its_key() -> None:
    cache = caches["default"]
    cache.clear()

    def load(key: str) -> Any:
        return threading.Lock() if key == "item:5" else value_of(key)

    stats = make_warmer(cache, loader=CallableValueLoader(load)).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (24, 1)
    assert re.match(r"item:5: value not cacheable: TypeError: cannot pickle", stats.errors[0])
    assert cache.get("item:6") == value_of("item:6")
    assert cache.get("item:5") is None


def test_unhashable_keys_are_failed_keys_not_crashes() -> None:
    cache: dict[Any, Any] = {}
    stats = make_warmer(cache, keys=["a", ["not", "hashable"], "b"]).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (2, 1)
    assert "key is not hashable (list)" in stats.errors[0]


def test_duplicate_keys_are_warmed_once() -> None:
    calls: list[str] = []
    cache: dict[str, str] = {}

    def load(key: str) -> str:
        calls.append(key)
        return key

    stats = make_warmer(cache, keys=["a", "b", "a", "a"], loader=CallableValueLoader(load)).warm()
    assert stats.keys_warmed == 2
    assert sorted(calls) == ["a", "b"]


def test_dead_cache_stops_the_run_with_one_log_line(
    caplog: pytest.LogCaptureFixture, release: threading.Event
) -> None:
    from django.core.cache.backends.redis import RedisCache

    from tests.redis_server import free_port

    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    started: list[str] = []
    lock = threading.Lock()

    def load(key: str) -> str:
        with lock:
            started.append(key)
        if int(key[1:]) >= 10:
            release.wait()  # only the first batch can finish; the rest waits for the test
        return key

    keys = [f"k{i}" for i in range(1000)]
    warmer = make_warmer(
        dead, keys=keys, loader=CallableValueLoader(load), batch_size=10, warmup_timeout_s=3600
    )
    with caplog.at_level(logging.INFO, logger="django_cachewarmers"):
        stats = warmer.warm()
    # It returned although loaders are still blocked: the failed write stopped the run.
    assert not release.is_set()
    assert (stats.keys_warmed, stats.keys_failed) == (0, 1000)
    assert "cache write failed: ConnectionError" in stats.errors[0]
    assert stats.errors[-1].endswith("not warmed: the cache was unavailable")
    release.set()
    assert wait_for(lambda: warmer._pool.queued == 0)  # the rest was dropped, never loaded
    assert len(started) <= 10 + 4  # the first batch plus what the 4 workers had in hand
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is None
    assert "stopping this run" in errors[0].getMessage()


# -- loader failures, retries and backoff ------------------------------------------------------


def flaky(failures: int) -> tuple[CallableValueLoader, dict[str, int]]:
    """A loader that fails ``failures`` times per key, then succeeds."""
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def load(key: str) -> str:
        with lock:
            calls[key] = calls.get(key, 0) + 1
            n = calls[key]
        if n <= failures:
            raise OSError(f"try {n} failed")
        return value_of(key)

    return CallableValueLoader(load), calls


def test_retries_until_success() -> None:
    loader, calls = flaky(2)
    stats = make_warmer({}, keys=["a", "b"], loader=loader, max_retries=3).warm()
    assert stats.keys_warmed == 2
    assert calls == {"a": 3, "b": 3}


def test_gives_up_after_max_retries(caplog: pytest.LogCaptureFixture) -> None:
    loader, calls = flaky(10)
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        stats = make_warmer({}, keys=["a"], loader=loader, max_retries=2).warm()
    assert calls == {"a": 3}
    assert (stats.keys_warmed, stats.keys_failed) == (0, 1)
    assert stats.errors == ["a: OSError: try 3 failed"]
    assert "1 of 1 keys failed" in caplog.text


def test_no_retry_when_disabled() -> None:
    loader, calls = flaky(1)
    stats = make_warmer({}, keys=["a"], loader=loader, retry_on_failure=False).warm()
    assert calls == {"a": 1}
    assert stats.keys_failed == 1


def test_backoff_grows_between_attempts(caplog: pytest.LogCaptureFixture) -> None:
    loader, _ = flaky(3)
    warmer = make_warmer({}, keys=["a"], loader=loader, max_retries=3, retry_backoff_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="django_cachewarmers"):
        assert warmer.warm().keys_warmed == 1
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"in ([\d.]+)s \(attempt", r.getMessage()))
    ]
    assert len(delays) == 3
    # attempt n waits within [b*2^(n-1)/2, b*2^(n-1)]: 0.005-0.01, 0.01-0.02, 0.02-0.04
    for n, delay in enumerate(delays, start=1):
        ceiling = 0.01 * 2 ** (n - 1)
        assert ceiling / 2 - 0.001 <= delay <= ceiling + 0.001
    assert delays == sorted(delays)


def test_backoff_delay_bounds_and_cap() -> None:
    assert backoff_delay(1, 0.5, 10, rand=lambda: 0.0) == 0.25
    assert backoff_delay(1, 0.5, 10, rand=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 10, rand=lambda: 1.0) == 2.0
    assert backoff_delay(20, 0.5, 10, rand=lambda: 1.0) == 10.0
    assert backoff_delay(20, 0.5, 10, rand=lambda: 0.0) == 5.0


def test_loader_exception_never_escapes_warm() -> None:
    def load(key: str) -> str:
        raise KeyError(key)

    stats = make_warmer({}, keys=["a", "b"], loader=CallableValueLoader(load), max_retries=0).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.success_rate) == (0, 2, 0.0)
    assert not stats.ok


def test_key_provider_failure_is_logged_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    def keys() -> list[str]:
        raise RuntimeError("no catalogue")

    warmer = CacheWarmer({}, CallableKeyProvider(keys), CallableValueLoader(value_of), name="p")
    with caplog.at_level(logging.ERROR, logger="django_cachewarmers"):
        stats = warmer.warm()
    assert stats.run_error == "key provider failed: RuntimeError: no catalogue"
    assert not stats.ok
    assert "key provider failed" in caplog.text


def test_errors_are_bounded() -> None:
    stats = make_warmer(
        {},
        keys=[f"k{i}" for i in range(300)],
        loader=CallableValueLoader(lambda k: 1 / 0),
        max_retries=0,
    ).warm()
    assert stats.keys_failed == 300
    assert len(stats.errors) == stats.MAX_ERRORS
    assert stats.errors_omitted == 300 - stats.MAX_ERRORS


# -- parallelism, deadline, threads ----------------------------------------------------------


def test_loads_run_in_parallel_up_to_max_workers() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    together = threading.Barrier(3, timeout=10)

    def load(key: str) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            if key in ("k0", "k1", "k2"):
                together.wait()  # only passes if three loads really run at once
            time.sleep(0.005)
            return key
        finally:
            with lock:
                active -= 1

    keys = [f"k{i}" for i in range(40)]
    stats = make_warmer({}, keys=keys, loader=CallableValueLoader(load), max_workers=3).warm()
    assert stats.keys_warmed == 40
    assert peak == 3


def test_hanging_loader_is_bounded_by_warmup_timeout(release: threading.Event) -> None:
    def load(key: str) -> str:
        if key == "slow":
            release.wait()
        return key

    cache: dict[str, str] = {}
    warmer = make_warmer(
        cache, keys=["a", "slow", "b"], loader=CallableValueLoader(load), warmup_timeout_s=0.3
    )
    stats = warmer.warm()
    # warm() returned while the loader is still blocked: nothing joined the hung thread.
    assert not release.is_set()
    assert (stats.keys_warmed, stats.keys_failed) == (2, 1)
    assert stats.errors == ["slow: not warmed: timed out after 0.3s"]
    assert cache == {"a": "a", "b": "b"}
    assert not warmer.is_warming


def test_keys_loaded_before_a_loader_hangs_are_written_when_the_deadline_cuts(
    release: threading.Event,
) -> None:
    """A worker hands its loaded keys over in chunks; the chunk it holds when its loader hangs
    is taken by the run at the deadline and written, not lost."""

    def load(key: str) -> str:
        if key == "k10":
            release.wait()
        return key

    cache: dict[str, str] = {}
    keys = [f"k{i}" for i in range(20)]
    warmer = make_warmer(
        cache, keys=keys, loader=CallableValueLoader(load), max_workers=1, warmup_timeout_s=0.5
    )
    stats = warmer.warm()
    assert not release.is_set()
    assert (stats.keys_warmed, stats.keys_failed) == (10, 10)
    assert cache == {f"k{i}": f"k{i}" for i in range(10)}
    assert stats.errors[0] == "k10: not warmed: timed out after 0.5s"


def test_per_key_results_go_to_the_cache_in_batches_of_batch_size() -> None:
    from django.core.cache.backends.locmem import LocMemCache

    inner = LocMemCache("batches", {"OPTIONS": {"MAX_ENTRIES": 5000}})
    cache = RecordingCache(inner)
    keys = [f"k{i}" for i in range(1050)]
    stats = make_warmer(cache, keys=keys, batch_size=100, max_workers=3).warm()
    assert (stats.keys_warmed, stats.keys_verified) == (1050, 1050)
    sizes = sorted(len(batch) for batch, _ in cache.set_many_calls)
    assert sizes == [50] + [100] * 10
    assert sorted(key for batch, _ in cache.set_many_calls for key in batch) == sorted(keys)
    assert inner.get_many(["k0", "k1049"]) == {"k0": value_of("k0"), "k1049": value_of("k1049")}


def test_hung_loaders_do_not_pile_up_threads(release: threading.Event) -> None:
    def load(key: str) -> str:
        release.wait()
        return key

    warmer = CacheWarmer(
        {},
        StaticKeyProvider(["a", "b", "c"]),
        CallableValueLoader(load),
        WarmingConfig(max_workers=2, warmup_timeout_s=0.05, retry_backoff_s=0.0),
        idle_timeout=0.05,  # the released threads exit at once, not after the default 5 s
    )
    before = threading.active_count()
    for _ in range(10):
        stats = warmer.warm()
        assert stats.keys_failed == 3
    assert warmer._pool.alive == 2
    assert threading.active_count() <= before + 2
    release.set()
    assert wait_for(lambda: warmer._pool.alive == 0, timeout=15)


def test_idle_worker_threads_exit_and_run_the_exit_hook() -> None:
    exited: list[str] = []
    warmer = CacheWarmer(
        {},
        StaticKeyProvider(["a", "b"]),
        CallableValueLoader(value_of),
        WarmingConfig(max_workers=2),
        on_thread_exit=lambda: exited.append(threading.current_thread().name),
        idle_timeout=0.05,
    )
    assert warmer.warm().keys_warmed == 2
    assert wait_for(lambda: len(exited) == 2)
    assert warmer._pool.alive == 0
    assert warmer.warm().keys_warmed == 2  # new threads are started for the next run


# -- serialization of concurrent calls -------------------------------------------------------


def test_concurrent_warms_share_one_run() -> None:
    gate = threading.Event()
    calls: list[str] = []
    lock = threading.Lock()

    def load(key: str) -> str:
        gate.wait(10)
        with lock:
            calls.append(key)
        return key

    warmer = make_warmer({}, keys=["a", "b", "c"], loader=CallableValueLoader(load))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(warmer.warm())) for _ in range(2)]
    threads[0].start()
    assert wait_for(lambda: warmer.is_warming)
    joined = watch_waiters(warmer)
    threads[1].start()
    assert joined.wait(10)  # the second caller waits for the run in flight (still gated)
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(calls) == ["a", "b", "c"]  # one run, not two
    assert len(results) == 2
    assert results[0] is results[1]


def test_warm_for_other_keys_waits_then_runs() -> None:
    gate = threading.Event()
    order: list[str] = []

    def load(key: str) -> str:
        if key == "first":
            gate.wait(10)
        order.append(key)
        return key

    warmer = make_warmer({}, keys=["first"], loader=CallableValueLoader(load))
    first = warmer.warm_async()
    assert wait_for(lambda: warmer.is_warming)
    queued = watch_waiters(warmer)
    second = warmer.warm_async(["second"])
    assert queued.wait(10)  # the second call waits for the run in flight to end
    assert order == []  # the second run has not started while the first is in flight
    gate.set()
    assert first.result(10).keys_warmed == 1
    assert second.result(10).keys_warmed == 1
    assert order == ["first", "second"]


def test_warm_async_and_warm_key() -> None:
    cache: dict[str, str] = {}
    warmer = make_warmer(cache)
    future = warmer.warm_async()
    assert future.result(10).keys_warmed == 25
    assert warmer.stats is future.result()
    assert warmer.warm_key("extra") is True
    assert cache["extra"] == value_of("extra")
    assert warmer.stats.keys_warmed == 25  # warm_key leaves the last run's stats alone

    failing = make_warmer(cache, loader=CallableValueLoader(lambda k: 1 / 0), max_retries=0)
    assert failing.warm_key("x") is False


def test_cancel_stops_a_run_promptly(release: threading.Event) -> None:
    def load(key: str) -> str:
        release.wait()
        return key

    warmer = make_warmer({}, keys=["a"], loader=CallableValueLoader(load), warmup_timeout_s=3600)
    future = warmer.warm_async()
    assert wait_for(lambda: warmer.is_warming)
    assert warmer.cancel("shutting down")
    stats = future.result(timeout=10)
    assert stats.errors == ["a: not warmed: shutting down"]
    assert not warmer.cancel()


# -- scheduler -------------------------------------------------------------------------------


def test_scheduler_warms_every_interval_and_is_idempotent() -> None:
    runs: list[float] = []
    warmer = make_warmer({}, refresh_interval_s=0.02)
    assert warmer.start_scheduler(lambda: runs.append(time.monotonic()))
    assert not warmer.start_scheduler()
    named = [t for t in threading.enumerate() if t.name == "cachewarmer[test]-scheduler"]
    assert len(named) == 1
    try:
        assert wait_for(lambda: len(runs) >= 3)
    finally:
        warmer.stop_scheduler(timeout=10)
    assert not warmer.scheduler_running


def test_scheduler_default_run_is_warm() -> None:
    cache: dict[str, str] = {}
    warmer = make_warmer(cache, refresh_interval_s=3600)
    warmer.start_scheduler(run_immediately=True)
    try:
        assert wait_for(lambda: len(cache) == 25)
    finally:
        warmer.stop_scheduler(timeout=10)


def test_stop_scheduler_does_not_wait_out_the_interval() -> None:
    warmer = make_warmer({}, refresh_interval_s=3600)
    warmer.start_scheduler()
    thread = warmer._scheduler
    assert thread is not None
    warmer.stop_scheduler(timeout=10)
    assert not thread.is_alive()  # joined within 10 s of an hour-long interval


@pytest.mark.parametrize("interval", [threading.TIMEOUT_MAX * 2, math.inf])
def test_an_interval_past_a_threads_longest_timeout_is_waited_out(interval: float) -> None:
    # One Event.wait() that long raises OverflowError in the scheduler thread.
    warmer = make_warmer({})
    warmer.start_scheduler(interval=interval)
    thread = warmer._scheduler
    assert thread is not None
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert wait_until(event, time.monotonic() + interval, time.monotonic)
    assert thread.is_alive()
    warmer.stop_scheduler(timeout=10)
    assert not thread.is_alive()


def test_stop_scheduler_cancels_a_hung_run(release: threading.Event) -> None:
    def load(key: str) -> str:
        release.wait()
        return key

    warmer = make_warmer({}, keys=["a"], loader=CallableValueLoader(load), warmup_timeout_s=3600)
    warmer.start_scheduler(interval=3600, run_immediately=True)
    assert wait_for(lambda: warmer.is_warming)
    warmer.stop_scheduler(timeout=10)
    assert not warmer.scheduler_running
    assert warmer.stats.errors == ["a: not warmed: scheduler stopped"]


def test_exception_in_a_scheduled_run_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def run() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    warmer = make_warmer({})
    with caplog.at_level(logging.ERROR, logger="django_cachewarmers"):
        warmer.start_scheduler(run, interval=0.01)
        try:
            assert wait_for(lambda: len(calls) >= 3)
        finally:
            warmer.stop_scheduler(timeout=10)
    assert "scheduled run failed; schedule goes on" in caplog.text
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_rejects_what_is_not_a_cache_provider_or_loader() -> None:
    with pytest.raises(TypeError, match="cache must be a Django cache"):
        CacheWarmer(object(), StaticKeyProvider([]), CallableValueLoader(value_of))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_provider"):
        CacheWarmer({}, ["a"], CallableValueLoader(value_of))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value_loader"):
        CacheWarmer({}, StaticKeyProvider([]), value_of)  # type: ignore[arg-type]


def test_progress_reports_done_and_total() -> None:
    seen: list[tuple[int, int]] = []
    keys = [f"k{i}" for i in range(3000)]
    stats = make_warmer({}, keys=keys, batch_size=100).warm(
        progress=lambda d, t: seen.append((d, t))
    )
    assert stats.keys_warmed == 3000
    assert seen, "progress was never reported"
    assert all(t == 3000 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (3000, 3000)


def test_no_store_counts_as_warmed_and_writes_nothing() -> None:
    from django_cachewarmers import STORED_BY_LOADER

    cache = RecordingCache(caches["default"])
    caches["default"].clear()

    def load(key: str) -> Any:
        if key.endswith("1"):
            caches["default"].set(key, "stored by the loader")  # it warms the key itself
            return STORED_BY_LOADER
        return value_of(key)

    stats = make_warmer(cache, keys=["k1", "k2", "k11"], loader=CallableValueLoader(load)).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (3, 0, 3)
    assert [written for written, _ in cache.set_many_calls] == [["k2"]]
    assert caches["default"].get("k1") == "stored by the loader"


def test_no_store_keys_the_loader_did_not_store_fail_the_read_back() -> None:
    from django_cachewarmers import STORED_BY_LOADER

    caches["default"].clear()
    loader = CallableValueLoader(lambda k: STORED_BY_LOADER if k.endswith("1") else value_of(k))
    stats = make_warmer(caches["default"], keys=["k1", "k2", "k11"], loader=loader).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_lost) == (1, 2, 2)
    assert stats.run_error is None  # k2 reads back: the run is failing, not a failed run
    assert sorted(e.split(":")[0] for e in stats.errors) == ["k1", "k11"]
    assert all("not in the cache when read back" in e for e in stats.errors)


@pytest.mark.parametrize("alias", ["default", pytest.param("db", marks=pytest.mark.django_db)])
def test_keys_a_django_cache_would_reject_are_failed_keys(alias: str) -> None:
    cache = caches[alias]
    cache.clear()
    long_key = "k" * 300
    stats = make_warmer(cache, keys=["good", long_key, "has space", "tab\there", 42, "ok:2"]).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (2, 4)
    reasons = "\n".join(stats.errors)
    assert "invalid cache key: 3" in reasons  # the length, with prefix and version
    assert "at most 250 are portable" in reasons
    assert "has space: invalid cache key: it contains ' '" in reasons
    assert "tab\there: invalid cache key: it contains '\\t'" in reasons
    assert "42: invalid cache key: keys of a Django cache must be strings, got int" in reasons
    assert cache.get("good") == value_of("good")
    assert cache.get("ok:2") == value_of("ok:2")


def test_a_long_key_the_loader_stores_itself_is_not_refused() -> None:
    from django_cachewarmers import STORED_BY_LOADER

    url = "http://example.com/" + "p" * 400  # a page URL: render_page stores under its own key
    stats = make_warmer(
        caches["default"], keys=[url], loader=CallableValueLoader(lambda k: STORED_BY_LOADER)
    ).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (1, 0)


def test_a_plain_mapping_takes_any_hashable_key() -> None:
    cache: dict[Any, Any] = {}
    stats = make_warmer(cache, keys=["a b", 42, ("t", 1)]).warm()
    assert stats.keys_warmed == 3
    assert cache[42] == value_of(42)
