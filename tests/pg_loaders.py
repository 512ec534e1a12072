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
        # Two statements: SQL does not promise to test "not my own pid" before terminating.
        terminated = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
        admin.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", [terminated])
        # Wait until those backends are gone (new connections made meanwhile may stay).
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [terminated]
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise AssertionError("the terminated connections did not go away")
            time.sleep(0.01)
    return len(terminated)
