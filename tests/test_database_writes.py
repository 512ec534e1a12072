"""DatabaseCache: one upsert per batch (django_cachewarmers/backends/database.py), on SQLite
in-process and on the suite's own PostgreSQL server in a subprocess; the checks are in
tests/db_write_checks.py."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.cache.backends.db import DatabaseCache
from django.core.management.commands.createcachetable import Command as CreateCacheTable

from tests import db_write_checks
from tests.postgres_server import PostgresServer
from tests.processes import PYTHON, ROOT

_tables = itertools.count()


def table_factory(database: str) -> Callable[..., Any]:
    """``make(**options)``: a DatabaseCache on a new, empty table of ``database``."""

    def make(**options: Any) -> Any:
        table = f"cw_upsert_{os.getpid()}_{next(_tables)}"
        command = CreateCacheTable(stdout=StringIO())
        command.verbosity = 0
        command.create_table(database, table, False)
        return DatabaseCache(table, {"OPTIONS": {"MAX_ENTRIES": 100_000, **options}})

    return make


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("check", db_write_checks.CHECKS, ids=lambda c: c.__name__[6:])
def test_sqlite(check: Callable[..., None]) -> None:
    check(table_factory("default"))


SCRIPT = """
import json, traceback
import django

django.setup()
from tests import db_write_checks
from tests.test_database_writes import table_factory

failures = {}
for check in db_write_checks.CHECKS:
    try:
        check(table_factory("default"))
    except Exception:
        failures[check.__name__] = traceback.format_exc()
print(json.dumps(failures))
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.mark.slow
def test_postgresql(postgres: PostgresServer) -> None:
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.postgres_settings"}
    environ["CW_PG_PORT"] = str(postgres.port)
    done = subprocess.run(
        [PYTHON, "-c", SCRIPT], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{done.stderr}\n{postgres.log()[-3000:]}"
    failures: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(failures.values())
