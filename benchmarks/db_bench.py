"""Warming a Django ``DatabaseCache`` on SQLite: the user's loop, Django's ``set_many``, ours (one
upsert per batch, read-back on) and a raw ceiling, side by side in one run.

Twice: on an SQLite file (as a project runs it: each commit is synced to disk, and Django's
``set`` commits per key) and on an in-memory SQLite (no disk at all: the least Django's per-key
statements can cost, so the conservative ratios).
"""

from __future__ import annotations

import base64
import pickle
import time
from datetime import datetime, timezone
from io import StringIO
from typing import Any

from benchmarks.warm_bench import best_of, load

N_KEYS = 20_000
BATCH = 100
TABLE = "cachewarmers_bench_cache"
#: The database alias the cache table is routed to (CacheRouter), switched by ``run``.
cache_db = "default"


class CacheRouter:
    """Routes Django's cache table model (app label ``django_cache``) to ``cache_db``."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return cache_db if model._meta.app_label == "django_cache" else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return cache_db if model._meta.app_label == "django_cache" else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The cache table anywhere (createcachetable asks); every app's tables in "default" only.
        return None if app_label == "django_cache" else db == "default"


def run(repeat: int = 3) -> list[dict[str, str]]:
    """The rows on an SQLite file, then on an in-memory SQLite."""
    global cache_db
    import os

    from django.db import connections

    rows: list[dict[str, str]] = []
    try:
        for alias, where in (("cache_file", "an SQLite file"), ("default", "in-memory SQLite")):
            cache_db = alias
            rows.extend(run_on(where, repeat))
    finally:
        cache_db = "default"
        path = connections["cache_file"].settings_dict["NAME"]
        connections["cache_file"].close()
        if os.path.exists(path):
            os.remove(path)
    return rows


def run_on(where: str, repeat: int) -> list[dict[str, str]]:
    """Measure every DatabaseCache row against one table on ``cache_db``."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.management.commands.createcachetable import Command
    from django.db import connections, router, transaction

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.backends.database import DatabaseCacheAdapter
    from django_cachewarmers.core.config import WarmingConfig

    command = Command(stdout=StringIO())
    command.verbosity = 0
    command.create_table(cache_db, TABLE, False)
    cache = DatabaseCache(TABLE, {"OPTIONS": {"MAX_ENTRIES": 1_000_000}})
    keys = [f"product:{i}" for i in range(N_KEYS)]
    prepared = {key: load(key) for key in keys}
    items = list(prepared.items())
    batches = [dict(items[i : i + BATCH]) for i in range(0, N_KEYS, BATCH)]

    def loop() -> None:
        for key in keys:
            cache.set(key, load(key), timeout=600)

    def set_many() -> None:
        for batch in batches:
            cache.set_many(batch, timeout=600)

    def warmer(batch_size: int) -> Any:
        config = WarmingConfig(batch_size=batch_size, cache_timeout=600, warmup_timeout_s=600)
        built = CacheWarmer(cache, StaticKeyProvider(keys), CallableValueLoader(load), config)
        assert isinstance(built.backend, DatabaseCacheAdapter)

        def go() -> None:
            stats = built.warm()
            assert stats.keys_warmed == N_KEYS, stats.to_dict()

        return go

    adapter = DatabaseCacheAdapter(cache)

    def write_path() -> None:
        for batch in batches:
            adapter.write(batch, 600, 0.0, None)

    # The ceiling: the same upsert, executemany'd, values pickled and expiry computed beforehand.
    db = router.db_for_write(cache.cache_model_class)
    connection = connections[db]
    stamp = int(time.time()) + 600  # as DatabaseCache.get_backend_timeout(600), to the second
    expires = connection.ops.adapt_datetimefield_value(
        datetime.fromtimestamp(stamp, tz=timezone.utc)
    )
    rows = [
        [
            (
                cache.make_key(key),
                base64.b64encode(pickle.dumps(value, cache.pickle_protocol)).decode("latin1"),
                expires,
            )
            for key, value in batch.items()
        ]
        for batch in batches
    ]
    upsert = (
        f"INSERT INTO {TABLE} (cache_key, value, expires) VALUES (%s, %s, %s) "
        "ON CONFLICT (cache_key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires"
    )

    def ceiling() -> None:
        for chunk in rows:
            with transaction.atomic(using=db), connection.cursor() as cursor:
                cursor.executemany(upsert, chunk)

    timings: dict[str, float] = {}
    for label, func, times in (
        ("loop", loop, 1),
        ("set_many", set_many, repeat),
        ("ours", warmer(BATCH), repeat),
        ("ours 1000", warmer(1000), repeat),
        ("write path", write_path, repeat),
        ("ceiling", ceiling, repeat),
    ):
        timings[label] = best_of(times, func, cache.clear)
    assert cache.get("product:19999") == load("product:19999")
    cache.clear()
    rate = {label: N_KEYS / seconds for label, seconds in timings.items()}
    per_s = "{:,.0f} keys/s".format

    def row(name: str, ours: str, baseline: str, ratio: float, note: str = "") -> dict[str, str]:
        return {
            "benchmark": name,
            "ours": ours,
            "baseline": baseline,
            "ratio": f"{ratio:.2f}x{note}",
        }

    prefix = f"DatabaseCache ({where}): {N_KEYS:,} keys"
    return [
        row(
            f"{prefix}, warm (batches of {BATCH}, read-back on) vs the user's loop of cache.set",
            per_s(rate["ours"]),
            per_s(rate["loop"]),
            rate["ours"] / rate["loop"],
        ),
        row(
            f"{prefix}, warm (batches of {BATCH}, read-back on) vs Django's set_many "
            f"(batches of {BATCH})",
            per_s(rate["ours"]),
            per_s(rate["set_many"]),
            rate["ours"] / rate["set_many"],
            " (goal >= 10x)",
        ),
        row(
            f"{prefix}, warm (batches of 1,000, read-back on) vs Django's set_many",
            per_s(rate["ours 1000"]),
            per_s(rate["set_many"]),
            rate["ours 1000"] / rate["set_many"],
        ),
        row(
            f"{prefix}, our write path alone (one upsert per batch of {BATCH}) vs Django's "
            "set_many",
            per_s(rate["write path"]),
            per_s(rate["set_many"]),
            rate["write path"] / rate["set_many"],
        ),
        row(
            f"{prefix}, our write path alone (one upsert per batch of {BATCH}) vs the raw ceiling "
            "(executemany of the upsert, values pickled beforehand)",
            per_s(rate["write path"]),
            per_s(rate["ceiling"]),
            rate["write path"] / rate["ceiling"],
        ),
    ]
