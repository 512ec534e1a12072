"""URLs of the page-warming tests (``ROOT_URLCONF`` for tests/test_page_warming.py and
tests/page_server_settings.py): versioned pages, per-site cached or under cache_page, and their
sitemaps."""

from typing import Any

from django.urls import path

from tests.testapp import page_views, views

urlpatterns = [
    path("ping/", views.ping),
    path("v/<slug:slug>/", page_views.versioned, name="versioned"),
    path("c/<slug:slug>/", page_views.cached_versioned, name="cached-versioned"),
]

#: The sitemaps dict, as a project passes it to django.contrib.sitemaps.views.sitemap.
sitemaps: dict[str, Any] = {"pages": page_views.PagesSitemap, "cached": page_views.CachedSitemap}
#: One sitemap of which raises.
broken_sitemaps: dict[str, Any] = {
    "pages": page_views.PagesSitemap,
    "broken": page_views.BrokenSitemap,
}
