"""No expiry gap: the first refresh comes within one interval of the startup warm's start, and
an entry written by a run outlives the time until the next run rewrote it (issue 14, item 5)."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_cachewarmers import registry
from django_cachewarmers.core.schedule import next_slot
from django_cachewarmers.parsing import get_specs, parse_warmer
from django_cachewarmers.runner import ClaimKind, Trigger
from django_cachewarmers.scheduler import WarmingScheduler, first_slots
from tests.processes import Project, started_at, wait_until
from tests.redis_server import RedisServer, close_redis

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


def product_keys() -> list[str]:
    return ["p1", "p2"]


def load_product(key: str) -> str:
    return f"value of {key}"


def warmer(**fields: Any) -> dict[str, Any]:
    return {
        "keys": "tests.test_schedule.product_keys",
        "loader": "tests.test_schedule.load_product",
        "strategy": "scheduled",
        **fields,
    }


class FakeClock:
    """A wall clock (epoch seconds) that moves only when the scheduler waits."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingScheduler(WarmingScheduler):
    """The real schedule loop, with its clock injected and its runs recorded instead of run.

    ``_wait_until`` jumps the clock to the moment waited for; after ``limit`` dispatches the
    schedule stops.
    """

    def __init__(self, clock: FakeClock, limit: int, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self.fake = clock
        self.limit = limit
        self.dispatched: list[tuple[str, str, float]] = []

    def _wait_until(self, at: float) -> bool:
        self.fake.now = max(self.fake.now, at)
        return self._stop.is_set()

    def _dispatch(self, name: str, trigger: Trigger, claim: ClaimKind) -> None:
        self.dispatched.append((name, trigger, self.fake.now))
        if len(self.dispatched) >= self.limit:
            self._stop.set()


@pytest.mark.parametrize("phase", [0.0, 0.01, 0.3, 0.49, 0.5, 0.51, 0.75, 0.99])
def test_first_scheduled_run_within_one_interval_of_the_startup_start(phase: float) -> None:
    # The startup warm starts at every phase of a 4 s slot; the old rule (a slot at least half an
    # interval later) put the first refresh up to 1.5 intervals after it.
    interval = 4.0
    started = 1_000_000.0 + phase * interval
    clock = FakeClock(started)
    with override_settings(CACHE_WARMERS={"w": warmer(refresh_interval=4, timeout=4)}):
        scheduler = RecordingScheduler(clock, limit=4)
        scheduler.run()
    (name, trigger, at), *refreshes = scheduler.dispatched
    assert (name, trigger, at) == ("w", "startup", started)
    first = refreshes[0][2]
    assert started < first <= started + interval
    assert first % interval == 0  # aligned to the wall clock, so processes' claims meet
    assert [t for _, t, _ in refreshes] == ["schedule"] * 3
    # Then one interval apart.
    assert [b[2] - a[2] for a, b in itertools.pairwise(refreshes)] == [interval, interval]


def test_first_slots_bound_for_any_start() -> None:
    with override_settings(
        CACHE_WARMERS={
            "a": warmer(refresh_interval=4),
            "b": warmer(refresh_interval=0.7),
            "c": warmer(strategy="eager"),
        }
    ):
        specs = list(get_specs().values())
    for i in range(2000):
        started = 1_700_000_000 + i * 0.0137
        slots = first_slots(specs, started)
        assert set(slots) == {"a", "b"}  # an eager warmer has no schedule
        for spec in specs:
            if spec.name in slots:
                assert started < slots[spec.name] <= started + spec.refresh_interval


def test_next_slot_is_aligned_and_after_now() -> None:
    assert next_slot(4, 1003.99) == 1004
    assert next_slot(4, 1004.0) == 1008
    assert next_slot(300, 1000) == 1200


# --------------------------------------------------------------------------- a real cache


@pytest.fixture
def redis_alias(redis_server: RedisServer) -> Iterator[str]:
    """A "redis" alias in CACHES on the suite's own redis-server (database 5), emptied after."""
    caches_setting = {
        "default": {"BACKEND": LOCMEM, "LOCATION": "default"},
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{redis_server.url}/5",
        },
    }
    with override_settings(CACHES=caches_setting):
        yield "redis"
        cache = caches.create_connection("redis")
        cache.clear()  # the suite's own server only
        close_redis(cache)


