"""render_page counts a page as warmed only when a page cache now serves the next anonymous GET.

In process, through the real handler and Django's real cache middleware, on a real LocMemCache
and on Django's RedisCache on the suite's own redis-server. Whether the next request was a hit is
read from the views' execution counts (the view runs only on a miss).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import Client, override_settings

from django_cachewarmers import STORED_BY_LOADER, tracking
from django_cachewarmers.middleware import SCRIPT_NAMES_SEEN
from django_cachewarmers.pages import PageNotWarmed, render_page
from tests.middleware_stacks import PER_SITE, PER_VIEW
from tests.redis_server import RedisServer
from tests.testapp import views

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pages"}


@pytest.fixture(params=["locmem", "redis"])
def page_cache(request: pytest.FixtureRequest) -> Iterator[str]:
    """The page cache ("default"): a LocMemCache, or RedisCache on the suite's own server."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        default: dict[str, Any] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{server.url}/2",
        }
    else:
        default = LOCMEM
    with override_settings(CACHES={**settings.CACHES, "default": default}):
        caches["default"].clear()  # the suite's own redis-server, a database of its own
        tracking.reset()
        SCRIPT_NAMES_SEEN.clear()
        views.EXECUTIONS.clear()
        yield request.param
        caches["default"].clear()
    tracking.reset()


def hit(path: str, **extra: Any) -> bool:
    """Whether an anonymous GET of ``path`` is served without running its view (a cache hit)."""
    before = sum(views.EXECUTIONS.values())
    response = Client().get(path, **extra)
    assert response.status_code < 500, response
    return sum(views.EXECUTIONS.values()) == before


# Each kind of page, under the per-site cache and under cache_page: None means warmed, else the
# reason render_page must give. Django's own rules (django/middleware/cache.py).
NOT_STORED = {
    "csrf": "sets a cookie (csrftoken) and varies on Cookie",
    "private": "Cache-Control: private (private)",
    "no-store": "Cache-Control: no-store (no-store)",
    "vary-star": "Vary: *",
    "opt-out": "the view or a middleware set request._cache_update_cache = False",
    "created": "answered 201 Created: the page cache stores only 200 responses",
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [None, *NOT_STORED])
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_a_page_counts_as_warmed_only_when_the_next_anonymous_get_is_a_hit(
    page_cache: str, where: str, kind: str | None
) -> None:
    kind_ = kind or "plain"
    path = f"/shaped/{kind_}/" if where == "per-site" else f"/cached/{kind_}/"
    with override_settings(MIDDLEWARE=PER_SITE if where == "per-site" else PER_VIEW):
        if kind is None:
            assert render_page(f"http://testserver{path}") is STORED_BY_LOADER
            assert hit(path)
        else:
            with pytest.raises(PageNotWarmed, match=re.escape(NOT_STORED[kind])) as failed:
                render_page(f"http://testserver{path}")
            assert "the next anonymous GET would run the view" in str(failed.value)
            assert not hit(path)
    # Neither the render nor its check counted as a visit; the real GET did.
    assert dict(tracking.get_tracker("pages").top(10)) == {f"http://testserver{path}": 1}


@pytest.mark.django_db
def test_max_age_0_is_not_stored_by_the_per_site_cache(page_cache: str) -> None:
    with override_settings(MIDDLEWARE=PER_SITE):
        with pytest.raises(PageNotWarmed, match=re.escape("Cache-Control: max-age=0")):
            render_page("http://testserver/shaped/max-age-0/")
        assert not hit("/shaped/max-age-0/")


@pytest.mark.django_db
def test_cache_page_stores_max_age_0_so_it_is_warmed(page_cache: str) -> None:
    # cache_page's own timeout takes precedence over the response's max-age (Django's rule): the
    # page is stored, and the truth is the cache's, not the header's.
    with override_settings(MIDDLEWARE=PER_VIEW):
        assert render_page("http://testserver/cached/max-age-0/") is STORED_BY_LOADER
        assert hit("/cached/max-age-0/")


