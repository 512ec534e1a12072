"""AccessTrackingMiddleware (sync and async) and render_page, in process."""

from __future__ import annotations

import asyncio
import logging
import re
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.http.cookie import parse_cookie
from django.test import AsyncClient, Client, RequestFactory, override_settings

from django_cachewarmers import STORED_BY_LOADER, tracking
from django_cachewarmers.middleware import (
    MAX_KNOWN_PAGES,
    AccessTrackingMiddleware,
    tracking_settings,
)
from django_cachewarmers.pages import PageNotWarmed, render_page
from tests.middleware_stacks import PER_SITE, PER_VIEW
from tests.testapp import views

WITH_TRACKING = PER_VIEW
SITE_CACHE = PER_SITE


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    tracking.reset()
    views.EXECUTIONS.clear()
    caches["default"].clear()
    with override_settings(MIDDLEWARE=WITH_TRACKING):
        yield
    tracking.reset()
    caches["default"].clear()


def counted() -> dict[Any, int]:
    return dict(tracking.get_tracker("pages").top(1000))


# -- what is counted ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_path_counts_anonymous_2xx_get_and_head_without_query_string() -> None:
    client = Client()
    for _ in range(3):
        assert client.get("/pages/a/?token=secret").status_code == 200
    assert client.head("/pages/b/").status_code == 200
    assert counted() == {"http://testserver/pages/a/": 3, "http://testserver/pages/b/": 1}
    assert not any("secret" in str(key) for key in counted())


@pytest.mark.django_db
def test_async_path_counts_too() -> None:
    async def go() -> None:
        client = AsyncClient()
        for _ in range(2):
            response = await client.get("/pages/async/?q=1")
            assert response.status_code == 200

    asyncio.run(go())
    assert counted() == {"http://testserver/pages/async/": 2}


@pytest.mark.django_db
def test_the_scheme_of_an_https_request_is_kept_on_both_paths() -> None:
    Client().get("/pages/s/", secure=True)

    async def go() -> None:
        await AsyncClient().get("/pages/as/", secure=True)

    asyncio.run(go())
    assert set(counted()) == {"https://testserver/pages/s/", "https://testserver/pages/as/"}


def test_the_middleware_runs_in_async_mode_under_an_async_stack() -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = AccessTrackingMiddleware(get_response)
    assert middleware.async_mode
    assert asyncio.iscoroutinefunction(middleware)
    request = RequestFactory().get("/pages/x/")
    response = asyncio.run(middleware(request))
    assert response.status_code == 200
    assert counted() == {"http://testserver/pages/x/": 1}
    sync = AccessTrackingMiddleware(lambda request: HttpResponse("ok"))
    assert not sync.async_mode


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/pages/a/"),
        ("put", "/pages/a/"),
        ("delete", "/pages/a/"),
        ("get", "/missing/"),
        ("get", "/admin/login/"),
        ("get", "/static/app.css"),
    ],
)
def test_not_counted(method: str, path: str) -> None:
    getattr(Client(), method)(path)
    assert counted() == {}


@pytest.mark.django_db
def test_authenticated_users_pages_are_not_counted_unless_configured() -> None:
    user = get_user_model().objects.create_user("ann", password="pw")
    client = Client()
    client.force_login(user)
    client.get("/pages/private/")
    Client(HTTP_AUTHORIZATION="Bearer abc").get("/pages/token/")
    assert counted() == {}
    with override_settings(CACHE_WARMERS_TRACK_AUTHENTICATED=True):
        client.get("/pages/private/")
    assert counted() == {"http://testserver/pages/private/": 1}