class SlowerLoader:
    """Returns a new value each run; every second run takes 0.4 s longer (a busier database).

    So a key is written later into one refresh than into the run before: with a TTL of exactly
    ``refresh_interval`` it would expire 0.4 s before it is rewritten.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, key: str) -> str:
        with self.lock:
            self.calls += 1
            calls = self.calls
        if calls % 2 == 0:
            time.sleep(0.4)
        return f"{key}#{calls}"


slower = SlowerLoader()


def jittery_load(key: str) -> str:
    """A loader whose latency varies from call to call (0 to 0.4 s), as a busy database's does:
    a key is written at a different moment of each run."""
    time.sleep(random.uniform(0, 0.4))
    return f"value of {key}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_key_present_continuously_across_refreshes(redis_alias: str) -> None:
    """timeout == refresh_interval: from the end of the startup warm, every read is a hit."""
    global slower
    slower = SlowerLoader()
    definition = {
        "keys": ["k"],
        "loader": "tests.test_schedule.slower",
        "cache": redis_alias,
        "strategy": "scheduled",
        "refresh_interval": 1,
        "timeout": 1,
        "warmup_timeout": 1,
    }
    reader = caches.create_connection(redis_alias)
    with override_settings(
        CACHE_WARMERS={"w": definition}, SILENCED_SYSTEM_CHECKS=["django_cachewarmers.W003"]
    ):
        assert parse_warmer("w", definition).config.cache_timeout == 2  # the TTL grace
        # Start just after a slot boundary plus 0.6 interval: the worst phase for the old
        # schedule (its first refresh came 1.4 intervals after the startup warm).
        now = time.time()
        time.sleep((0.6 - now % 1.0) % 1.0)
        scheduler = WarmingScheduler(["w"])
        scheduler.start()
        try:
            deadline = time.monotonic() + 10
            while reader.get("k") is None:  # the startup warm
                assert time.monotonic() < deadline, "the startup warm never wrote the key"
                time.sleep(0.005)
            seen: list[str | None] = []
            end = time.monotonic() + 4.5  # four refreshes
            while time.monotonic() < end:
                seen.append(reader.get("k"))
                time.sleep(0.01)
        finally:
            scheduler.stop()
            registry.reset()
            close_redis(reader)
    misses = seen.count(None)
    assert misses == 0, f"{misses} of {len(seen)} reads missed"
    values = {v for v in seen if v is not None}
    assert len(values) >= 3, values  # the startup value and at least two refreshes


# --------------------------------------------------------------------------- N processes


@pytest.mark.slow
def test_gunicorn_workers_keep_the_key_present_once_per_interval(
    projects: Callable[..., Project],
) -> None:
    """Two gunicorn workers on one Redis, timeout == refresh_interval: once-per-cluster claims
    (one run per slot) still rewrite every key before it expires."""
    keys = [f"item:{i}" for i in range(8)]
    definition = {
        "keys": keys,
        "loader": "tests.test_schedule.jittery_load",
        "strategy": "scheduled",
        "refresh_interval": 1,
        "timeout": 1,
        "warmup_timeout": 1,  # a TTL of 2 s
    }
    p = projects({"w": definition})
    server, _ = p.start_gunicorn("gunicorn.log", workers=2)
    wait_until(lambda: p.warmed(*keys), 60, "the startup warm")
    misses = reads = 0
    end = time.monotonic() + 5
    while time.monotonic() < end:
        found = p.cache.get_many(keys)
        reads += len(keys)
        misses += sum(1 for key in keys if found.get(key) != f"value of {key}")
        time.sleep(0.02)
    runs = p.runs()
    assert p.stop(server) == 0
    assert misses == 0, f"{misses} of {reads} reads missed"
    scheduled = [r for r in runs if r["trigger"] == "schedule"]
    assert len(scheduled) >= 3, runs
    slots = [math.floor(started_at(r).timestamp()) for r in scheduled]
    assert len(slots) == len(set(slots)), f"two runs in one interval: {scheduled}"
    assert [r["trigger"] for r in runs].count("startup") == 1, runs
