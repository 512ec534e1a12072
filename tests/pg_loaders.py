"""Keys and a loader that read PostgreSQL through Django's connection of the loading thread, and a
way to drop every connection as a restart, a failover or ``pg_terminate_backend`` would."""

from __future__ import annotations

import threading
import time

from django.db import connection

KEYS = 40
#: The load that first drops every connection (1-based), or None.
drop_at: int | None = None
loads = 0
_lock = threading.Lock()


def keys() -> list[str]:
    return [f"pg:{i}" for i in range(KEYS)]


def load(key: str) -> str:
    global loads
    with _lock:
        loads += 1
        drop = loads == drop_at
    if drop:
        drop_connections()
    time.sleep(0.005)  # a loader's own work: the other workers are in flight meanwhile
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'value of ' || %s", [key])
        value: str = cursor.fetchone()[0]
    return value


def drop_connections() -> int:
    """Terminate every other client connection, from a connection of its own; wait until gone."""
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        others = (
            "FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        row = admin.execute(f"SELECT count(pg_terminate_backend(pid)) {others}").fetchone()
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) {others}").fetchone() != (0,):
            if time.monotonic() > deadline:
                raise AssertionError("the terminated connections did not go away")
            time.sleep(0.01)
    return int(row[0]) if row else 0
