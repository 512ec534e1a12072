"""The "Cache warmers" overview in a real browser: log in, Warm now, see the run; screenshot it.

Drives Debian's headless Chromium with Playwright's sync API against pytest-django's live server.
With CACHEWARMERS_SCREENSHOT=1 the screenshot it takes replaces docs/img/admin-overview.png.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

import django_cachewarmers
from django_cachewarmers import runner, tracking
from django_cachewarmers.models import Trigger, WarmingRun
from tests import runs
from tests.redis_server import require_binary

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "admin-overview.png"
OVERVIEW = "/admin/django_cachewarmers/warmer/"
PASSWORD = "a-long-password-for-the-browser-test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ITEMS = {"keys": "tests.testapp.warming.item_keys", "loader": "tests.testapp.warming.load_item"}
SHOWCASE: dict[str, dict[str, object]] = {
    "products": {
        "keys": "tests.testapp.warming.item_keys",
        "batch_loader": "tests.testapp.warming.load_items",
        "strategy": "scheduled",
        "refresh_interval": 300,
    },
    "categories": {**ITEMS, "strategy": "eager"},
    "inventory": {
        "keys": "tests.testapp.warming.item_keys",
        "loader": "tests.testapp.warming.load_item_failing_3",
        "strategy": "scheduled",
        "refresh_interval": 600,
        "max_retries": 0,
    },
    "popular_pages": {
        "keys": {"adaptive": {"tracker": "browser-test", "threshold": 2}},
        "loader": "tests.testapp.warming.load_item",
        "strategy": "adaptive",
        "refresh_interval": 60,
    },
    "reports": {**ITEMS, "strategy": "lazy"},
}
HOT = {"/products/42/": 57, "/": 41, "/products/7/?ref=<script>alert(1)</script>": 12, "/cart/": 3}


def seed_history() -> None:
    """A few hours of runs, so the charts and the screenshot have something to show."""
    now = timezone.now()

    def run(warmer: str, minutes_ago: float, ms: float, failed: int = 0, **extra: Any) -> None:
        started = now - timedelta(minutes=minutes_ago)
        runs.make_run(
            warmer,
            started,
            finished_at=started + timedelta(milliseconds=ms),
            keys_warmed=20 - failed,
            keys_failed=failed,
            success_rate=(20 - failed) / 20,
            total_time_ms=ms,
            errors=[f"item:{i}: TimeoutError: upstream timed out" for i in range(failed)],
            **extra,
        )

    for i in range(20):
        minutes = 5 * (20 - i) + 2
        run("products", minutes, 180 + 40 * (i % 5) + (900 if i == 13 else 0), 3 if i == 13 else 0)
        run("popular_pages", minutes, 60 + 15 * (i % 3), trigger=Trigger.SCHEDULE)
    for i in range(8):
        run("inventory", 10 * (9 - i) + 4, 420 + 30 * i, 0)
    run("categories", 95, 35, trigger=Trigger.STARTUP)
    # The failing warmer's last run: a real one, one key's loader raises.
    django_cachewarmers.warm("inventory", trigger="schedule")
    tracker = tracking.get_tracker("browser-test")
    for key, count in HOT.items():
        for _ in range(count):
            tracker.record_access(key)


@pytest.mark.slow  # a real headless Chromium
@pytest.mark.django_db(transaction=True)
def test_warm_now_in_a_browser(live_server: Any, django_user_model: Any, tmp_path: Path) -> None:
    chromium = require_binary("chromium", "needed for the admin browser test")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is needed for the browser test"
    )
    user = django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_cachewarmers",
            codename__in=["view_warmer", "view_warmingrun", "warm_cache"],
        )
    )
    with override_settings(CACHE_WARMERS=SHOWCASE):
        try:
            caches["default"].clear()  # the probe's figures below count this test's keys only
            seed_history()
            # No ORM call from here until the browser is closed: Playwright's sync API runs an
            # event loop in this thread, and Django refuses database calls under a running loop.
            # The live server and the background warm use their own threads, so they are fine.
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    drive(browser, live_server.url, tmp_path)
                finally:
                    browser.close()
            assert runner.wait_for_background_warms(timeout=30)
            run = WarmingRun.objects.get(warmer="reports")
        finally:
            runner.wait_for_background_warms(timeout=30)
            tracking.get_tracker("browser-test").clear()
    assert run.trigger == "admin"
    assert run.keys_warmed == 20
    assert SCREENSHOT.stat().st_size > 10_000


def drive(browser: Any, base_url: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Log in through the real login form; it sends us on to the overview.
    page.goto(f"{base_url}/admin/login/?next={OVERVIEW}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}{OVERVIEW}")
    assert page.locator("h1").inner_text() == "Cache warmers"

    inventory = page.locator('tbody[data-warmer="inventory"]')
    assert "Failing" in inventory.inner_text()
    assert "item 3 is missing upstream" in inventory.inner_text()
    hot = page.locator('tbody[data-warmer="popular_pages"]')
    assert "/products/7/?ref=<script>alert(1)" in hot.inner_text()  # shown as text, not run
    assert page.locator("svg.cw-spark").count() == 4
    # The seeded runs were "recorded" by another process (web-1, pid 4242) on this per-process
    # cache (LocMem): the row says so, and what this server's cache holds now: the 19 of the
    # same 20 keys that the real "inventory" run above wrote here (its item:3 failed).
    products = page.locator('tbody[data-warmer="products"]').inner_text()
    assert "The last run was in another process (web-1, pid 4242)" in products
    assert "Now in this server's cache: 19 of 20 keys cached" in products

    reports = page.locator('tbody[data-warmer="reports"]')
    assert "Never run" in reports.inner_text()
    reports.get_by_role("button", name="Warm reports now").click()
    page.wait_for_url(f"{base_url}{OVERVIEW}")
    message = page.locator(".messagelist .success")
    assert "Warming reports started in the background" in message.inner_text()

    # The run is recorded by a background thread: reload until it shows (bounded).
    deadline = time.monotonic() + 20
    while "Admin" not in reports.inner_text():
        assert time.monotonic() < deadline, "the admin run never showed in the overview"
        time.sleep(0.2)
        page.reload()
    cells = reports.locator("td").all_inner_texts()
    assert "OK" in cells[0]
    assert cells[2:4] == ["20", "0"]  # keys warmed, failed
    assert cells[4] == "100.0%"
    assert reports.locator("svg.cw-spark rect").count() == 1
    # Warmed in this process (the live server's thread): the probe finds every key.
    assert "Now in this server's cache: 20 of 20 keys cached" in cells[0]
    assert "another process" not in cells[0]

    # The docs' picture is refreshed only on request (CACHEWARMERS_SCREENSHOT=1), so that a test run
    # does not leave the tracked file changed; every run still takes and checks one.
    shot = SCREENSHOT if os.environ.get("CACHEWARMERS_SCREENSHOT") == "1" else tmp_path / "o.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    # Dark mode too (not kept in the docs): the page only uses the admin's colour variables.
    dark = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    dark.add_cookies(context.cookies())
    dark_page = dark.new_page()
    dark_page.goto(f"{base_url}{OVERVIEW}")
    dark_page.screenshot(path=str(tmp_path / "admin-overview-dark.png"), full_page=True)
    dark.close()
    context.close()