@pytest.mark.django_db
def test_cache_page_without_csrf_protect_stores_the_csrf_page_so_it_is_warmed(
    page_cache: str,
) -> None:
    # Django's documented pitfall: cache_page stores the view's response before
    # CsrfViewMiddleware adds the cookie. The next anonymous GET is a hit, so it is warmed.
    with override_settings(MIDDLEWARE=PER_VIEW):
        assert render_page("http://testserver/cached-bare/csrf/") is STORED_BY_LOADER
        assert hit("/cached-bare/csrf/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "status"), [("not-found", "404 Not Found"), ("error", "500 Internal Server Error")]
)
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_a_non_2xx_page_is_a_failed_key(
    page_cache: str, where: str, kind: str, status: str
) -> None:
    path = f"/shaped/{kind}/" if where == "per-site" else f"/cached/{kind}/"
    with (
        override_settings(MIDDLEWARE=PER_SITE if where == "per-site" else PER_VIEW),
        pytest.raises(PageNotWarmed, match=re.escape(f"answered {status}")),
    ):
        render_page(f"http://testserver{path}")


@pytest.mark.django_db
def test_a_page_with_no_page_cache_in_front_of_it_is_not_warmed(page_cache: str) -> None:
    with pytest.raises(PageNotWarmed, match="no page cache in front of it"):
        render_page("http://testserver/shaped/plain/")  # no cache_page, no per-site cache
    assert not hit("/shaped/plain/")


@pytest.mark.django_db
def test_a_page_cache_that_keeps_nothing_is_not_warmed(page_cache: str) -> None:
    dummy = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    with (
        override_settings(MIDDLEWARE=PER_SITE, CACHES={**settings.CACHES, "default": dummy}),
        pytest.raises(PageNotWarmed, match="the page cache did not keep the response"),
    ):
        render_page("http://testserver/shaped/plain/")


@pytest.mark.django_db
def test_a_page_cache_timeout_of_0_is_not_warmed(page_cache: str) -> None:
    with (
        override_settings(MIDDLEWARE=PER_SITE, CACHE_MIDDLEWARE_SECONDS=0),
        pytest.raises(PageNotWarmed, match="a cache timeout of 0"),
    ):
        render_page("http://testserver/shaped/plain/")


@pytest.mark.django_db
def test_a_page_already_cached_is_rendered_again_in_place(page_cache: str) -> None:
    # A refresh: the page cache's lookup misses for the render only, the view runs, and the entry
    # is replaced under the same key (tests/test_page_warming.py checks the new content).
    with override_settings(MIDDLEWARE=PER_SITE):
        assert hit("/shaped/plain/") is False  # a real visit cached it
        assert render_page("http://testserver/shaped/plain/") is STORED_BY_LOADER
        assert views.EXECUTIONS["shaped:plain"] == 2
        assert hit("/shaped/plain/")


