"""Page warming that real visitors hit: refresh in place, Vary variants (declared and learned from
real browser header strings), sitemaps as a key source.

In process, through Django's real handler, cache middleware, GZipMiddleware and LocaleMiddleware,
on a real LocMemCache and on Django's RedisCache on the suite's own redis-server. A hit is read
from the view's execution log: a real request's execution is a miss, ``render_page``'s own are
logged apart (``tests/testapp/page_views.py``).
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage
from django.db import connection
from django.test import Client, modify_settings, override_settings
from django.utils import translation

import django_cachewarmers
from django_cachewarmers import STORED_BY_LOADER, tracking
from django_cachewarmers.check_messages import CHECK_IDS
from django_cachewarmers.middleware import SCRIPT_NAMES_SEEN
from django_cachewarmers.pagekeys import page_key, split_page_key, variant_of
from django_cachewarmers.pages import PageNotWarmed, render_page
from django_cachewarmers.parsing import validate_warmers
from django_cachewarmers.registry import get_warmer
from django_cachewarmers.sitemaps import sitemap_urls
from django_cachewarmers.variants import VARIANTS
from tests.page_stacks import SITE_VARIED, VIEW_VARIED
from tests.redis_server import RedisServer
from tests.testapp import page_views, views

#: Real browsers' request headers (current Chrome and Firefox; Safari sends no zstd).
CHROME = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd"}
FIREFOX = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd"}
SAFARI = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}
FRENCH = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9,en;q=0.8"}
FRENCH_OTHER = {"HTTP_ACCEPT_LANGUAGE": "fr,en-US;q=0.7,en;q=0.3"}
PAGE = "django_cachewarmers.pages.render_page"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "page-warming"}


@pytest.fixture(params=["locmem", "redis"])
def page_cache(request: pytest.FixtureRequest) -> Iterator[str]:
    """The page cache ("default"): a LocMemCache, or RedisCache on the suite's own server."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        default: dict[str, Any] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{server.url}/4",
        }
    else:
        default = LOCMEM
    with override_settings(
        CACHES={**settings.CACHES, "default": default}, ROOT_URLCONF="tests.page_urls"
    ):
        caches["default"].clear()  # the suite's own redis-server, a database of its own
        tracking.reset()
        SCRIPT_NAMES_SEEN.clear()
        views.EXECUTIONS.clear()
        page_views.VERSION.update(value="1", private=False)
        yield request.param
        caches["default"].clear()
        page_views.VERSION.update(value="1", private=False)
    tracking.reset()


def visit(path: str, **headers: Any) -> tuple[bool, bytes, Any]:
    """A real anonymous GET: (whether it was a hit, its decoded body, the response)."""
    before = _real_executions()
    # LocaleMiddleware leaves the request's language active in this thread (a server's next
    # request activates its own): give the thread back its language for the tests after.
    with translation.override(translation.get_language()):
        response = Client().get(path, **headers)
    assert response.status_code == 200, response
    body = response.content
    if response.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return _real_executions() == before, body, response


def _real_executions() -> int:
    return sum(n for name, n in views.EXECUTIONS.items() if not name.endswith(":render"))


# -- refresh in place ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_a_cached_page_is_replaced_in_place_by_the_next_render(page_cache: str, where: str) -> None:
    path = "/v/home/" if where == "per-site" else "/c/home/"
    with override_settings(MIDDLEWARE=SITE_VARIED if where == "per-site" else VIEW_VARIED):
        assert render_page(f"http://testserver{path}") is STORED_BY_LOADER
        was_hit, body, _ = visit(path)
        assert was_hit
        assert body.startswith(b"home v1 ")
        page_views.VERSION["value"] = "2"
        was_hit, body, _ = visit(path)
        assert was_hit
        assert body.startswith(b"home v1 ")
        assert render_page(f"http://testserver{path}") is STORED_BY_LOADER
        was_hit, body, _ = visit(path)
        assert was_hit
        assert body.startswith(b"home v2 "), body


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_a_refresh_the_page_cache_refuses_is_a_failure_though_the_old_entry_still_hits(
    page_cache: str, where: str
) -> None:
    path = "/v/home/" if where == "per-site" else "/c/home/"
    with override_settings(MIDDLEWARE=SITE_VARIED if where == "per-site" else VIEW_VARIED):
        render_page(f"http://testserver{path}")
        page_views.VERSION.update(value="2", private=True)
        with pytest.raises(PageNotWarmed, match=re.escape("previous entry, not this render")):
            render_page(f"http://testserver{path}")
        # The truth the failure reports: visitors still get the old render.
        was_hit, body, _ = visit(path)
        assert was_hit
        assert body.startswith(b"home v1 ")


