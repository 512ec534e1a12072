"""Read-back verification: "warmed" means the next real read of that key, through the same cache,
is a hit. Real LocMem, database and file caches, Django's DummyCache, and the real django-redis
package on a redis-server the test starts and stops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_cachewarmers import (
    STORED_BY_LOADER,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from django_cachewarmers.backends import max_entries as cache_max_entries
from django_cachewarmers.claims import CacheUnreachable, Claims
from django_cachewarmers.core.collector import VERIFY_ALL_UP_TO
from django_cachewarmers.runner import run_warm
from tests.redis_server import RedisServer


def value_of(key: Any) -> dict[str, Any]:
    return {"key": key}


def warmer(cache: Any, keys: list[Any], loader: Any = value_of, **config: Any) -> CacheWarmer:
    return CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        CallableValueLoader(loader),
        WarmingConfig(**{"max_workers": 1, "batch_size": 20, **config}),
        name="verify",
    )


def present(cache: Any, keys: list[str]) -> list[str]:
    return [key for key in keys if cache.get(key) is not None]


# -- MAX_ENTRIES: culled keys are failed keys, the rest read back --------------------------------


@pytest.fixture(params=["locmem", pytest.param("database", marks=pytest.mark.django_db), "file"])
def small_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A real culling cache that holds at most 50 entries."""
    options = {"OPTIONS": {"MAX_ENTRIES": 50}}
    cache: Any
    if request.param == "locmem":
        cache = LocMemCache("verify-small", options)
    elif request.param == "database":
        cache = DatabaseCache("cachewarmers_test_cache", options)
    else:
        cache = FileBasedCache(str(tmp_path / "files"), options)
    cache.clear()
    yield cache
    cache.clear()


def test_keys_culled_by_max_entries_fail_with_the_cause(
    small_cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [f"item:{i}" for i in range(200)]
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        stats = warmer(small_cache, keys).warm()
    there = present(small_cache, keys)
    assert 0 < len(there) <= 50
    # The promise: what is counted warmed is exactly what a read finds.
    assert stats.keys_warmed == len(there)
    assert stats.keys_failed == 200 - len(there) == stats.keys_lost
    assert stats.keys_verified == 200
    assert stats.run_error is None  # some keys read back: a failing run, not a failed one
    assert "culled by the cache's MAX_ENTRIES (50)" in stats.errors[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("200 keys to warm" in w and "MAX_ENTRIES=50" in w for w in warnings), warnings


def test_a_run_within_max_entries_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    cache = LocMemCache("verify-fits", {"OPTIONS": {"MAX_ENTRIES": 50}})
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        stats = warmer(cache, [f"k{i}" for i in range(40)]).warm()
    assert (stats.keys_warmed, stats.keys_verified, stats.keys_lost) == (40, 40, 0)
    assert not caplog.records


def test_cache_max_entries_names_the_limit_of_culling_backends_only(
    tmp_path: Path, redis_cache: Any
) -> None:
    assert cache_max_entries(LocMemCache("a", {})) == 300  # Django's default
    assert cache_max_entries(LocMemCache("b", {"OPTIONS": {"MAX_ENTRIES": 7}})) == 7
    assert cache_max_entries(FileBasedCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 9}})) == 9
    assert cache_max_entries(DatabaseCache("t", {"OPTIONS": {"MAX_ENTRIES": 11}})) == 11
    assert cache_max_entries(redis_cache) is None  # evicts by memory, not by count
    assert cache_max_entries(DummyCache("d", {})) is None
    assert cache_max_entries({}) is None


# -- nothing reads back: a failed run ------------------------------------------------------------


def test_ttl_zero_writes_nothing_keeps_the_old_value_and_fails_the_run() -> None:
    cache = caches["default"]
    cache.clear()
    cache.set("k1", "good old value")
    stats = warmer(cache, ["k1", "k2", "k3"], cache_timeout=0).warm()
    assert (stats.keys_warmed, stats.keys_failed) == (0, 3)
    assert stats.run_error is not None
    assert "timeout 0 means don't cache" in stats.run_error
    assert cache.get("k1") == "good old value"  # Django would have deleted it


