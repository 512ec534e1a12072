"""Warming a Django ``DatabaseCache`` on SQLite and PostgreSQL: the user's loop, Django's
``set_many``, ours (one upsert per batch, read-back on) and a raw ceiling, side by side in one run.

Three times: on an SQLite file (as a project runs it: each commit is synced to disk, and Django's
``set`` commits per key), on an in-memory SQLite (no disk at all: the least Django's per-key
statements can cost, so the conservative ratios), and on a private PostgreSQL server the benchmark
starts itself (tests/postgres_server.py: ``initdb``/``pg_ctl`` in a temporary folder on a free port,
durability off, over TCP on 127.0.0.1, through Django's psycopg 3 backend); its rows are skipped,
with the reason printed, where PostgreSQL's server binaries are missing.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
import sys
import time
from collections.abc import Iterator
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
    """The rows on an SQLite file, on an in-memory SQLite, then on PostgreSQL."""
    global cache_db
    import os

    from django.db import connections

    rows: list[dict[str, str]] = []
    try:
        for alias, where in (
            ("cache_file", "an SQLite file"),
            ("cache_memory", "in-memory SQLite"),
        ):
            cache_db = alias
            rows.extend(run_on(where, repeat))
    finally:
        cache_db = "default"
        connections["cache_memory"].close()
        path = connections["cache_file"].settings_dict["NAME"]
        connections["cache_file"].close()
        if os.path.exists(path):
            os.remove(path)
    rows.extend(run_postgres(repeat))
    return rows


#: The alias of the benchmark's own PostgreSQL server, added to Django's connections while it runs.
PG_ALIAS = "cache_pg"


def run_postgres(repeat: int) -> list[dict[str, str]]:
    """The rows on a PostgreSQL server started for this run (never one it did not start), or none,
    with the reason printed, where ``initdb``/``pg_ctl`` are missing."""
    global cache_db
    import pytest

    from tests.postgres_server import PostgresServer

    try:
        server = PostgresServer()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"database: no PostgreSQL rows: {exc.msg}", file=sys.stderr, flush=True)
        return []
    try:
        server.start()
        with _connection(PG_ALIAS, server.settings) as connection:
            major = connection.pg_version // 10000
            cache_db = PG_ALIAS
            return run_on(f"PostgreSQL {major}, a private server over TCP, fsync off", repeat)
    finally:
        cache_db = "default"
        server.cleanup()


@contextlib.contextmanager
def _connection(alias: str, settings_dict: dict[str, object]) -> Iterator[Any]:
    """Django's connection ``alias`` to ``settings_dict`` (a ``DATABASES`` entry) while the block
    runs: settings are configured once, before the server exists, so the alias joins
    ``django.db.connections`` here, its defaults filled in by Django's ``configure_settings``."""
    from django.db import DEFAULT_DB_ALIAS, connections

    configured = connections.configure_settings(
        {DEFAULT_DB_ALIAS: dict(connections.settings[DEFAULT_DB_ALIAS]), alias: dict(settings_dict)}
    )
    connections.settings[alias] = configured[alias]
    try:
        connection = connections[alias]
        connection.ensure_connection()
        yield connection
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


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
    assert cache.get(keys[-1]) == load(keys[-1])
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
