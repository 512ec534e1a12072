"""Server settings of the page-warming server tests (tests/test_page_warming_servers.py): the
per-site cache in front of GZipMiddleware and LocaleMiddleware (the page cache varies on
Accept-Encoding and on the language), access tracking, the versioned pages of tests/page_urls.py.

On top of tests/server_settings.py (CW_* variables); CW_PAGE_VERSION_FILE holds the pages' content
version for every process.
"""

from __future__ import annotations

from tests.server_settings import *  # noqa: F403

ROOT_URLCONF = "tests.page_urls"

MIDDLEWARE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    "django_cachewarmers.middleware.AccessTrackingMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]
CACHE_MIDDLEWARE_SECONDS = 300