@pytest.mark.django_db(transaction=True)
def test_no_visitor_misses_while_a_page_is_refreshed_again_and_again(page_cache: str) -> None:
    url = "http://testserver/v/hot/"
    with override_settings(MIDDLEWARE=SITE_VARIED):
        render_page(url)
        stop = threading.Event()
        seen: list[tuple[bool, bytes]] = []

        def poll() -> None:
            while not stop.is_set():
                was_hit, body, _ = visit("/v/hot/")
                seen.append((was_hit, body[:8]))

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for version in range(2, 12):
                page_views.VERSION["value"] = str(version)
                render_page(url)
        finally:
            stop.set()
            poller.join(30)
        assert seen
        assert all(was_hit for was_hit, _ in seen), seen
        assert visit("/v/hot/")[1].startswith(b"hot v11 ")
    assert views.EXECUTIONS["versioned:hot"] == 0  # never a real request's render


# -- variants -----------------------------------------------------------------------------------


def test_a_variant_key_is_the_url_and_the_headers_as_json() -> None:
    variant = variant_of({"accept-encoding": "gzip, deflate, br, zstd", "Accept-Language": "fr"})
    key = page_key("https://shop.example/p/1/", variant)
    assert key == (
        'https://shop.example/p/1/ {"Accept-Encoding": "gzip, deflate, br, zstd", '
        '"Accept-Language": "fr"}'
    )
    assert split_page_key(key) == (
        "https://shop.example/p/1/",
        {"Accept-Encoding": "gzip, deflate, br, zstd", "Accept-Language": "fr"},
    )
    assert page_key("https://shop.example/", ()) == "https://shop.example/"
    assert split_page_key("https://shop.example/") == ("https://shop.example/", {})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_declared_variants_make_gzip_and_french_visitors_hits(page_cache: str, where: str) -> None:
    prefix = "/v" if where == "per-site" else "/c"
    urls = [f"http://testserver{prefix}/{slug}/" for slug in ("a", "b")]
    warmers = {
        "pages": {
            "keys": urls,
            "loader": PAGE,
            "variants": [
                {},
                {"Accept-Encoding": "gzip, deflate, br, zstd"},
                {"Accept-Language": "fr"},
            ],
            "max_retries": 0,
        }
    }
    stack = SITE_VARIED if where == "per-site" else VIEW_VARIED
    with override_settings(MIDDLEWARE=stack, CACHE_WARMERS=warmers):
        stats = django_cachewarmers.warm("pages")
        assert stats is not None
        assert (stats.keys_warmed, stats.keys_failed) == (6, 0), stats.errors
        for url in urls:
            path = url.removeprefix("http://testserver")
            for browser in (CHROME, FIREFOX):
                was_hit, body, response = visit(path, **browser)
                assert was_hit, (path, browser)
                if where == "per-site":
                    assert response["Content-Encoding"] == "gzip"
            was_hit, body, _ = visit(path, **FRENCH)
            assert was_hit
            assert b" lundi " in body, body[:40]
            assert visit(path)[0]  # the plain variant
        # Django hashes the raw Accept-Encoding string: Safari's is another entry (under the
        # per-site cache; cache_page stores before GZipMiddleware adds Vary).
        assert visit(f"{prefix}/a/", **SAFARI)[0] is (where == "cache_page")


@pytest.mark.django_db(transaction=True)
def test_learned_variants_from_real_browser_headers_are_warmed_by_an_adaptive_warmer(
    page_cache: str,
) -> None:
    warmers = {
        "hot_pages": {
            "keys": {"adaptive": {"threshold": 3}},
            "loader": PAGE,
            "strategy": "adaptive",
            "refresh_interval": 60,
            "max_retries": 0,
        }
    }
    with override_settings(MIDDLEWARE=SITE_VARIED, CACHE_WARMERS=warmers):
        for _ in range(3):
            visit("/v/a/", **CHROME)
            visit("/v/a/", **FRENCH)
            visit("/v/a/", **FRENCH_OTHER)  # another French browser: the same language entry
            visit("/v/a/", HTTP_COOKIE="theme=dark", HTTP_ACCEPT_ENCODING="gzip")
            visit("/v/a/", HTTP_AUTHORIZATION="Bearer secret", **SAFARI)  # credentials: never
        visit("/v/b/", **CHROME)  # not hot
        learned = dict(tracking.get_tracker(VARIANTS).top(20))
        assert learned == {
            'http://testserver/v/a/ {"Accept-Encoding": "gzip, deflate, br, zstd"}': 3,
            'http://testserver/v/a/ {"Accept-Language": "fr"}': 6,
            'http://testserver/v/a/ {"Accept-Encoding": "gzip"}': 3,
            'http://testserver/v/b/ {"Accept-Encoding": "gzip, deflate, br, zstd"}': 1,
        }
        keys = get_warmer("hot_pages").key_provider.get_keys()
        assert keys == [
            "http://testserver/v/a/",
            'http://testserver/v/a/ {"Accept-Language": "fr"}',
            'http://testserver/v/a/ {"Accept-Encoding": "gzip, deflate, br, zstd"}',
            'http://testserver/v/a/ {"Accept-Encoding": "gzip"}',
        ]
        caches["default"].clear()
        page_views.VERSION["value"] = "2"
        stats = django_cachewarmers.warm("hot_pages")
        assert stats is not None
        assert (stats.keys_warmed, stats.keys_failed) == (4, 0), stats
        for headers in (CHROME, FIREFOX, FRENCH, FRENCH_OTHER, {}):
            was_hit, body, _ = visit("/v/a/", **headers)
            assert was_hit, headers
            assert body.startswith(b"a v2 "), headers
        assert b" lundi " in visit("/v/a/", **FRENCH_OTHER)[1]
        assert not visit("/v/a/", **SAFARI)[0]  # never learned (its only visits had credentials)


