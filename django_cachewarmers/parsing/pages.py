"""The page-warming fields of a warmer definition: ``variants``, and ``{"sitemap": ...}`` keys."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import import_string

from django_cachewarmers.check_messages import (
    Report,
    describe_value,
    did_you_mean,
    error_text,
    setting_path,
    short_repr,
)
from django_cachewarmers.pagekeys import variant_of
from django_cachewarmers.sitemaps import SitemapKeys, sites_framework_has_site
from django_cachewarmers.spec import SITEMAP_FIELDS, Variant

__all__ = ["check_page_fields", "parse_sitemap", "parse_variants"]

#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A header value: no control characters but tab (no CR/LF header injection).
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Never a variant's header: credentials, cookies (a page is then personal), the URL's host.
_FORBIDDEN: Final = {"cookie", "authorization", "proxy-authorization", "host"}
_VARIANTS_HINT = (
    "Give a list of dicts of request headers, one per variant, e.g. [{}, {'Accept-Encoding': "
    "'gzip, deflate, br, zstd'}, {'Accept-Language': 'fr'}]; {} is the plain page (the default "
    "is [{}])."
)
_SITEMAP_HINT = (
    "Write {'sitemap': 'myproject.urls.sitemaps'} (the dotted path of the dict you pass to the "
    "sitemap view), or {'sitemap': {'sitemaps': 'myproject.urls.sitemaps', 'limit': 500, "
    "'domain': 'shop.example'}}."
)


def _variant_problem(variant: object) -> str | None:
    if not isinstance(variant, Mapping):
        return f"is {describe_value(variant)}, not a dict of request headers"
    for name, value in variant.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return f"has the header name {describe_value(name)}, which is not an HTTP header name"
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            return (
                f"gives {name!r} the value {describe_value(value)}: header values are strings "
                "without control characters"
            )
    return None


def parse_variants(report: Report, name: object, raw: Mapping[Any, Any]) -> tuple[Variant, ...]:
    """The warmer's page variants (``((),)``, the plain page, by default); E030, E031."""
    where = setting_path(name, "variants")
    value = raw.get("variants", [{}])
    if not isinstance(value, (list, tuple)) or not value:
        report.error(
            30, f"{where}: must be a non-empty list of dicts, got {describe_value(value)}.",
            _VARIANTS_HINT,
        )  # fmt: skip
        return ((),)
    variants: dict[Variant, None] = {}
    ok = True
    for index, variant in enumerate(value):
        problem = _variant_problem(variant)
        if problem is not None:
            ok = False
            report.error(30, f"{where}[{index}]: {problem}.", _VARIANTS_HINT)
            continue
        assert isinstance(variant, Mapping)  # narrowed for mypy
        forbidden = sorted(n for n in variant if n.strip().lower() in _FORBIDDEN)
        if forbidden:
            ok = False
            report.error(
                31,
                f"{where}[{index}]: {forbidden[0]!r} cannot be a variant's header.",
                "A page cached for a visitor's Cookie or Authorization is personal, never one to "
                "warm; the Host is the page URL's own. Vary on the headers anonymous visitors "
                "share: Accept-Encoding, Accept-Language.",
            )
            continue
        variants[variant_of(variant)] = None
    return tuple(variants) if ok else ((),)


