"""A site served under a sub-path (``SCRIPT_NAME`` = ``/shop``, or ``FORCE_SCRIPT_NAME``).

Pages are counted under their full URL, prefix included, with Django's default ``MEDIA_URL`` ("")
and a relative ``STATIC_URL``; ``render_page`` of that URL fills the entry the next real request
is served from. In process, then on a real gunicorn with ``SCRIPT_NAME`` in its environment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.test.utils import override_script_prefix
from django.urls import get_script_prefix

from django_cachewarmers import STORED_BY_LOADER, tracking
from django_cachewarmers.middleware import SCRIPT_NAMES_SEEN, AccessTrackingMiddleware
from django_cachewarmers.pages import PageNotWarmed, render_page, split_script_name
from tests.middleware_stacks import PER_SITE, PER_VIEW
from tests.processes import PYTHON, Project, http_get, started_at, wait_until
from tests.redis_server import RedisServer, free_port
from tests.testapp import views


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    tracking.reset()
    SCRIPT_NAMES_SEEN.clear()  # what this process's real requests taught it (a global)
    views.EXECUTIONS.clear()
    caches["default"].clear()
    # startproject's STATIC_URL (relative); MEDIA_URL stays Django's default "".
    with override_settings(MIDDLEWARE=PER_VIEW, STATIC_URL="static/"):
        yield
    tracking.reset()
    caches["default"].clear()
    SCRIPT_NAMES_SEEN.clear()


def counted() -> dict[Any, int]:
    return dict(tracking.get_tracker("pages").top(1000))


# -- counting -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_under_a_script_name_are_counted_under_their_full_url() -> None:
    client = Client(SCRIPT_NAME="/shop")
    for _ in range(2):
        assert client.get("/pages/a/").status_code == 200
    assert client.get("/products/3/").status_code == 200
    assert counted() == {
        "http://testserver/shop/pages/a/": 2,
        "http://testserver/shop/products/3/": 1,
    }


@pytest.mark.django_db
def test_pages_under_force_script_name_are_counted_under_their_full_url() -> None:
    with override_settings(FORCE_SCRIPT_NAME="/shop"):
        assert Client().get("/pages/a/").status_code == 200
    assert counted() == {"http://testserver/shop/pages/a/": 1}


@pytest.mark.parametrize(
    ("static_url", "media_url"),
    [("static/", ""), ("/shop/static/", "/shop/media/"), ("static/", "media/")],
)
def test_the_default_exclusions_under_a_script_name(static_url: str, media_url: str) -> None:
    """Admin, static and media files are not counted; every other page is, prefix included."""
    middleware = AccessTrackingMiddleware(lambda request: HttpResponse("ok"))
    factory = RequestFactory(SCRIPT_NAME="/shop")
    # The handler sets the script prefix of the request it serves; do as it does.
    with (
        override_settings(STATIC_URL=static_url, MEDIA_URL=media_url),
        override_script_prefix("/shop/"),
    ):
        for path in ("/pages/x/", "/static/app.css", "/admin/login/", "/media/a.png", "/"):
            middleware(factory.get(path))
    expected = {"http://testserver/shop/pages/x/": 1, "http://testserver/shop/": 1}
    if media_url == "":
        expected["http://testserver/shop/media/a.png"] = 1  # no MEDIA_URL: an ordinary page
    assert counted() == expected


# -- render_page ---------------------------------------------------------------------------------


def test_split_script_name_takes_the_shortest_prefix_under_which_the_rest_resolves() -> None:
    assert split_script_name("/products/7/") == ("", "/products/7/")
    assert split_script_name("/shop/products/7/") == ("/shop", "/products/7/")
    assert split_script_name("/a/shop/pages/x/") == ("/a/shop", "/pages/x/")
    assert split_script_name("/nothing/here/") == ("", "/nothing/here/")  # answers 404
    with override_settings(FORCE_SCRIPT_NAME=""):  # a site at the root: no guess
        assert split_script_name("/shop/products/7/") == ("", "/shop/products/7/")
    with override_settings(FORCE_SCRIPT_NAME="/shop/"):
        assert split_script_name("/shop/pages/x/") == ("/shop", "/pages/x/")
        with pytest.raises(PageNotWarmed, match="is not under FORCE_SCRIPT_NAME '/shop/'"):
            split_script_name("/pages/x/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("middleware", "path", "view"),
    [(PER_VIEW, "/products/7/", "product:7"), (PER_SITE, "/pages/home/", "page:home")],
    ids=["cache_page", "per-site-cache"],
)
def test_render_page_fills_the_entry_a_request_under_the_script_name_reads(
    middleware: list[str], path: str, view: str
) -> None:
    with override_settings(MIDDLEWARE=middleware):
        assert render_page(f"http://testserver/shop{path}") is STORED_BY_LOADER
        assert views.EXECUTIONS[view] == 1
        assert get_script_prefix() == "/"  # the loader thread's own prefix is back
        response = Client(SCRIPT_NAME="/shop").get(path)
        assert response.status_code == 200
        assert views.EXECUTIONS[view] == 1, "the view ran: not served from the warmed entry"
    assert counted() == {f"http://testserver/shop{path}": 1}  # the render was not counted


@pytest.mark.django_db
def test_once_real_requests_were_counted_their_script_name_is_used_not_a_guess() -> None:
    # A URL that no longer exists (a stale hot set after a deploy): on a site served at the root,
    # it must not be rendered as /products/7/ under a made-up script name "/old".
    assert split_script_name("/old/products/7/") == ("/old", "/products/7/")  # nothing seen yet
    assert Client().get("/pages/a/").status_code == 200  # a real request at the root
    assert split_script_name("/old/products/7/") == ("", "/old/products/7/")
    with pytest.raises(PageNotWarmed, match="answered 404"):
        render_page("http://testserver/old/products/7/")
    # A site that served /shop (and the root): the longest script name the path starts with.
    assert Client(SCRIPT_NAME="/shop").get("/pages/a/").status_code == 200
    assert split_script_name("/shop/products/7/") == ("/shop", "/products/7/")
    assert split_script_name("/products/7/") == ("", "/products/7/")


@pytest.mark.django_db
def test_render_page_under_force_script_name() -> None:
    with override_settings(FORCE_SCRIPT_NAME="/shop"):
        assert render_page("http://testserver/shop/products/7/") is STORED_BY_LOADER
        assert Client().get("/products/7/").content == b"product 7"
        assert views.EXECUTIONS["product:7"] == 1
        with pytest.raises(PageNotWarmed, match="not under FORCE_SCRIPT_NAME"):
            render_page("http://testserver/products/8/")


@pytest.mark.django_db
def test_a_url_outside_every_prefix_is_a_404() -> None:
    with pytest.raises(PageNotWarmed, match="answered 404"):
        render_page("http://testserver/shop/no/such/page/")


# -- a real gunicorn under SCRIPT_NAME=/shop ------------------------------------------------------

HOT_PAGES = {
    "keys": {"adaptive": {"tracker": "pages", "threshold": 3}},
    "loader": "django_cachewarmers.pages.render_page",
    "strategy": "adaptive",
    "refresh_interval": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "path", "view", "body"),
    [
        ("tracking", "/products/1/", "product:1", b"product 1"),
        ("site-cache", "/pages/home/", "page:home", b"page home"),
    ],
    ids=["cache_page", "per-site-cache"],
)
def test_a_site_under_a_script_name_on_gunicorn_counts_and_warms_its_pages(
    tmp_path: Path, redis_server: RedisServer, mode: str, path: str, view: str, body: bytes
) -> None:
    project = Project(tmp_path, redis_server, {"hot_pages": HOT_PAGES})
    view_log = tmp_path / "views.log"
    view_log.touch()
    project.env.update(
        DJANGO_SETTINGS_MODULE="tests.subpath_settings",
        SCRIPT_NAME="/shop",  # gunicorn serves the app under /shop (its documented variable)
        CW_MIDDLEWARE=mode,
        CW_VIEW_LOG=str(view_log),
        CW_SNAPSHOT_INTERVAL="0.5",
        CW_PERSIST_INTERVAL="3600",  # the hot set is saved by the clean shutdown
    )
    try:
        migrated = project.manage("migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stderr
        port = free_port()
        server = project.start(
            PYTHON, "-m", "gunicorn", "tests.wsgi:application",
            "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20",
            log="gunicorn.log",
        )  # fmt: skip
        wait_until(lambda: http_get(port, "/shop/ping/") == (200, b"pong"), 60, "gunicorn")

        def executions() -> Counter[str]:
            return Counter(view_log.read_text().split())

        def warmed_runs(after: datetime) -> list[dict[str, Any]]:
            return [
                run
                for run in project.run_rows()
                if run["warmer"] == "hot_pages"
                and run["keys_warmed"] >= 1
                and started_at(run) > after
            ]

        for _ in range(12):
            assert http_get(port, f"/shop{path}") == (200, body)
        flushed_at = datetime.now(timezone.utc)
        project.cache.clear()  # the suite's own redis-server: the page entry is gone
        runs = wait_until(lambda: warmed_runs(flushed_at), 60, "an adaptive run after the flush")
        assert runs[-1]["keys_failed"] == 0, runs[-1]

        before = executions()[view]
        assert http_get(port, f"/shop{path}") == (200, body)
        assert executions()[view] == before, "the view ran: the warmed entry was not the one read"
        log = project.log("gunicorn.log")
        assert project.stop(server) == 0
        assert "Traceback" not in log
        hot = dict(
            project.query("SELECT key, count FROM django_cachewarmers_hotkey WHERE tracker='pages'")
        )
        # What this test is about: the page is counted under its full URL, prefix included. How
        # many of the visits two workers' shutdown saves add up to is the hot-set tests' subject
        # (tests/test_hotkeys.py); here it depends on which worker served which visit.
        assert hot.get(f"http://127.0.0.1:{port}/shop{path}", 0) > 0, hot
        assert all(key.startswith(f"http://127.0.0.1:{port}/shop/") for key in hot), hot
    finally:
        project.cleanup()