@pytest.mark.django_db(transaction=True)
def test_a_warm_reports_the_uncacheable_pages_as_failed_keys_with_their_reasons(
    page_cache: str,
) -> None:
    import django_cachewarmers

    kinds = ["plain", "csrf", "private", "no-store", "max-age-0", "vary-star", "not-found"]
    warmers = {
        "pages": {
            "keys": [f"http://testserver/shaped/{kind}/" for kind in kinds],
            "loader": "django_cachewarmers.pages.render_page",
            "max_retries": 0,
        }
    }
    with override_settings(MIDDLEWARE=PER_SITE, CACHE_WARMERS=warmers):
        stats = django_cachewarmers.warm("pages")
    assert stats is not None  # outside a transaction: warmed at once
    assert (stats.keys_warmed, stats.keys_failed) == (1, 6), stats
    errors = "\n".join(str(error) for error in stats.errors)
    for reason in (
        "sets a cookie (csrftoken)",
        "(private)",
        "(no-store)",
        "max-age=0",
        "Vary: *",
        "answered 404 Not Found",
    ):
        assert reason in errors, errors
    with override_settings(MIDDLEWARE=PER_SITE):
        assert hit("/shaped/plain/")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_pages_are_read_back_after_the_last_write_and_culled_ones_fail(where: str) -> None:
    # The tester's case: 20 pages (2 entries each: headers + page) into a LocMemCache of
    # MAX_ENTRIES 30. Whatever the culling left, the run's counts must be the pages a real
    # anonymous GET is served from the cache, read back after the run's last render.
    import django_cachewarmers
    from django_cachewarmers.pages import page_is_cached

    small = {**LOCMEM, "LOCATION": "pages-small", "OPTIONS": {"MAX_ENTRIES": 30}}
    prefix = "/shaped" if where == "per-site" else "/cached"
    urls = [f"http://testserver{prefix}/p{i}/" for i in range(20)]
    warmers = {
        "pages": {
            "keys": urls,
            "loader": "django_cachewarmers.pages.render_page",
            "max_workers": 1,
            "batch_size": 5,
            "max_retries": 0,
        }
    }
    with override_settings(
        MIDDLEWARE=PER_SITE if where == "per-site" else PER_VIEW,
        CACHES={**settings.CACHES, "default": small},
        CACHE_WARMERS=warmers,
    ):
        caches["default"].clear()
        views.EXECUTIONS.clear()
        stats = django_cachewarmers.warm("pages")
        assert stats is not None
        held = [url for url in urls if page_is_cached(url)]
        assert 0 < len(held) < 20  # 40 entries cannot fit in 30
        assert stats.keys_verified == 20
        assert (stats.keys_warmed, stats.keys_failed, stats.keys_lost) == (
            len(held),
            20 - len(held),
            20 - len(held),
        ), stats.errors
        assert stats.run_error is None
        assert all("culled by its MAX_ENTRIES (30" in str(error) for error in stats.errors)
        # The truth a real request sees: hits first (a hit writes nothing, so culls nothing).
        for url in held:
            assert hit(url.removeprefix("http://testserver")), url
        for url in urls:
            if url not in held:
                assert not hit(url.removeprefix("http://testserver")), url
        caches["default"].clear()


def test_only_timeouts_the_fast_path_writes_as_django_skip_set_many() -> None:
    """The page cache's ``set_many`` goes through the engine's Redis write path only with a
    timeout it writes exactly as Django would; anything else is left to ``set_many``."""
    from django_cachewarmers.core.config import DEFAULT_TIMEOUT
    from django_cachewarmers.pages import _timeout_argument

    assert _timeout_argument((), {}) is DEFAULT_TIMEOUT
    assert _timeout_argument((60,), {}) == 60
    assert _timeout_argument((), {"timeout": 90.5}) == 90.5
    assert _timeout_argument((None,), {}) is None
    # Django rounds 0.5 s down to 0, "delete": set_many does that.
    for args, kwargs in (((0.5,), {}), ((0,), {}), ((True,), {}), ((60,), {"version": 2}),
                         ((), {"version": 2}), ((60, 2), {})):  # fmt: skip
        assert _timeout_argument(args, kwargs) is NotImplemented, (args, kwargs)


@pytest.mark.django_db
def test_a_render_through_django_redis_takes_the_fast_path_too(redis_server: RedisServer) -> None:
    """django-redis as the page cache: both entries in one script call, in django-redis's own
    format (its serializer, TTL in milliseconds), and the next real request is a hit."""
    import redis

    default = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"{redis_server.url}/5"}
    client = redis.Redis.from_url(f"{redis_server.url}/5")
    try:
        with override_settings(CACHES={**settings.CACHES, "default": default},
                               MIDDLEWARE=PER_SITE):  # fmt: skip
            caches["default"].clear()
            before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            assert render_page("http://testserver/shaped/plain/") is STORED_BY_LOADER
            after = client.info("commandstats")["cmdstat_evalsha"]["calls"]
            assert after - before == 1
            ttls = [client.pttl(key) for key in client.scan_iter(
                match="*views.decorators.cache.cache_*", count=100)]  # fmt: skip
            # The headers entry and the page entry, with the page cache's TTL in milliseconds.
            seconds = settings.CACHE_MIDDLEWARE_SECONDS
            assert len(ttls) == 2, ttls
            assert all((seconds - 60) * 1000 < ttl <= seconds * 1000 for ttl in ttls), ttls
            assert hit("/shaped/plain/")
            caches["default"].clear()
    finally:
        client.close()


