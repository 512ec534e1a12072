"""The example shop, run as `make run` runs it: real management commands, then a real runserver.

Everything runs in subprocesses on a SQLite file of the test's own (EXAMPLE_DB), with the
local-memory cache, so example_project/db.sqlite3 is never touched. The server gets the test
runner's environment as it is (PYTEST_* variables included) and warms at start all the same.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import sqlite3
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (
    PYTHON,
    ROOT,
    http_get,
    sqlite_query,
    start_group,
    stop_group,
    wait_until,
)
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

MANAGE = ROOT / "example_project" / "manage.py"


class Example:
    """The example project on a database file of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "db.sqlite3"
        self.env = dict(os.environ)  # the test runner's, PYTEST_* included, as a user's suite
        self.env.pop("REDIS_URL", None)  # the default: the local-memory cache
        self.env.update(
            # pytest-django exported the suite's settings; the example must use its own.
            DJANGO_SETTINGS_MODULE="example.settings",
            EXAMPLE_DB=str(self.db),
            PYTHONUNBUFFERED="1",
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, str(MANAGE), *args],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one SQL query on the example's database file ([] while it fails)."""
        with contextlib.suppress(sqlite3.OperationalError):
            return sqlite_query(self.db, sql)
        return []

    def start_server(self) -> None:
        """runserver (in a process group of its own: the autoreloader and its child)."""
        self.port = free_port()
        self.server = start_group(
            [PYTHON, str(MANAGE), "runserver", f"127.0.0.1:{self.port}"],
            self.env,
            self.tmp_path,
            self.tmp_path / "runserver.log",
        )

    def log(self) -> str:
        return (self.tmp_path / "runserver.log").read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop_server(self) -> int | None:
        """Stop the server (SIGTERM to its group, SIGKILL if need be): its exit code, if started."""
        return stop_group(self.server) if self.server is not None else None


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Example]:
    project = Example(tmp_path)
    yield project
    project.stop_server()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_example_shop_sets_up_warms_and_serves_warm_pages(example: Example) -> None:
    # The commands `make run` runs, in its order.
    ok(example.manage("migrate", "--noinput"))
    assert "Created 300 products in 20 categories." in ok(
        example.manage("generate_catalogue", "--products", "300")
    )
    warmed = ok(example.manage("warm_cache"))
    assert "products: 300 warmed, 0 failed, success rate 100.0%" in warmed
    assert "categories: 20 warmed, 0 failed" in warmed
    assert "catalogue_stats: 1 warmed, 0 failed" in warmed
    listed = ok(example.manage("warm_cache", "--list"))
    for name, strategy in [
        ("products", "scheduled"),
        ("categories", "eager"),
        ("hot_pages", "adaptive"),
        ("catalogue_stats", "lazy"),
    ]:
        assert re.search(rf"^{name}\s+{strategy}\s+default\s", listed, re.MULTILINE), listed
    first = ok(example.manage("ensure_demo_staff"))
    again = ok(example.manage("ensure_demo_staff"))
    assert "username 'demo', password 'cachewarmers' (created)" in first
    assert "username 'demo', password 'cachewarmers' (already there, password reset)" in again
    assert example.query("SELECT username, is_staff, is_superuser FROM auth_user") == [
        ("demo", 1, 1)
    ]

    # The server warms its own (local-memory) cache at start, before any request.
    example.start_server()
    startup = wait_until(
        lambda: example.query(
            "SELECT keys_warmed, keys_failed FROM django_cachewarmers_warmingrun "
            "WHERE warmer = 'products' AND trigger = 'startup'"
        ),
        60,
        "the server's startup warm of the products",
    )
    assert startup == [(300, 0)], example.log()
    assert "cache warming started in process" in example.log()
    # The admin's login page touches no product or category key.
    wait_until(lambda: http_get(example.port, "/admin/login/")[0] == 200, 30, "runserver to answer")

    # The very first request of a product page is a cache hit: warmed at startup.
    product_id = example.query("SELECT MIN(id) FROM shop_product")[0][0]
    status, body = http_get(example.port, f"/product/{product_id}/")
    assert status == 200
    assert b'data-cache="hit"' in body, body

    category_id = example.query("SELECT MIN(id) FROM shop_category")[0][0]
    # (Its response headers matter too: read here, not through http_get.)
    with urllib.request.urlopen(example.url(f"/category/{category_id}/"), timeout=10) as response:
        status, headers, text = response.status, response.headers, response.read().decode()
    assert status == 200
    assert "max-age=300" in headers.get("Cache-Control", "")  # a cache_page page
    assert "Cookie" not in headers.get("Vary", "")  # one variant for every anonymous visitor
    assert 'data-cache="hit"' in text  # its product list was warmed by the eager warmer
    assert "0 from the database" in text

    status, body = http_get(example.port, "/")
    assert status == 200
    assert b"300 products in 20 categories" in body

    # The admin: the login page answers, the demo login works, the warmers page lists them all.
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, body = http_get(example.port, "/admin/login/", opener=opener)
    assert status == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert token is not None, body
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1).decode(),
            "username": "demo",
            "password": "cachewarmers",
            "next": "/admin/django_cachewarmers/warmer/",
        }
    ).encode()
    with opener.open(example.url("/admin/login/"), data=form, timeout=10) as response:
        assert response.status == 200
        assert response.url.endswith("/admin/django_cachewarmers/warmer/"), response.url
        overview = response.read().decode()
    for name in ("products", "categories", "hot_pages", "catalogue_stats"):
        assert name in overview

    stopped = example.stop_server()
    assert example.server is not None
    # Django's autoreloader exits 0 on SIGTERM (its handler calls sys.exit(0)).
    assert stopped == 0, example.log()
    assert "Traceback" not in example.log(), example.log()


