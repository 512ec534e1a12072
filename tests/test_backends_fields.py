"""Every field applied exactly as documented, on every backend: one table of field x backend.

Backends (all real): LocMemCache, DatabaseCache, FileBasedCache, Django's RedisCache and the
django-redis package on the suite's redis-server, PyMemcacheCache on the suite's memcached. Each
value is read back through the backend's own ``get``; each TTL is read where the backend keeps it
(LocMem's expiry table, the database row, the cache file's header, Redis' TTL command, memcached's
meta get), so "applied" means what the cache holds, not what was sent.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from tests.memcached_server import MemcachedServer
from tests.redis_server import RedisServer, close_redis

#: The backends' own DEFAULT_TIMEOUT (``TIMEOUT``) in these tests: not Django's 300, so that
#: "default" cannot pass by accident.
DEFAULT_TIMEOUT = 500
OPTIONS: dict[str, Any] = {"TIMEOUT": DEFAULT_TIMEOUT}

Ttl = Callable[[str], "float | None"]  # seconds left; None: never expires


@pytest.fixture(
    params=[
        "locmem",
        pytest.param("database", marks=pytest.mark.django_db),
        "file",
        "redis",
        "django-redis",
        "memcached",
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Ttl]]:
    """(cache, ttl_of): a real cache with TIMEOUT=500 and a reader of a key's remaining TTL."""
    name = request.param
    cache: Any
    ttl_of: Ttl
    if name == "locmem":
        cache = LocMemCache("fields", OPTIONS)

        def ttl_of(key: str) -> float | None:
            expiry = cache._expire_info[cache.make_key(key)]
            return None if expiry is None else expiry - time.time()

    elif name == "database":
        cache = DatabaseCache("cachewarmers_test_cache", OPTIONS)

        def ttl_of(key: str) -> float | None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT expires FROM cachewarmers_test_cache WHERE cache_key = %s",
                    [cache.make_key(key)],
                )
                (expires,) = cursor.fetchone()
            if isinstance(expires, str):
                expires = datetime.fromisoformat(expires)
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=timezone.utc)
            if expires.year == 9999:  # Django's "never expires" (datetime.max)
                return None
            left: float = (expires - datetime.now(timezone.utc)).total_seconds()
            return left

    elif name == "file":
        cache = FileBasedCache(str(tmp_path / "files"), OPTIONS)

        def ttl_of(key: str) -> float | None:
            with open(cache._key_to_file(key), "rb") as f:
                expiry = pickle.load(f)  # the file's header: the expiry time, or None
            return None if expiry is None else expiry - time.time()

    elif name in ("redis", "django-redis"):
        server: RedisServer = request.getfixturevalue("redis_server")
        if name == "redis":
            from django.core.cache.backends.redis import RedisCache

            cache = RedisCache(f"{server.url}/8", OPTIONS)
            client = cache._cache.get_client(None)
        else:
            from django_redis.cache import RedisCache as DjangoRedisCache

            cache = DjangoRedisCache(f"{server.url}/9", OPTIONS)
            client = cache.client.get_client()

        def ttl_of(key: str) -> float | None:
            left = int(client.ttl(cache.make_key(key)))
            assert left != -2, f"{key} is not in Redis"
            return None if left == -1 else float(left)

    else:
        from django.core.cache.backends.memcached import PyMemcacheCache

        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        cache = PyMemcacheCache(memcached.location, OPTIONS)

        def ttl_of(key: str) -> float | None:
            left = memcached.ttl(cache.make_key(key))
            assert left is not None, f"{key} is not in memcached"
            return None if left == -1 else float(left)

    cache.clear()
    yield cache, ttl_of
    cache.clear()  # the suite's own: a LocMem, its test database, tmp_path, its own servers
    if name == "redis":
        close_redis(cache)
    elif name == "django-redis":
        cache.client.do_close_clients()
    elif name == "memcached":
        cache.close()


KEYS = [f"field:{i}" for i in range(10)]


def warm(cache: Any, **config: Any) -> tuple[Any, list[list[str]]]:
    batches: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, Any]:
        batches.append(list(keys))
        return {key: {"key": key, "n": int(key.split(":")[1])} for key in keys}

    stats = CacheWarmer(
        cache,
        StaticKeyProvider(KEYS),
        BatchValueLoader(load_many),
        WarmingConfig(**{"max_workers": 1, **config}),
        name="fields",
    ).warm()
    # Read-back verification, and each value as the backend's own get returns it.
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (len(KEYS), 0, None)
    assert (stats.keys_verified, stats.keys_lost) == (len(KEYS), 0)
    for key in KEYS:
        assert cache.get(key) == {"key": key, "n": int(key.split(":")[1])}
    return stats, batches


