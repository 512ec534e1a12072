"""Settings of a project whose "default" database is empty and a router sends everything to
"primary" (Django's documented multi-database setup), for tests/test_databases.py.

CW_PRIMARY_DB: the SQLite file of the "primary" database.
"""

from __future__ import annotations

import os
from typing import Any

from tests.settings import *  # noqa: F403

DATABASES = {
    # Django's dummy backend: any query sent here raises ImproperlyConfigured.
    "default": {},
    "primary": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["CW_PRIMARY_DB"],
        "OPTIONS": {"timeout": 30},
    },
}
DATABASE_ROUTERS = ["tests.multidb_settings.PrimaryRouter"]
# No publisher thread: the test saves the hot set itself.
CACHE_WARMERS_SNAPSHOT_INTERVAL = 0
CACHE_WARMERS_PERSIST_INTERVAL = 0
CACHE_WARMERS = {
    "hot": {
        "keys": {"adaptive": {"tracker": "keys", "threshold": 2}},
        "loader": "tests.testapp.warming.load_item",
        "strategy": "adaptive",
    }
}


class PrimaryRouter:
    """Every read, write and migration goes to "primary"."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "primary"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "primary"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "primary"
