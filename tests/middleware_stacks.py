"""The middleware stacks the page tests run under (``settings.MIDDLEWARE`` plus ours)."""

from __future__ import annotations

from django.conf import settings

TRACKING = "django_cachewarmers.middleware.AccessTrackingMiddleware"
#: Per-view caching (``cache_page``) with access tracking.
PER_VIEW = [TRACKING, *settings.MIDDLEWARE]
#: The per-site cache around the stack, with access tracking.
PER_SITE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    TRACKING,
    *settings.MIDDLEWARE,
    "django.middleware.cache.FetchFromCacheMiddleware",
]
