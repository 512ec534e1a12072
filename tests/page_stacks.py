"""Middleware stacks of the page-warming tests: GZipMiddleware and LocaleMiddleware, which make
Django's page cache vary on Accept-Encoding and on the language (``settings.MIDDLEWARE`` plus)."""

from __future__ import annotations

from django.conf import settings

TRACKING = "django_cachewarmers.middleware.AccessTrackingMiddleware"
GZIP = "django.middleware.gzip.GZipMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"


def _with_locale(stack: list[str]) -> list[str]:
    # Django's documented place: after SessionMiddleware, before CommonMiddleware.
    index = stack.index("django.middleware.common.CommonMiddleware")
    return [*stack[:index], LOCALE, *stack[index:]]


#: The per-site cache around GZip, Locale and the rest, as Django's docs order them.
SITE_VARIED = [
    "django.middleware.cache.UpdateCacheMiddleware",
    TRACKING,
    GZIP,
    *_with_locale(list(settings.MIDDLEWARE)),
    "django.middleware.cache.FetchFromCacheMiddleware",
]
#: cache_page views under GZip and Locale.
VIEW_VARIED = [TRACKING, GZIP, *_with_locale(list(settings.MIDDLEWARE))]
