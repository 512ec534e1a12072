"""Dropped PostgreSQL connections (a restart, a failover, ``pg_terminate_backend``, a pooler's idle
timeout): a retry, and the next run, get a working connection, so one drop costs at most the keys
in flight.

Against the suite's own PostgreSQL server (tests/postgres_server.py). The project runs in a
subprocess (tests/postgres_settings.py), since the suite's own database is SQLite and settings
overrides cannot swap it in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.postgres_server import PostgresServer
from tests.processes import PYTHON, ROOT

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import django

django.setup()
from django.core.cache import caches

from django_cachewarmers import get_warmer
from tests import pg_loaders

results = {}


def run(label, warmer, drop_at=None):
    pg_loaders.drop_at = None if drop_at is None else pg_loaders.loads + drop_at
    caches["default"].clear()
    stats = get_warmer(warmer).warm()
    cached = caches["default"].get_many(pg_loaders.keys())
    assert all(cached[k] == "value of " + k for k in cached), cached
    results[label] = [stats.keys_warmed, stats.keys_failed, len(cached)]


# A drop in the middle of a 40-key run (at its 10th load), with retries, then without.
run("mid_run_retrying", "retrying", drop_at=10)
run("mid_run_once", "once", drop_at=10)
# The next run, on the same worker threads (alive for 5 s after a run).
run("next_run_once", "once")
# A drop between runs (a pooler's idle timeout): nothing failed yet in the threads' connections.
pg_loaders.drop_connections()
run("after_idle_drop_retrying", "retrying")
pg_loaders.drop_connections()
run("after_idle_drop_once", "once")
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def warm_through_drops(postgres: PostgresServer, **env: str) -> dict[str, Any]:
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.postgres_settings"}
    environ.update(CW_PG_PORT=str(postgres.port), **env)
    done = subprocess.run(
        [PYTHON, "-c", SCRIPT], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{done.stderr}\n{postgres.log()[-3000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("max_age", "health_checks"),
    [("0", "0"), ("None", "1")],
    ids=["CONN_MAX_AGE=0", "persistent-with-health-checks"],
)
def test_a_dropped_connection_costs_at_most_the_keys_in_flight(
    postgres: PostgresServer, max_age: str, health_checks: str
) -> None:
    result = warm_through_drops(
        postgres, CW_CONN_MAX_AGE=max_age, CW_CONN_HEALTH_CHECKS=health_checks
    )
    # [warmed, failed, entries a read finds in the cache]
    assert result["mid_run_retrying"] == [40, 0, 40]  # the retries reconnect
    warmed, failed, found = result["mid_run_once"]
    assert warmed + failed == 40
    assert failed <= 4, result  # only the keys in flight on the 4 workers when it dropped
    assert found == warmed
    assert result["next_run_once"] == [40, 0, 40]
    assert result["after_idle_drop_retrying"] == [40, 0, 40]
    assert result["after_idle_drop_once"] == [40, 0, 40]


def test_a_persistent_connection_without_health_checks_reconnects_on_the_retry(
    postgres: PostgresServer,
) -> None:
    # As in a request: without CONN_HEALTH_CHECKS Django finds a connection dropped while idle
    # only when a query fails; the retry then gets a new one, and the next key of that worker too.
    result = warm_through_drops(postgres, CW_CONN_MAX_AGE="None", CW_CONN_HEALTH_CHECKS="0")
    assert result["mid_run_retrying"] == [40, 0, 40]
    assert result["mid_run_once"][1] <= 4, result
    assert result["next_run_once"] == [40, 0, 40]
    assert result["after_idle_drop_retrying"] == [40, 0, 40]
    warmed, failed, found = result["after_idle_drop_once"]
    assert failed <= 4, result  # one first query per worker thread, no more
    assert (warmed + failed, found) == (40, warmed)