def test_a_no_op_cache_is_a_failed_run() -> None:
    stats = warmer(DummyCache("dummy", {}), ["a", "b"]).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_lost) == (0, 2, 2)
    assert (
        stats.run_error == "nothing read back: the cache is a no-op (DummyCache): it stores nothing"
    )
    assert not stats.ok


# -- the threshold: every key up to 10,000, a random sample above --------------------------------


def test_every_key_is_read_back_up_to_the_threshold() -> None:
    cache = LocMemCache("verify-all", {"OPTIONS": {"MAX_ENTRIES": 20_000}})
    keys = [f"k{i}" for i in range(VERIFY_ALL_UP_TO)]
    stats = warmer(cache, keys, batch_size=500).warm()
    assert VERIFY_ALL_UP_TO >= 10_000
    assert (stats.keys_warmed, stats.keys_verified, stats.keys_lost) == (len(keys), len(keys), 0)


def test_above_the_threshold_a_sample_is_read_back_and_its_losses_fail_the_run() -> None:
    # 12,000 keys into a LocMem that culls a third of its entries each time it reaches 11,000.
    cache = LocMemCache("verify-sample", {"OPTIONS": {"MAX_ENTRIES": 11_000}})
    keys = [f"k{i}" for i in range(12_000)]
    stats = warmer(cache, keys, batch_size=500).warm()
    assert stats.keys_verified == VERIFY_ALL_UP_TO  # a sample, not all 12,000
    assert stats.keys_lost > 0
    assert stats.keys_failed == stats.keys_lost
    assert stats.keys_warmed == len(keys) - stats.keys_lost
    assert not stats.ok
    assert stats.run_error is None
    assert any(e.startswith("read-back sample: ") for e in stats.errors), stats.errors[-1]
    assert "MAX_ENTRIES (11000)" in stats.errors[1]
    # Each key reported lost really is missing.
    lost = [e.split(": ", 1)[0] for e in stats.errors if "read back" in e and e.startswith("k")]
    assert lost
    assert present(cache, lost) == []


# -- keys the loader stores itself ---------------------------------------------------------------


def test_no_store_keys_are_read_back_too() -> None:
    cache = caches["default"]
    cache.clear()

    def load(key: str) -> Any:
        if key == "honest":
            cache.set(key, "stored by the loader")
        return STORED_BY_LOADER

    stats = warmer(cache, ["honest", "forgetful"], loader=load).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (1, 1, 2)
    assert stats.errors[0].startswith("forgetful: not in the cache when read back")


# -- django-redis IGNORE_EXCEPTIONS with Redis stopped (issue 14, item 4) ------------------------


def ignoring_cache_settings(server: RedisServer) -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"{server.url}/0",
        "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }


def close_django_redis(cache: Any) -> None:
    """Close a django-redis cache's sockets (its close() keeps them unless CLOSE_CONNECTION)."""
    cache.client.do_close_clients()


def test_django_redis_ignoring_errors_with_redis_stopped_fails_every_key(
    own_redis: RedisServer,
) -> None:
    from django_redis.cache import RedisCache as DjangoRedisCache

    config = ignoring_cache_settings(own_redis)
    cache = DjangoRedisCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    keys = [f"k{i}" for i in range(5)]
    try:
        up = warmer(cache, keys, batch_size=2).warm()
        assert (up.keys_warmed, up.keys_failed, up.keys_verified) == (5, 0, 5)
        own_redis.stop()
        down = warmer(cache, keys, batch_size=2).warm()
        assert (down.keys_warmed, down.keys_failed) == (0, 5)
        assert down.run_error is not None
        assert "unreachable" in down.run_error
        assert down.success_rate == 0.0
    finally:
        close_django_redis(cache)


