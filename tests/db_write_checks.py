"""What the DatabaseCache fast path must do, as checks on one real ``DatabaseCache``.

Shared by tests/test_database_writes.py: run in-process on the suite's SQLite database, and in a
subprocess on the suite's own PostgreSQL server (the suite's database is SQLite and settings
overrides cannot swap it in-process). Each check takes a fresh-table factory ``make(**options)``
returning a ``DatabaseCache`` on an empty table, and raises AssertionError when the fast path is
wrong. Values are read back through Django's own ``cache.get``; TTLs from the row's ``expires``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from django.db import connections, router

from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider, WarmingConfig
from django_cachewarmers.backends.database import DatabaseCacheAdapter

Make = Callable[..., Any]


def warm(cache: Any, keys: list[str], loader: Any = None, **config: Any) -> Any:
    warmer = CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        CallableValueLoader(loader or (lambda k: {"key": k, "n": len(k)})),
        WarmingConfig(batch_size=100, **config),
    )
    assert isinstance(warmer.backend, DatabaseCacheAdapter)
    return warmer.warm()


def _cursor(cache: Any) -> Any:
    return connections[router.db_for_write(cache.cache_model_class)].cursor()


def ttl_of(cache: Any, key: str) -> float | None:
    """Seconds left by the row's ``expires`` (None: Django's "never", ``datetime.max``)."""
    with _cursor(cache) as cursor:
        cursor.execute(
            f"SELECT expires FROM {cache._table} WHERE cache_key = %s", [cache.make_key(key)]
        )
        (expires,) = cursor.fetchone()
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if expires.year == 9999:
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    left: float = (expires - datetime.now(timezone.utc)).total_seconds()
    return left


def stored_keys(cache: Any) -> set[str]:
    with _cursor(cache) as cursor:
        cursor.execute(f"SELECT cache_key FROM {cache._table}")
        return {row[0] for row in cursor.fetchall()}


def check_values_and_ttls_read_back(make: Make) -> None:
    cache = make()
    keys = [f"item:{i}" for i in range(250)]
    # The fast path itself answers (None would mean "use set_many").
    assert DatabaseCacheAdapter(cache).write({"probe": 1}, 60, 0.0, None) == {}
    stats = warm(cache, keys, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_failed) == (250, 0), stats.errors
    assert cache.get("item:7") == {"key": "item:7", "n": 6}
    assert cache.get_many(["item:0", "item:249"]) == {
        "item:0": {"key": "item:0", "n": 6},
        "item:249": {"key": "item:249", "n": 8},
    }
    left = ttl_of(cache, "item:7")
    assert left is not None
    assert 595 <= left <= 600, left
    # Written again: the upsert updates the row (value and expiry), as set() does.
    warm(cache, ["item:7"], loader=lambda k: "new", cache_timeout=60)
    assert cache.get("item:7") == "new"
    left = ttl_of(cache, "item:7")
    assert left is not None
    assert 55 <= left <= 60, left
    # The cache's own TIMEOUT (DEFAULT_TIMEOUT), and jitter spread key by key.
    warm(cache, ["default"])
    left = ttl_of(cache, "default")
    assert left is not None
    assert 295 <= left <= 300, left
    warm(cache, keys, cache_timeout=1000, timeout_jitter=0.1)
    ttls = [ttl_of(cache, key) for key in keys]
    assert all(t is not None and 990 <= t <= 1100 for t in ttls), ttls
    assert len({round(t or 0) for t in ttls}) > 20


def check_none_timeout_never_expires(make: Make) -> None:
    cache = make()
    warm(cache, ["forever"], cache_timeout=None)
    assert ttl_of(cache, "forever") is None
    assert cache.get("forever") == {"key": "forever", "n": 7}


def check_expiry_is_honoured(make: Make) -> None:
    cache = make()
    warm(cache, ["short", "long"], loader=lambda k: k, cache_timeout=1)
    warm(cache, ["long"], loader=lambda k: k, cache_timeout=600)
    assert cache.get("short") == "short"
    time.sleep(2.1)  # expires is kept to the second: gone within 2 s
    assert cache.get("short") is None
    assert cache.get("long") == "long"


def check_culling_matches_djangos_set_many(make: Make) -> None:
    options = {"MAX_ENTRIES": 50, "CULL_FREQUENCY": 2}
    keys = [f"k{i:04d}" for i in range(300)]
    django_cache = make(**options)
    for start in range(0, len(keys), 100):
        django_cache.set_many({k: k for k in keys[start : start + 100]}, timeout=600)
    expected = stored_keys(django_cache)
    ours = make(**options)
    stats = warm(ours, keys, loader=lambda k: k, cache_timeout=600)
    assert stats.keys_warmed + stats.keys_failed == 300
    kept = stored_keys(ours)
    assert len(kept) <= 51
    assert kept == expected  # the same rows culled as Django's set(), key by key
    assert all(ours.get(k.split(":")[-1]) == k.split(":")[-1] for k in kept)


def check_a_bad_value_fails_alone(make: Make) -> None:
    cache = make()
    cache.set("item:5", "good old value")

    def load(key: str) -> Any:
        return threading.Lock() if key == "item:5" else key

    stats = warm(cache, [f"item:{i}" for i in range(20)], loader=load)
    assert (stats.keys_warmed, stats.keys_failed) == (19, 1), stats.errors
    assert stats.errors[0].startswith("item:5: value not cacheable: TypeError")
    assert cache.get("item:5") == "good old value"
    assert cache.get("item:6") == "item:6"


def check_the_read_back_answers_as_get_many(make: Make) -> None:
    """The adapter's read (the read-back's one SELECT per chunk) answers each key as Django's
    ``get``/``get_many`` would: a value, None for a missing or expired row, and a value that does
    not decode fails its own key only."""
    from django_cachewarmers.core.cache_io import READS_AS_NONE, CacheIO

    cache = make()
    keys = [f"item:{i}" for i in range(1200)]  # over SQLite's 999 parameters per statement
    cache.set_many({key: {"n": key} for key in keys}, timeout=600)
    cache.set("none", None, timeout=600)
    cache.set("expired", "old", timeout=600)
    with _cursor(cache) as cursor:
        cursor.execute(
            f"UPDATE {cache._table} SET expires = %s WHERE cache_key = %s",
            [datetime(2000, 1, 1, tzinfo=timezone.utc), cache.make_key("expired")],
        )
        cursor.execute(
            f"UPDATE {cache._table} SET value = %s WHERE cache_key = %s",
            ["not a pickle", cache.make_key("item:7")],
        )
    asked = [*keys, "none", "expired", "missing"]
    adapter = DatabaseCacheAdapter(cache)
    read = adapter.read([cache.make_key(key) for key in asked])
    assert read is not None
    replies, decode = read
    assert replies[-2:] == [None, None]  # expired, missing: cache.get says None too
    assert cache.get("expired") is None
    assert cache.get("missing") is None
    assert decode(replies[0]) == {"n": "item:0"} == cache.get("item:0")
    assert decode(replies[1199]) == cache.get("item:1199")
    assert decode(replies[1200]) is None
    io = CacheIO(cache, WarmingConfig(), adapter, "checks")
    lost = io.misses(asked)
    assert set(lost) == {"item:7", "none", "expired", "missing"}
    assert lost["none"] == READS_AS_NONE
    assert lost["expired"] is None
    assert lost["missing"] is None
    assert (lost["item:7"] or "").startswith("cached, but reading it back raises")


CHECKS = [
    check_values_and_ttls_read_back,
    check_the_read_back_answers_as_get_many,
    check_none_timeout_never_expires,
    check_expiry_is_honoured,
    check_culling_matches_djangos_set_many,
    check_a_bad_value_fails_alone,
]