@pytest.mark.parametrize("path", ["sync", "async"])
def test_only_a_session_cookie_makes_the_user_matter(path: str) -> None:
    """A signed-in session is not counted; a visitor with other cookies, or none, is, unasked."""
    asked: list[str] = []

    class Cookies(dict[str, str]):
        def __contains__(self, key: object) -> bool:
            asked.append("cookies")
            return super().__contains__(key)

    class User:
        @property
        def is_authenticated(self) -> bool:
            asked.append("user")
            return True  # every request's user claims to be signed in

    async def auser() -> User:
        return User()

    def sync_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = AccessTrackingMiddleware(sync_view if path == "sync" else async_view)
    session = f"{settings.SESSION_COOKIE_NAME}=abc; csrftoken=x"
    for page, header, expected in (
        ("private", session, ["cookies", "user"]),
        ("other-cookies", "csrftoken=x", ["cookies"]),
        ("none", None, []),
    ):
        request = RequestFactory().get(f"/pages/{page}/")
        if header is None:
            request.META.pop("HTTP_COOKIE", None)  # RequestFactory always sends one
        else:
            request.META["HTTP_COOKIE"] = header
        request.__dict__["COOKIES"] = Cookies(parse_cookie(header or ""))
        request.user = User()  # type: ignore[assignment]
        request.auser = auser  # type: ignore[assignment]
        asked.clear()
        if path == "sync":
            middleware(request)
        else:
            asyncio.run(middleware(request))
        assert asked == expected, page
    assert counted() == {
        "http://testserver/pages/other-cookies/": 1,
        "http://testserver/pages/none/": 1,
    }


@pytest.mark.django_db
def test_exclusions_are_configurable() -> None:
    with override_settings(CACHE_WARMERS_TRACK_EXCLUDE=[r"^/pages/secret"]):
        Client().get("/pages/secret-plans/")
        Client().get("/admin/login/")  # the default exclusions no longer apply
    assert set(counted()) == {"http://testserver/admin/login/"}


@pytest.mark.django_db
def test_sample_rate() -> None:
    client = Client()
    with override_settings(CACHE_WARMERS_TRACK_SAMPLE_RATE=0):
        for _ in range(50):
            client.get("/pages/a/")
    assert counted() == {}
    with override_settings(CACHE_WARMERS_TRACK_SAMPLE_RATE=0.5):
        for _ in range(2000):
            client.get("/pages/a/")
    # Binomial(2000, 0.5): 800..1200 is more than 8 standard deviations wide.
    assert 800 <= counted()["http://testserver/pages/a/"] <= 1200


@pytest.mark.django_db
def test_an_error_while_tracking_is_logged_and_the_request_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with override_settings(CACHE_WARMERS_TRACKER_MAX_KEYS="many"):  # the tracker cannot be built
        response = Client().get("/pages/a/")
    assert response.status_code == 200
    assert response.content == b"page a"
    assert "access tracking failed; the request is not affected" in caplog.text


def test_oversized_urls_are_not_counted() -> None:
    middleware = AccessTrackingMiddleware(lambda request: HttpResponse("ok"))
    middleware(RequestFactory().get("/pages/" + "x" * 5000 + "/"))
    middleware(RequestFactory().get("/pages/ok/"))
    assert list(counted()) == ["http://testserver/pages/ok/"]


def test_a_page_is_counted_per_host_and_scheme() -> None:
    middleware = AccessTrackingMiddleware(lambda request: HttpResponse("ok"))
    factory = RequestFactory()
    with override_settings(ALLOWED_HOSTS=["a.example", "b.example"]):
        for _ in range(2):  # the second time from the remembered keys
            middleware(factory.get("/pages/x/", HTTP_HOST="a.example"))
            middleware(factory.get("/pages/x/", HTTP_HOST="b.example"))
            middleware(factory.get("/pages/x/", HTTP_HOST="b.example", secure=True))
    assert counted() == {
        "http://a.example/pages/x/": 2,
        "http://b.example/pages/x/": 2,
        "https://b.example/pages/x/": 2,
    }


def test_a_2xx_for_a_host_not_allowed_is_not_counted_nor_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Without CommonMiddleware nothing checked the host before the view answered 200.
    middleware = AccessTrackingMiddleware(lambda request: HttpResponse("ok"))
    with (
        override_settings(ALLOWED_HOSTS=["testserver"]),
        caplog.at_level(logging.DEBUG, logger="django_cachewarmers"),
    ):
        for _ in range(2):
            response = middleware(RequestFactory().get("/pages/x/", HTTP_HOST="evil.example"))
            assert response.status_code == 200
    assert counted() == {}
    assert not caplog.records