def test_editing_a_product_in_the_admin_rewrites_its_cached_page_data_in_place(
    example: Example,
) -> None:
    """`rewarm_on` of the `products` warmer: a real POST of the admin's change form, through a
    real runserver; the product page shows the new name and never stops being a cache hit."""
    ok(example.manage("migrate", "--noinput"))
    ok(example.manage("generate_catalogue", "--products", "50"))
    ok(example.manage("ensure_demo_staff"))
    example.start_server()
    wait_until(
        lambda: example.query(
            "SELECT 1 FROM django_cachewarmers_warmingrun "
            "WHERE warmer = 'products' AND trigger = 'startup'"
        ),
        60,
        "the server's startup warm of the products",
    )
    wait_until(lambda: http_get(example.port, "/admin/login/")[0] == 200, 30, "runserver")
    product_id, name, price, category_id = example.query(
        "SELECT id, name, price_cents, category_id FROM shop_product ORDER BY id LIMIT 1"
    )[0]
    status, body = http_get(example.port, f"/product/{product_id}/")
    assert status == 200
    assert b'data-cache="hit"' in body, body
    assert name.encode() in body

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(path: str, page: bytes, form: dict[str, str]) -> str:
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None, page
        data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": token.group(1).decode()})
        with opener.open(example.url(path), data=data.encode(), timeout=30) as response:
            assert response.status == 200
            return str(response.url)

    status, page = http_get(example.port, "/admin/login/", opener=opener)
    assert status == 200
    post("/admin/login/", page, {"username": "demo", "password": "cachewarmers", "next": "/admin/"})
    change = f"/admin/shop/product/{product_id}/change/"
    status, page = http_get(example.port, change, opener=opener)
    assert status == 200, page
    new_name = f"{name} (edited)"
    form = {"category": str(category_id), "name": new_name, "price_cents": str(price)}
    landed = post(change, page, {**form, "_save": "Save"})
    assert landed.endswith("/admin/shop/product/"), landed

    # Every view of the page from the save on is a cache hit: the old name until the re-warm
    # (rewarm_delay, 1 s, after the commit) has rewritten the key, then the new one.
    views: list[bytes] = []

    def shows_new_name() -> bool:
        status, body = http_get(example.port, f"/product/{product_id}/")
        assert status == 200
        views.append(body)
        return new_name.encode() in body

    wait_until(shows_new_name, 30, "the product page to show the new name")
    assert all(b'data-cache="hit"' in body for body in views), [b"miss" in body for body in views]
    runs = example.query(
        "SELECT keys_warmed, keys_failed FROM django_cachewarmers_warmingrun "
        "WHERE warmer = 'products' AND trigger = 'change'"
    )
    assert runs == [(1, 0)]
    assert "Traceback" not in example.log(), example.log()
