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

from django_cachewarmers.claims import Claims
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


def test_startup_claim_once_per_window_even_across_a_boundary(cache_factory: Any) -> None:
    a, b = Claims(cache_factory(), "w"), Claims(cache_factory(), "w")
    window = 60.0
    start = (T0 // window) * window + window - 0.1  # 0.1 s before a window boundary
    assert a.claim_startup(window, now=start)
    assert not b.claim_startup(window, now=start + 0.05)  # same window
    assert not b.claim_startup(window, now=start + 0.2)  # next window, but only 0.2 s later
    assert b.claim_startup(window, now=start + window + 1)  # a restart later warms again


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


def test_racing_processes_get_exactly_one_winner(cache_factory: Any) -> None:
    contenders = [Claims(cache_factory(), "race") for _ in range(8)]
    barrier = threading.Barrier(len(contenders), timeout=10)
    wins: list[bool | str] = []
    lock = threading.Lock()

    def contend(claims: Claims) -> None:
        barrier.wait()
        try:
            won: bool | str = claims.claim_slot(5.0, now=T0 + 1)
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
