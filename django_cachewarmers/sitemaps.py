"""Sitemaps as a key source: ``"keys": {"sitemap": "example.urls.sitemaps"}``.

The keys are every URL of the project's ``django.contrib.sitemaps.Sitemap`` classes, absolute, as
the sitemap view (``django.contrib.sitemaps.views.sitemap``) builds them: each sitemap's own
``get_urls(page, site, protocol)`` for each of its pages, with the current ``Site`` of
``django.contrib.sites`` (``Site.objects.get_current()``, which needs ``SITE_ID``) or, without it,
a ``domain`` given in the settings. Ordered by ``priority`` (highest first; a URL without one
counts as 0.5, the sitemaps protocol's default), cut at ``limit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import import_string

__all__ = ["DEFAULT_PRIORITY", "SitemapKeys", "sitemap_urls", "sites_framework_has_site"]

#: The priority of a URL whose sitemap gives none (the sitemaps protocol's default).
DEFAULT_PRIORITY = 0.5


@dataclass(frozen=True)
class _Site:
    """What ``Sitemap.get_urls`` reads of a site: its ``domain`` (and ``name``, for templates)."""

    domain: str

    @property
    def name(self) -> str:
        return self.domain


def sites_framework_has_site() -> bool:
    """Whether ``Site.objects.get_current()`` can answer without a request:
    ``django.contrib.sites`` installed and ``SITE_ID`` set."""
    return (
        apps.is_installed("django.contrib.sites") and getattr(settings, "SITE_ID", None) is not None
    )


def _current_site(domain: str | None) -> Any:
    if domain is not None:
        return _Site(domain)
    from django.contrib.sites.models import Site

    return Site.objects.get_current()  # ImproperlyConfigured without SITE_ID: the run fails


def sitemap_urls(
    sitemaps: Mapping[str, Any],
    *,
    domain: str | None = None,
    protocol: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Every URL of ``sitemaps`` (the dict the sitemap view takes: section -> ``Sitemap`` class
    or instance), as absolute URLs, highest ``priority`` first, at most ``limit``.

    ``domain``: the host of the URLs; None: the current ``Site`` (``django.contrib.sites``).
    ``protocol``: ``"http"`` or ``"https"``; None: each sitemap's own ``protocol``, else
    ``"https"`` (``Sitemap.get_protocol``). Raises what a sitemap raises, and
    ``ImproperlyConfigured`` without a domain or current site.
    """
    site = _current_site(domain)
    found: list[tuple[float, str]] = []
    for section in sitemaps.values():
        sitemap = section() if callable(section) else section  # as the sitemap view does
        for page in sitemap.paginator.page_range:
            for item in sitemap.get_urls(page=page, site=site, protocol=protocol):
                found.append((_priority(item.get("priority")), str(item["location"])))
    found.sort(key=lambda entry: -entry[0])  # stable: a sitemap's own order among equals
    urls = list(dict.fromkeys(url for _, url in found))
    return urls if limit is None else urls[:limit]


def _priority(value: object) -> float:
    try:
        return float(value) if value not in (None, "") else DEFAULT_PRIORITY  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_PRIORITY


@dataclass(frozen=True)
class SitemapKeys:
    """A warmer's keys read from sitemaps at each run (``sitemap_urls``): a callable returning
    the URLs. ``sitemaps`` is the dotted path of the sitemaps dict, or the dict itself."""

    sitemaps: str | Mapping[str, Any]
    limit: int | None = None
    domain: str | None = None
    protocol: str | None = None

    def resolve(self) -> Mapping[str, Any]:
        """The sitemaps dict (imported when given as a dotted path)."""
        found = import_string(self.sitemaps) if isinstance(self.sitemaps, str) else self.sitemaps
        if not isinstance(found, Mapping):
            raise TypeError(f"{self.sitemaps!r} is not a dict of sitemaps")
        return found

    def __call__(self) -> list[str]:
        return sitemap_urls(
            self.resolve(), domain=self.domain, protocol=self.protocol, limit=self.limit
        )

    def __repr__(self) -> str:
        shown = self.sitemaps if isinstance(self.sitemaps, str) else "a sitemaps dict"
        return f"SitemapKeys({shown!r}, limit={self.limit}, domain={self.domain!r})"