# Each row: the config given, then a check of every key's remaining TTL (seconds; None: never).
ROWS: dict[str, tuple[dict[str, Any], Callable[[list[float | None]], bool]]] = {
    "timeout=600": ({"cache_timeout": 600}, lambda t: all(t and 590 <= t <= 600 for t in t)),
    "timeout=None": ({"cache_timeout": None}, lambda t: all(x is None for x in t)),
    "timeout=default": (
        {},  # not given: the backend's DEFAULT_TIMEOUT (its TIMEOUT)
        lambda t: all(x and DEFAULT_TIMEOUT - 10 <= x <= DEFAULT_TIMEOUT for x in t),
    ),
    "timeout_jitter=0.5": (
        {"cache_timeout": 1000, "timeout_jitter": 0.5},
        # Up to 50% longer, never shorter; spread (one TTL drawn per batch).
        lambda t: all(x and 990 <= x <= 1500 for x in t) and len({round(x or 0) for x in t}) > 1,
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_timeout_fields(backend: tuple[Any, Ttl], row: str) -> None:
    cache, ttl_of = backend
    config, expected = ROWS[row]
    warm(cache, batch_size=2, **config)
    ttls = [ttl_of(key) for key in KEYS]
    assert expected(ttls), f"{row}: TTLs in the cache are {ttls}"


@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_batch_size(backend: tuple[Any, Ttl], batch_size: int) -> None:
    cache, _ = backend
    _, batches = warm(cache, batch_size=batch_size, cache_timeout=600)
    sizes = sorted(len(b) for b in batches)
    full, rest = divmod(len(KEYS), batch_size)
    assert sizes == sorted([batch_size] * full + ([rest] if rest else []))


def _explode() -> None:
    raise ValueError("this value cannot be unpickled")


class PicklesButDoesNotUnpickle:
    """A value whose pickle is fine, but whose unpickling raises (a view's get would fail)."""

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return (_explode, ())


SIX = [f"k:{i}" for i in range(1, 7)]


def value_of(key: str) -> dict[str, str]:
    return {"key": key}


def test_the_read_back_is_a_real_read_that_fails_only_the_value_that_does_not_unpickle(
    backend: tuple[Any, Ttl],
) -> None:
    cache, _ = backend

    def load(key: str) -> Any:
        return PicklesButDoesNotUnpickle() if key == "k:3" else value_of(key)

    stats = CacheWarmer(
        cache,
        StaticKeyProvider(SIX),
        CallableValueLoader(load),
        WarmingConfig(max_workers=1, batch_size=2, cache_timeout=600),
        name="unpickle",
    ).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (5, 1, None), stats.errors
    assert (stats.keys_verified, stats.keys_lost) == (6, 1)
    (error,) = stats.errors
    assert error.startswith("k:3: ")
    # What a view's read of that key does on this backend: raises (pickle-based backends), or
    # a miss (memcached cannot decode it and returns None).
    if "memcached" in type(cache).__module__:
        assert "reads back as None" in error
        assert cache.get("k:3") is None
    else:
        assert "cached, but reading it back raises ValueError: this value cannot be unpickled" in (
            error
        )
        with pytest.raises(ValueError, match="cannot be unpickled"):
            cache.get("k:3")
    for key in SIX:
        if key != "k:3":
            assert cache.get(key) == value_of(key)


@pytest.mark.parametrize("kind", ["per-key", "batch"])
def test_a_loader_returning_none_fails_that_key_and_keeps_the_good_value(
    backend: tuple[Any, Ttl], kind: str
) -> None:
    cache, _ = backend
    cache.set("k:1", "good old value", 600)

    def load(key: str) -> Any:
        return None if key == "k:1" else value_of(key)

    stats = CacheWarmer(
        cache,
        StaticKeyProvider(SIX),
        CallableValueLoader(load)
        if kind == "per-key"
        else BatchValueLoader(lambda keys: {key: load(key) for key in keys}),
        WarmingConfig(max_workers=1, batch_size=2, cache_timeout=600),
        name="none",
    ).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (5, 1, None)
    assert (stats.keys_verified, stats.keys_lost) == (5, 0)
    assert stats.errors == [
        "k:1: the loader returned None, which cache.get() cannot tell from a miss"
    ]
    assert cache.get("k:1") == "good old value"