# -- sitemaps -----------------------------------------------------------------------------------


def test_sitemap_urls_are_absolute_ordered_by_priority_and_cut_at_the_limit() -> None:
    with override_settings(ROOT_URLCONF="tests.page_urls"):
        from tests.page_urls import sitemaps

        urls = sitemap_urls(sitemaps, domain="shop.example")
        assert urls == [
            "http://shop.example/v/top/",
            "http://shop.example/v/mid/",
            "http://shop.example/v/plain/",  # no priority: the protocol's default, 0.5
            "https://shop.example/c/c1/",  # no priority either; the sitemap's protocol default
            "https://shop.example/c/c2/",
            "http://shop.example/v/low/",
        ]
        assert sitemap_urls(sitemaps, domain="shop.example", protocol="http", limit=2) == [
            "http://shop.example/v/top/",
            "http://shop.example/v/mid/",
        ]


@pytest.mark.django_db(transaction=True)
def test_sitemap_urls_take_the_current_site_with_the_sites_framework() -> None:
    with (
        modify_settings(INSTALLED_APPS={"append": "django.contrib.sites"}),
        override_settings(SITE_ID=1, ROOT_URLCONF="tests.page_urls"),
    ):
        from django.contrib.sites.models import Site

        with connection.schema_editor() as editor:
            editor.create_model(Site)
        try:
            Site.objects.create(id=1, domain="shop.example", name="Shop")
            from tests.page_urls import sitemaps

            # The sitemap's own protocol wins over the one asked for (Sitemap.get_protocol).
            urls = sitemap_urls(sitemaps, protocol="https", limit=1)
            assert urls == ["http://shop.example/v/top/"]
            assert (
                validate_warmers(
                    {"s": {"keys": {"sitemap": "tests.page_urls.sitemaps"}, "loader": PAGE}}
                )
                == []
            )
        finally:
            Site.objects.clear_cache()
            with connection.schema_editor() as editor:
                editor.delete_model(Site)


@pytest.mark.django_db(transaction=True)
def test_a_sitemap_warmer_fills_every_url_and_a_raising_sitemap_fails_the_run(
    page_cache: str,
) -> None:
    warmers = {
        "sitemap": {
            "keys": {"sitemap": {"sitemaps": "tests.page_urls.sitemaps", "domain": "testserver"}},
            "loader": PAGE,
            "max_retries": 0,
        },
        "broken": {
            "keys": {
                "sitemap": {"sitemaps": "tests.page_urls.broken_sitemaps", "domain": "testserver"}
            },
            "loader": PAGE,
        },
    }
    with override_settings(MIDDLEWARE=SITE_VARIED, CACHE_WARMERS=warmers):
        stats = django_cachewarmers.warm("sitemap")
        assert stats is not None
        assert (stats.keys_warmed, stats.keys_failed) == (6, 0), stats.errors
        for path in ("/v/top/", "/v/mid/", "/v/plain/", "/v/low/"):
            assert visit(path)[0], path  # http: the sitemap's protocol, as visitors here
        # The cache_page sitemap says https: the pages of https://testserver are cached.
        for path in ("/c/c1/", "/c/c2/"):
            assert visit(path, secure=True)[0], path
        failed = django_cachewarmers.warm("broken")
        assert failed is not None
        assert not failed.ok
        assert failed.run_error == "key provider failed: RuntimeError: the catalogue is down"


# -- checks -------------------------------------------------------------------------------------


def _ids(warmer: dict[str, Any]) -> list[tuple[str, str]]:
    messages: list[CheckMessage] = validate_warmers({"w": warmer})
    return [(str(m.id), m.msg) for m in messages]


SITEMAP = "tests.page_urls.sitemaps"


