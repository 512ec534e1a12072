"""Settings of a project on PostgreSQL (the suite's own server), for tests/test_postgres.py.

CW_PG_PORT: the server's port. CW_CONN_MAX_AGE ("0" or "None") and CW_CONN_HEALTH_CHECKS ("1")
choose how Django keeps its connections, as a project's settings would.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": os.environ["CW_PG_PORT"],
        "USER": "postgres",
        "NAME": "postgres",
        "CONN_MAX_AGE": None if os.environ.get("CW_CONN_MAX_AGE") == "None" else 0,
        "CONN_HEALTH_CHECKS": os.environ.get("CW_CONN_HEALTH_CHECKS") == "1",
    }
}
CACHE_WARMERS_SNAPSHOT_INTERVAL = 0
CACHE_WARMERS_PERSIST_INTERVAL = 0
_PG = {"keys": "tests.pg_loaders.keys", "loader": "tests.pg_loaders.load", "max_workers": 4}
CACHE_WARMERS = {
    "retrying": {**_PG, "max_retries": 2, "retry_backoff": 0.01},
    "once": {**_PG, "max_retries": 0},
}
