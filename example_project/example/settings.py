"""Settings of the example shop: SQLite and a local-memory cache unless REDIS_URL is set.

Environment variables: EXAMPLE_DB (the SQLite file, default example_project/db.sqlite3),
REDIS_URL (use Redis instead of the local-memory cache, e.g. redis://127.0.0.1:6379/0),
EXAMPLE_LOG_LEVEL (of the django_cachewarmers logger, default INFO), DJANGO_DEBUG,
DJANGO_SECRET_KEY.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cachewarmers",
    "shop",
]

MIDDLEWARE = [
    # Near the top. It counts each page answered 2xx to an anonymous GET (cache_page hits
    # included) in the "pages" tracker, which the adaptive `hot_pages` warmer reads.
    "django_cachewarmers.middleware.AccessTrackingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# The product pages are not whole-page cached (they show whether `product:<pk>` was a hit), so
# `render_page` could not warm them: a page with no page cache in front of it is a failed key, not
# "warmed". Leave them out of the page counts, beside the defaults (the admin and STATIC_URL).
CACHE_WARMERS_TRACK_EXCLUDE = [r"^/admin/", r"^/static/", r"^/product/"]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
        # The server's request threads and the warming threads write to the same file.
        "OPTIONS": {"timeout": 20},
    },
}

if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
        },
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 50_000},
            "TIMEOUT": 600,
        },
    }
    # W010: with a per-process cache only the process that saves re-warms. runserver is one
    # process, which both serves the pages and saves the admin's edits: that is what we want.
    SILENCED_SYSTEM_CHECKS = ["django_cachewarmers.W010"]

# The warmers: one per strategy. `manage.py warm_cache --list` shows them, and so does the admin's
# "Cache warmers" page.
CACHE_WARMERS = {
    # scheduled: warmed at server start, then refreshed every 5 minutes, 500 products per query.
    # The product pages read these keys (`product:<pk>`). rewarm_on: a product saved (in the
    # admin, say) has its key rewritten in place right after the commit (changes within
    # `rewarm_delay`, 1 s, loaded together), never deleted, so its page stays a cache hit.
    "products": {
        "keys": "shop.warming.product_keys",
        "batch_loader": "shop.warming.load_products",
        "strategy": "scheduled",
        "refresh_interval": 300,
        "timeout": 600,
        "timeout_jitter": 0.1,
        "batch_size": 500,
        "rewarm_on": {"shop.Product": "shop.warming.product_keys_for"},
    },
    # eager: warmed once at server start. The category pages read these keys (`category:<pk>`).
    "categories": {
        "keys": "shop.warming.category_keys",
        "loader": "shop.warming.load_category",
        "strategy": "eager",
        "timeout": 3600,
    },
    # adaptive: the pages visitors ask for most (counted by AccessTrackingMiddleware), rendered
    # through the site's own views, so that the cache_page entries of the hottest pages are filled
    # before the next visitor asks. The hot set is saved in the database and warmed at next start.
    "hot_pages": {
        "keys": {"adaptive": {"tracker": "pages", "threshold": 3, "limit": 100}},
        "loader": "django_cachewarmers.pages.render_page",
        "strategy": "adaptive",
        "refresh_interval": 30,
        "optional": True,
    },
    # lazy: only on demand (`manage.py warm_cache`, the admin's Warm now, or warm()). The home page
    # reads this key.
    "catalogue_stats": {
        "keys": "shop.warming.catalogue_stats_keys",
        "loader": "shop.warming.load_catalogue_stats",
        "strategy": "lazy",
        "optional": True,
    },
}

# Warm and schedule when a server starts (the default; spelled out here to show the switch).
CACHE_WARMERS_AUTOSTART = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"

# One INFO line per warm (and every error). `make run` sets EXAMPLE_LOG_LEVEL=WARNING for the
# `warm_cache` commands, which print the same numbers themselves.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cachewarmers": {
            "handlers": ["console"],
            "level": os.environ.get("EXAMPLE_LOG_LEVEL", "INFO"),
        },
    },
}
