"""Once-per-cluster claims against real backends: LocMem, the database cache and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connections

from django_cachewarmers.claims import Claims, startup_is_covered
from tests.redis_server import RedisServer, close_redis

T0 = 1_700_000_000.0  # a fixed "now", so window arithmetic is exact


@pytest.fixture(
    params=[
        "locmem",
        pytest.param("database", marks=pytest.mark.django_db(transaction=True)),
        "redis",
    ]
)
def cache_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """Makes independent connections to one shared cache (as separate processes would have)."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        made: list[RedisCache] = []

        def make() -> Any:
            made.append(RedisCache(f"{server.url}/2", {}))
            return made[-1]

        yield make
        if made:
            made[0].clear()
        for cache in made:
            close_redis(cache)
        return
    alias = "default" if request.param == "locmem" else "db"
    caches[alias].clear()
    yield lambda: caches.create_connection(alias)
    caches[alias].clear()


def test_startup_claim_once_per_last_run_seen(cache_factory: Any) -> None:
    a, b, c = (Claims(cache_factory(), "w") for _ in range(3))
    # Processes starting together see the same last run (none yet): one of them warms.
    assert a.claim_startup(None, 60.0, now=T0)
    assert not b.claim_startup(None, 60.0, now=T0 + 0.5)
    # Once a complete run is recorded, a process that finds it stale competes anew: a restart
    # whose entries would expire before its first refresh warms again, once.
    a.record_run_started(T0 + 0.1, ttl=5)
    last = c.last_run_started()
    assert last == T0 + 0.1
    assert c.claim_startup(last, 60.0, now=T0 + 30)
    assert not b.claim_startup(last, 60.0, now=T0 + 30.2)


def test_last_run_record_lasts_as_long_as_the_entries(cache_factory: Any) -> None:
    a, b = Claims(cache_factory(), "w"), Claims(cache_factory(), "w")
    assert b.last_run_started() is None
    a.record_run_started(T0, ttl=1)
    assert b.last_run_started() == T0
    deadline = time.monotonic() + 10
    while b.last_run_started() is not None:  # it expires with the entries it vouches for
        assert time.monotonic() < deadline, "the last-run record never expired"
        time.sleep(0.2)
    a.record_run_started(T0 + 1, ttl=None)  # entries that never expire: kept
    assert b.last_run_started() == T0 + 1


# refresh_interval 4, timeout 4, warmup_timeout 1: the TTL grace writes with a TTL of 5 s.
SLOT = (T0 // 4) * 4 + 400  # a slot boundary
SCHEDULED = {"ttl": 5.0, "warmup_timeout": 1.0, "refresh_interval": 4.0, "margin": 60.0}
EAGER = {"ttl": 300.0, "warmup_timeout": 60.0, "refresh_interval": None, "margin": 60.0}


@pytest.mark.parametrize(
    ("last_run", "now", "params", "covered"),
    [
        # The tester's case: the last slot ran at SLOT - 4, a restart lands just after SLOT
        # (first slot SLOT + 4): its entries expire at SLOT + 1, so the new process warms.
        (SLOT - 4, SLOT + 0.7, SCHEDULED, False),
        # Started before SLOT: the first slot is SLOT, whose writes land before SLOT + 1.
        (SLOT - 4, SLOT - 0.3, SCHEDULED, True),
        (SLOT - 4.01, SLOT - 0.3, SCHEDULED, False),  # ... but not a moment earlier
        (SLOT + 0.1, SLOT + 0.6, SCHEDULED, True),  # a sibling's run of half a second ago
        (SLOT - 50, SLOT + 0.5, SCHEDULED, False),  # the old code's 60 s startup window
        (None, SLOT, SCHEDULED, False),  # no complete run known
        (SLOT - 50, SLOT, {**SCHEDULED, "ttl": None}, True),  # never expires
        (SLOT - 0.1, SLOT, {**SCHEDULED, "ttl": 0.5}, False),  # whole seconds: 0
        (SLOT - 5.5, SLOT - 0.5, {**SCHEDULED, "ttl": 10.9}, True),  # 10 s: SLOT+4.5 >= SLOT+1
        (SLOT - 5.5, SLOT + 0.5, {**SCHEDULED, "ttl": 10.9}, False),  # first slot SLOT + 4
        (SLOT - 100, SLOT, EAGER, True),  # 200 s left, more than the 60 s margin
        (SLOT - 240, SLOT, EAGER, False),  # 60 s left: warm again
        (SLOT - 10, SLOT, {**EAGER, "ttl": 30.0}, False),  # short TTL: a restart warms
    ],
)
def test_startup_is_covered(
    last_run: float | None, now: float, params: dict[str, Any], covered: bool
) -> None:
    assert startup_is_covered(last_run, now=now, **params) is covered


def test_slot_claim_one_winner_per_interval(cache_factory: Any) -> None:
    a, b = Claims(cache_factory(), "w"), Claims(cache_factory(), "w")
    base = (T0 // 10) * 10
    assert a.claim_slot(1.0, now=base + 0.99)
    assert not b.claim_slot(1.0, now=base + 0.995)  # same slot, a moment later
    assert not b.claim_slot(1.0, now=base + 1.01)  # timers straddling the boundary
    assert b.claim_slot(1.0, now=base + 1.6)  # the next slot, half an interval on
    assert not a.claim_slot(1.0, now=base + 1.7)
    assert a.claim_slot(1.0, now=base + 2.6)


def test_claims_use_a_fresh_key_per_window(cache_factory: Any) -> None:
    claims = Claims(cache_factory(), "w")
    assert claims.key("slot", 5) != claims.key("slot", 6)
    assert claims.key("slot", 5).endswith(":w:slot:5")


@pytest.mark.parametrize("kind", ["slot", "startup"])
def test_racing_processes_get_exactly_one_winner(cache_factory: Any, kind: str) -> None:
    contenders = [Claims(cache_factory(), "race") for _ in range(8)]
    barrier = threading.Barrier(len(contenders), timeout=10)
    wins: list[bool | str] = []
    lock = threading.Lock()

    def contend(claims: Claims) -> None:
        barrier.wait()
        try:
            won: bool | str = (
                claims.claim_slot(5.0, now=T0 + 1)
                if kind == "slot"
                else claims.claim_startup(T0 - 30, 60.0, now=T0 + 1)
            )
        except Exception as exc:  # the runner treats a failed claim as "not won"
            won = f"error: {exc}"
        finally:
            connections.close_all()  # this thread's own connection (database cache)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(wins) == 8
    assert wins.count(True) == 1


def test_running_mark_blocks_a_second_run_and_a_crashed_holder_expires(cache_factory: Any) -> None:
    a, b = Claims(cache_factory(), "w"), Claims(cache_factory(), "w")
    assert a.acquire_running(ttl=60)
    assert not b.acquire_running(ttl=60)
    a.release_running()
    assert b.acquire_running(ttl=1)  # b "crashes": it never releases
    deadline = time.monotonic() + 10
    while not a.acquire_running(ttl=60):
        assert time.monotonic() < deadline, "the crashed holder's mark never expired"
        time.sleep(0.2)


def test_release_only_drops_a_mark_this_process_holds(cache_factory: Any) -> None:
    cache = cache_factory()
    claims = Claims(cache, "w")
    cache.set(claims.key("running"), "another-host:1:abc", 60)
    claims.release_running()
    assert cache.get(claims.key("running")) == "another-host:1:abc"