def get(path: str) -> HttpRequest:
    """A bare GET request (RequestFactory is 10x slower, too slow for a 100,000-URL flood)."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = path
    request.META = {"SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_HOST": "testserver"}
    return request


# A tracker of 1,000 keys: a flood of 10 times that (and of MAX_KNOWN_PAGES) shows the bound as well
# as the default 10,000 would with a flood ten times as long.
@override_settings(CACHE_WARMERS_TRACKER_MAX_KEYS=1000)
def test_a_flood_of_unique_urls_keeps_memory_bounded_and_hot_pages_hot() -> None:
    ok = HttpResponse("ok")
    middleware = AccessTrackingMiddleware(lambda request: ok)
    hot = [f"/products/{i}/" for i in range(20)]
    for _ in range(30):
        for path in hot:
            middleware(get(path))
    tracker = tracking.get_tracker("pages")
    tracemalloc.start()
    try:
        for i in range(10_000):
            middleware(get(f"/crawl/{i}/"))
        after_half, _ = tracemalloc.get_traced_memory()
        for i in range(10_000, 20_000):
            middleware(get(f"/crawl/{i}/"))
        after_all, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tracker) <= tracker.max_keys == 1000
    assert len(tracking_settings().known) <= MAX_KNOWN_PAGES
    assert after_all < after_half * 1.2 + 1_000_000  # flat, not growing with the flood
    top = tracker.get_hot_keys(threshold=5, limit=20)
    assert set(top) == {f"http://testserver{path}" for path in hot}


# -- render_page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_render_page_makes_the_next_real_request_a_cache_hit_for_cache_page() -> None:
    assert render_page("http://testserver/products/7/") is STORED_BY_LOADER
    assert views.EXECUTIONS["product:7"] == 1
    response = Client().get("/products/7/")
    assert response.content == b"product 7"
    assert views.EXECUTIONS["product:7"] == 1  # served from the cache: the view did not run
    assert counted() == {"http://testserver/products/7/": 1}  # the render itself was not counted


@pytest.mark.django_db
def test_render_page_fills_the_per_site_cache() -> None:
    with override_settings(MIDDLEWARE=SITE_CACHE):
        render_page("http://testserver/pages/home/")
        assert views.EXECUTIONS["page:home"] == 1
        assert Client().get("/pages/home/").content == b"page home"
        assert views.EXECUTIONS["page:home"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://testserver/missing/", "answered 404"),
        ("http://evil.example/products/1/", "is not in ALLOWED_HOSTS"),
        ("ftp://testserver/products/1/", "not an http(s) URL"),
        ("http://testserver/products/1/?a=1", "no query string"),
    ],
)
def test_render_page_failures(url: str, message: str) -> None:
    with (
        override_settings(ALLOWED_HOSTS=["testserver"]),
        pytest.raises(PageNotWarmed, match=re.escape(message)),
    ):
        render_page(url)


@pytest.mark.django_db(transaction=True)
def test_an_adaptive_page_warmer_warms_the_hot_pages() -> None:
    import django_cachewarmers

    warmers = {
        "hot_pages": {
            "keys": {"adaptive": {"tracker": "pages", "threshold": 2}},
            "loader": "django_cachewarmers.pages.render_page",
            "strategy": "adaptive",
        }
    }
    client = Client()
    for _ in range(3):
        client.get("/products/1/")
    client.get("/products/2/")  # seen once: below the threshold
    caches["default"].clear()
    with override_settings(CACHE_WARMERS=warmers):
        stats = django_cachewarmers.warm("hot_pages")
    assert stats is not None  # run at once: no transaction is open
    assert (stats.keys_warmed, stats.keys_failed) == (1, 0)
    before = views.EXECUTIONS["product:1"]
    client.get("/products/1/")
    assert views.EXECUTIONS["product:1"] == before  # a cache hit
