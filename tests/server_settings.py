"""Settings for server subprocesses started by the tests, configured through CW_* variables.

CW_DB: SQLite file; CW_REDIS_URL: the suite's own redis-server; CW_KEY_PREFIX: a prefix unique to
the test; CW_WARMERS: the CACHE_WARMERS dict as JSON.
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["CW_DB"],
        "OPTIONS": {"timeout": 30},
    },
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CW_REDIS_URL"],
        "KEY_PREFIX": os.environ.get("CW_KEY_PREFIX", ""),
    },
}

CACHE_WARMERS = json.loads(os.environ.get("CW_WARMERS", "{}"))

TRACKING = "django_cachewarmers.middleware.AccessTrackingMiddleware"
if os.environ.get("CW_MIDDLEWARE") == "tracking":
    MIDDLEWARE = [TRACKING, *MIDDLEWARE]  # noqa: F405
elif os.environ.get("CW_MIDDLEWARE") == "site-cache":
    MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        TRACKING,
        *MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    CACHE_MIDDLEWARE_SECONDS = 300

CACHE_WARMERS_SNAPSHOT_INTERVAL = float(os.environ.get("CW_SNAPSHOT_INTERVAL", "2"))
CACHE_WARMERS_PERSIST_INTERVAL = float(os.environ.get("CW_PERSIST_INTERVAL", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_cachewarmers": {"handlers": ["stderr"], "level": "INFO"}},
}