@pytest.mark.django_db
def test_a_page_cache_on_a_redis_that_refuses_scripts_still_warms(
    redis_server: RedisServer,
) -> None:
    """A Redis user without ``@scripting``: the render's two entries go out as a pipeline of
    ``SET`` (the engine's fallback), and the next real request is a hit."""
    from django.core.cache.backends.redis import RedisCache

    from tests.redis_server import close_redis

    admin = RedisCache(f"{redis_server.url}/6", {})
    client = admin._cache.get_client(None, write=True)
    client.acl_setuser("nopagescript", enabled=True, passwords=["+pw"], keys=["*"],
                       channels=["*"], categories=["+@all", "-@scripting"])  # fmt: skip
    host_port = redis_server.url.removeprefix("redis://")
    default = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
               "LOCATION": f"redis://nopagescript:pw@{host_port}/6"}  # fmt: skip
    try:
        with override_settings(CACHES={**settings.CACHES, "default": default},
                               MIDDLEWARE=PER_SITE):  # fmt: skip
            caches["default"].clear()
            for _refresh in (False, True):
                assert render_page("http://testserver/shaped/plain/") is STORED_BY_LOADER
            assert hit("/shaped/plain/")
            caches["default"].clear()
    finally:
        client.acl_deluser("nopagescript")
        close_redis(admin)


@pytest.mark.django_db
def test_page_is_cached_answers_without_running_the_view(page_cache: str) -> None:
    from django_cachewarmers.pages import page_is_cached

    url = "http://testserver/shaped/probe/"
    assert page_is_cached(url) is None  # never rendered in this process
    with override_settings(MIDDLEWARE=PER_SITE):
        assert render_page(url) is STORED_BY_LOADER
        runs = views.EXECUTIONS["shaped:probe"]
        assert page_is_cached(url) is True
        caches["default"].clear()
        assert page_is_cached(url) is False
        assert views.EXECUTIONS["shaped:probe"] == runs  # no view ran for the answers
        assert not hit("/shaped/probe/")


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_a_render_stores_its_two_entries_in_one_round_trip_to_redis(
    redis_server: RedisServer, where: str
) -> None:
    """The headers entry and the page entry go in one round trip: one call of the engine's
    write script (``backends.redis``), not Django's MULTI/MSET/EXPIRE/EXEC, and Redis' reply
    confirms both, so the render reads nothing back: counted by the server. A real request
    through Django's cache middleware is then a hit."""
    import redis

    default = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
               "LOCATION": f"{redis_server.url}/4"}  # fmt: skip
    path = "/shaped/plain/" if where == "per-site" else "/cached/plain/"
    client = redis.Redis.from_url(redis_server.url)

    def commands() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in
                ("set", "evalsha", "mset", "mget", "get", "exec")}  # fmt: skip

    try:
        with override_settings(
            CACHES={**settings.CACHES, "default": default},
            MIDDLEWARE=PER_SITE if where == "per-site" else PER_VIEW,
        ):
            caches["default"].clear()
            for refresh in (False, True):  # a cold page, then one still cached
                before = commands()
                assert render_page(f"http://testserver{path}") is STORED_BY_LOADER
                after = commands()
                assert {k: after[k] - before[k] for k in after} == {
                    "set": 2, "evalsha": 1, "mset": 0, "exec": 0, "mget": 0, "get": 0
                }, refresh  # fmt: skip
            assert hit(path)
            caches["default"].clear()
    finally:
        client.close()