@pytest.mark.parametrize(
    ("warmer", "check_id", "text"),
    [
        ({"keys": ["http://x/"], "loader": PAGE, "variants": {"Accept-Encoding": "gzip"}}, "E030",
         "must be a non-empty list of dicts"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": []}, "E030", "non-empty list"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": ["gzip"]}, "E030",
         "['variants'][0]: is 'gzip', not a dict of request headers"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": [{"Accept Encoding": "gzip"}]},
         "E030", "not an HTTP header name"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": [{"Accept-Encoding": 1}]}, "E030",
         "header values are strings"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": [{"X": "a\r\nSet-Cookie: x"}]},
         "E030", "without control characters"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": [{}, {"Cookie": "sessionid=1"}]},
         "E031", "['variants'][1]: 'Cookie' cannot be a variant's header"),
        ({"keys": ["http://x/"], "loader": PAGE, "variants": [{"authorization": "Basic x"}]},
         "E031", "'authorization' cannot be"),
        ({"keys": ["k"], "loader": "tests.testapp.warming.load_item", "variants": [{}]}, "E032",
         "only a page warmer"),
        ({"keys": {"sitemap": 42}, "loader": PAGE}, "E033", "must be the dotted path"),
        ({"keys": {"sitemap": "tests.nope.sitemaps"}, "loader": PAGE}, "E033", "cannot import"),
        ({"keys": {"sitemap": "tests.page_urls.urlpatterns", "domain": "x"}, "loader": PAGE},
         "E033", "must be a non-empty dict of sitemaps"),
        ({"keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "x", "limt": 3}}, "loader": PAGE},
         "E033", "unknown sitemap option"),
        ({"keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "x", "limit": 0}}, "loader": PAGE},
         "E033", "['limit']: must be an integer >= 1"),
        ({"keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "http://x/"}}, "loader": PAGE},
         "E033", "['domain']: must be a host name"),
        ({"keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "x", "protocol": "ftp"}},
          "loader": PAGE}, "E033", "['protocol']"),
        ({"keys": {"sitemap": SITEMAP, "extra": 1}, "loader": PAGE}, "E033",
         "['keys']['extra']: unknown key beside 'sitemap'"),
        ({"keys": {"sitemap": SITEMAP}, "loader": PAGE}, "E034",
         "no 'domain', and no current Site"),
    ],
)  # fmt: skip
def test_bad_page_fields_are_check_errors(warmer: dict[str, Any], check_id: str, text: str) -> None:
    found = _ids(warmer)
    assert any(i == f"django_cachewarmers.{check_id}" and text in msg for i, msg in found), found
    assert all(i in CHECK_IDS for i, _ in found)


def test_page_field_warnings() -> None:
    with override_settings(ALLOWED_HOSTS=["shop.example"]):
        found = _ids(
            {"keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "other.example"}}, "loader": PAGE}
        )
        assert [i for i, _ in found] == ["django_cachewarmers.W006"]
        assert (
            _ids(
                {
                    "keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "shop.example:8000"}},
                    "loader": PAGE,
                }
            )
            == []
        )
        found = _ids(
            {
                "keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "shop.example"}},
                "loader": "tests.testapp.warming.load_item",
            }
        )
        assert [i for i, _ in found] == ["django_cachewarmers.W007"]


def test_valid_page_fields_parse() -> None:
    from django_cachewarmers.parsing import parse_warmer
    from django_cachewarmers.sitemaps import SitemapKeys

    spec = parse_warmer(
        "w",
        {
            "keys": {"sitemap": {"sitemaps": SITEMAP, "domain": "testserver", "limit": 3}},
            "loader": PAGE,
            "variants": [{}, {"accept-encoding": "gzip"}, {"Accept-Encoding": "gzip"}],
        },
    )
    assert spec.variants == ((), (("Accept-Encoding", "gzip"),))  # canonical, without repeats
    assert spec.keys == SitemapKeys(SITEMAP, limit=3, domain="testserver")


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_forget_removes_a_page_in_every_language(page_cache: str, where: str) -> None:
    """A deleted row's page (``pages.forget``): under LocaleMiddleware the page cache keeps one
    entry per language; after ``forget`` of the plain URL none of them is served."""
    from django_cachewarmers import pages

    path = "/v/a/" if where == "per-site" else "/c/a/"
    with override_settings(MIDDLEWARE=SITE_VARIED if where == "per-site" else VIEW_VARIED):
        visit(path)  # cached in English
        visit(path, **FRENCH)  # and in French
        assert visit(path)[0]
        assert visit(path, **FRENCH)[0]
        assert pages.forget(f"http://testserver{path}") >= 2
        assert not visit(path)[0]
        assert not visit(path, **FRENCH)[0]