def parse_sitemap(report: Report, keys_where: str, value: Mapping[Any, Any]) -> SitemapKeys | None:
    """``{"sitemap": ...}`` keys (``keys_where`` names the ``keys`` field); E033, E034, W006."""
    where = f"{keys_where}['sitemap']"
    ok = True
    for key in value:
        if key != "sitemap":
            ok = False
            report.error(
                33, f"{keys_where}[{short_repr(key)}]: unknown key beside 'sitemap'.",
                "Put the sitemap options inside: {'sitemap': {'sitemaps': ..., 'limit': ...}}.",
            )  # fmt: skip
    options = value["sitemap"]
    if isinstance(options, str):
        options = {"sitemaps": options}
    if not isinstance(options, Mapping):
        report.error(
            33, f"{where}: must be the dotted path of a sitemaps dict, or a dict of options, got "
            f"{describe_value(options)}.", _SITEMAP_HINT,
        )  # fmt: skip
        return None
    for field in options:
        if not (isinstance(field, str) and field in SITEMAP_FIELDS):
            ok = False
            report.error(
                33,
                f"{where}[{short_repr(field)}]: unknown sitemap option.",
                did_you_mean(field, SITEMAP_FIELDS)
                + "Valid options: "
                + ", ".join(SITEMAP_FIELDS)
                + ".",
            )
    sitemaps = _sitemaps(report, where, options.get("sitemaps"))
    limit = options.get("limit")
    if limit is not None and not (type(limit) is int and limit >= 1):
        ok = False
        report.error(
            33, f"{where}['limit']: must be an integer >= 1 or None, got {describe_value(limit)}.",
            SITEMAP_FIELDS["limit"],
        )  # fmt: skip
    domain = options.get("domain")
    if domain is not None and (
        not isinstance(domain, str) or not domain or re.search(r"[\s/\\@?#]", domain)
    ):
        ok = False
        report.error(
            33, f"{where}['domain']: must be a host name (and port), got "
            f"{describe_value(domain)}.", SITEMAP_FIELDS["domain"],
        )  # fmt: skip
        domain = None
    protocol = options.get("protocol")
    if protocol not in (None, "http", "https"):
        ok = False
        report.error(
            33, f"{where}['protocol']: must be 'http', 'https' or None, got "
            f"{describe_value(protocol)}.", SITEMAP_FIELDS["protocol"],
        )  # fmt: skip
    if "domain" not in options and not sites_framework_has_site():
        ok = False
        report.error(
            34,
            f"{where}: no 'domain', and no current Site to build the URLs with "
            "(django.contrib.sites is not installed, or SITE_ID is not set).",
            "Give the host of the pages: {'sitemap': {'sitemaps': ..., 'domain': "
            "'shop.example'}}, or install django.contrib.sites and set SITE_ID (the sitemap "
            "view's way).",
        )
    if isinstance(domain, str):
        host = split_domain_port(domain)[0]
        allowed = settings.ALLOWED_HOSTS or (
            [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
        )
        if not host or not validate_host(host, allowed):
            report.warning(
                6,
                f"{where}['domain']: {domain!r} is not in ALLOWED_HOSTS: every page of the "
                "sitemap would fail to render.",
                "Give the domain the site serves (one in ALLOWED_HOSTS).",
            )
    if not ok or sitemaps is None:
        return None
    return SitemapKeys(
        sitemaps=sitemaps,
        limit=limit if isinstance(limit, int) else None,
        domain=domain if isinstance(domain, str) else None,
        protocol=protocol if isinstance(protocol, str) else None,
    )


def _sitemaps(report: Report, where: str, value: object) -> str | Mapping[str, Any] | None:
    """The ``sitemaps`` option, checked: a dotted path that imports, or a dict, of sitemaps."""
    from django.contrib.sitemaps import Sitemap

    where = f"{where}['sitemaps']"
    if value is None:
        report.error(33, f"{where}: missing.", _SITEMAP_HINT)
        return None
    found: object = value
    if isinstance(value, str):
        try:
            found = import_string(value)
        except Exception as exc:
            report.error(33, f"{where}: cannot import {value!r}: {error_text(exc)}.", _SITEMAP_HINT)
            return None
    if not isinstance(found, Mapping) or not found:
        report.error(
            33, f"{where}: must be a non-empty dict of sitemaps (section -> Sitemap class or "
            f"instance), got {describe_value(found)}.", _SITEMAP_HINT,
        )  # fmt: skip
        return None
    for section, sitemap in found.items():
        is_class = isinstance(sitemap, type) and issubclass(sitemap, Sitemap)
        if not (is_class or isinstance(sitemap, Sitemap)):
            report.error(
                33, f"{where}: section {short_repr(section)} is {describe_value(sitemap)}, not a "
                "django.contrib.sitemaps.Sitemap class or instance.", _SITEMAP_HINT,
            )  # fmt: skip
            return None
    return value if isinstance(value, str) else found


def check_page_fields(
    report: Report,
    name: object,
    raw: Mapping[Any, Any],
    keys: object,
    loader: Callable[..., Any] | None,
) -> None:
    """E032: ``variants`` on a warmer that does not render pages; W007: sitemap keys loaded by
    something else than ``render_page``; a page warmer's ``fresh_for`` (E028: ``get()`` does not
    read pages) and relative URLs in its key list (E047)."""
    if loader is None and raw.get("batch_loader") is None:
        return  # no loader at all: E005 already
    # By name: the page renderer sits above the settings' parsing (pages imports the handler).
    name_of_loader = f"{getattr(loader, '__module__', '')}.{getattr(loader, '__qualname__', '')}"
    if name_of_loader == "django_cachewarmers.pages.render_page":
        _check_page_warmer(report, name, raw, keys)
        return
    if "variants" in raw:
        report.error(
            32,
            f"{setting_path(name, 'variants')}: only a page warmer (loader "
            "'django_cachewarmers.pages.render_page') renders pages with request headers.",
            "Remove 'variants', or use render_page as the loader.",
        )
    if isinstance(keys, SitemapKeys):
        report.warning(
            7,
            f"{setting_path(name, 'keys')}: sitemap keys are page URLs, but the loader is not "
            "render_page: the pages are not rendered into the page cache.",
            "Use 'loader': 'django_cachewarmers.pages.render_page' to warm the pages; silence "
            "django_cachewarmers.W007 when a loader of your own is meant to take the URLs.",
        )


def _check_page_warmer(report: Report, name: object, raw: Mapping[Any, Any], keys: object) -> None:
    if raw.get("fresh_for") is not None:
        report.error(
            28,
            f"{setting_path(name, 'fresh_for')}: a page warmer's pages are read by Django's page "
            "cache, not through django_cachewarmers.get() (which refuses render_page warmers), "
            "so 'fresh_for' would do nothing.",
            "Remove 'fresh_for'. A page warmer keeps pages fresh by rendering them again in "
            "place: give it a 'scheduled' strategy and a 'refresh_interval'.",
        )
    if isinstance(keys, tuple):
        relative = [key for key in keys if isinstance(key, str) and not _ABSOLUTE.match(key)]
        if relative:
            report.error(
                47,
                f"{setting_path(name, 'keys')}: render_page renders absolute http(s) URLs (the "
                "page cache keys a page by scheme, host and path), got "
                f"{short_repr(relative[0])}"
                + (f" and {len(relative) - 1} more" if len(relative) > 1 else "")
                + ".",
                "Give each page as the URL visitors request, e.g. 'https://shop.example/p/1/' "
                "(a host in ALLOWED_HOSTS).",
            )


#: What ``render_page`` takes: an http(s) URL (a variant's key starts with one too).
_ABSOLUTE = re.compile(r"https?://", re.IGNORECASE)