@pytest.mark.django_db(transaction=True)
def test_warm_cache_exits_1_and_a_scheduled_run_says_unreachable(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    warmers = {
        "ignored": {
            "keys": ["a", "b", "c", "d", "e"],
            "loader": "tests.test_verify.value_of",
            "cache": "ignoring",
            "strategy": "scheduled",
            "refresh_interval": 60,
        }
    }
    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "ignoring": ignoring_cache_settings(own_redis),
    }
    with override_settings(CACHES=caches_setting, CACHE_WARMERS=warmers):
        try:
            call_command("warm_cache", "ignored", "--no-progress", stdout=_Sink(), stderr=_Sink())
            own_redis.stop()
            err = _Sink()
            with pytest.raises(CommandError) as excinfo:
                call_command("warm_cache", "ignored", "--no-progress", stdout=_Sink(), stderr=err)
            assert excinfo.value.returncode == 1
            assert "unreachable" in err.getvalue()
            from django_cachewarmers.models import WarmingRun

            last = WarmingRun.objects.order_by("-pk").first()
            assert last is not None
            assert (last.keys_warmed, last.keys_failed) == (0, 5)
            assert "unreachable" in last.run_error
            with caplog.at_level(logging.INFO, logger="django_cachewarmers"):
                assert run_warm("ignored", trigger="schedule", claim="schedule") is None
            messages = [r.getMessage() for r in caplog.records]
            assert any("its cache is unreachable" in m for m in messages), messages
            assert not any("another process has it" in m for m in messages), messages
        finally:
            close_django_redis(caches["ignoring"])


def test_a_claim_refused_by_a_cache_that_stores_nothing_is_an_outage(
    own_redis: RedisServer,
) -> None:
    from django_redis.cache import RedisCache as DjangoRedisCache

    config = ignoring_cache_settings(own_redis)
    cache = DjangoRedisCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    other = Claims(DjangoRedisCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]}), "w")
    try:
        claims = Claims(cache, "w")
        assert claims.claim_slot(60.0, now=1_700_000_000.0)
        assert not other.claim_slot(60.0, now=1_700_000_001.0)  # really held by another
        assert claims.acquire_running(60)
        assert not other.acquire_running(60)
        own_redis.stop()
        with pytest.raises(CacheUnreachable, match="unreachable"):
            claims.claim_slot(60.0, now=1_700_000_200.0)
        with pytest.raises(CacheUnreachable):
            other.acquire_running(60)
    finally:
        close_django_redis(cache)
        close_django_redis(other.cache)


def test_django_redis_is_read_back_through_its_own_get_many(redis_server: RedisServer) -> None:
    from django_redis.cache import RedisCache as DjangoRedisCache

    cache = DjangoRedisCache(f"{redis_server.url}/5", {})
    try:
        stats = warmer(cache, [f"k{i}" for i in range(30)], batch_size=7).warm()
        assert (stats.keys_warmed, stats.keys_verified, stats.keys_lost) == (30, 30, 0)
        assert cache.get("k29") == {"key": "k29"}
        cache.clear()  # the suite's own server, a database of this test's own
    finally:
        close_django_redis(cache)


def test_django_redis_cache_read_back_finds_keys_evicted_after_writing(
    redis_cache: Any,
) -> None:
    """A key deleted between write and read-back (as maxmemory eviction would) is lost, named."""

    def progress(done: int, total: int) -> None:
        if done == total:  # every key loaded, k0's batch long written, the last one not yet
            redis_cache.delete("k0")

    stats = warmer(redis_cache, [f"k{i}" for i in range(10)], batch_size=3).warm(progress=progress)
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_lost) == (9, 1, 1)
    assert stats.errors[0].startswith("k0: not in the cache when read back: evicted or expired")


class _Sink:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)
