"""Views of the page-warming tests (refresh in place, Vary variants, sitemaps): tests/page_urls.py.

Each execution is logged (``views._executed``) as ``name`` for a real request and ``name:render``
for one of ``render_page``'s own (its environ carries ``RENDER_MARKER``), so a test can tell a
real visitor's miss from a warm.
"""

from __future__ import annotations

import os

from django.contrib.sitemaps import Sitemap
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext
from django.views.decorators.cache import cache_page

from django_cachewarmers.process import RENDER_MARKER
from tests.testapp.views import _executed

#: The content version in this process; $CW_PAGE_VERSION_FILE, when set, holds it for every process.
VERSION = {"value": "1", "private": False}

#: Long enough for GZipMiddleware to compress it (it leaves bodies under 200 bytes alone).
FILLER = "lorem ipsum dolor sit amet " * 20


def version() -> str:
    path = os.environ.get("CW_PAGE_VERSION_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return str(VERSION["value"])


def _log(request: HttpRequest, name: str) -> None:
    _executed(f"{name}:render" if RENDER_MARKER in request.META else name)


def versioned(request: HttpRequest, slug: str) -> HttpResponse:
    """A page whose content changes with ``version()``; ``gettext("Monday")`` shows the language
    (Django ships its French translation, "lundi", compiled)."""
    _log(request, f"versioned:{slug}")
    response = HttpResponse(f"{slug} v{version()} {gettext('Monday')} {FILLER}")
    if VERSION["private"]:
        patch_cache_control(response, private=True)
    return response


cached_versioned = cache_page(300)(versioned)


class PagesSitemap(Sitemap):  # type: ignore[type-arg]
    """A small sitemap of versioned pages, with priorities out of order."""

    protocol = "http"
    PRIORITIES = {"low": 0.1, "top": 1.0, "mid": 0.6, "plain": None}

    def items(self) -> list[str]:
        return list(self.PRIORITIES)

    def location(self, item: str) -> str:
        return reverse("versioned", args=[item])

    def priority(self, item: str) -> float | None:
        return self.PRIORITIES[item]


class CachedSitemap(Sitemap):  # type: ignore[type-arg]
    """The cache_page pages."""

    def items(self) -> list[str]:
        return ["c1", "c2"]

    def location(self, item: str) -> str:
        return reverse("cached-versioned", args=[item])


class BrokenSitemap(Sitemap):  # type: ignore[type-arg]
    def items(self) -> list[str]:
        raise RuntimeError("the catalogue is down")
