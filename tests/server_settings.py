"""Settings for server subprocesses started by the tests, configured through CW_* variables.

CW_DB: SQLite file; CW_REDIS_URL: the suite's own redis-server; CW_KEY_PREFIX: a prefix unique to
the test; CW_WARMERS: the CACHE_WARMERS dict as JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import global_settings

from tests.settings import *  # noqa: F403

# A server is run as users run theirs: Django's default password hashers.
PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS

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

if os.environ.get("CW_ALLOWED_HOSTS"):
    ALLOWED_HOSTS = os.environ["CW_ALLOWED_HOSTS"].split(",")

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

CACHE_WARMERS_TRACKER_MAX_KEYS = int(os.environ.get("CW_TRACKER_MAX_KEYS", "10000"))

# CW_LOG_LEVEL: the app's log level; CW_LOG_LEVELS=1: prefix each line with its level;
# CW_LOG_ROOT=1: every logger (Django's too) goes to stderr.
_LEVEL = os.environ.get("CW_LOG_LEVEL", "INFO")
_HANDLER: dict[str, Any] = {"class": "logging.StreamHandler"}
if os.environ.get("CW_LOG_LEVELS"):
    _HANDLER["formatter"] = "levels"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"levels": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": _HANDLER},
    "loggers": {"django_cachewarmers": {"handlers": ["stderr"], "level": _LEVEL}},
}
if os.environ.get("CW_LOG_ROOT"):
    LOGGING["root"] = {"handlers": ["stderr"], "level": _LEVEL}
    LOGGING["loggers"]["django_cachewarmers"]["propagate"] = False
