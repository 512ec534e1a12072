"""The admin's "Cache warmers" overview and its "Warm now" buttons."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

import django_cachewarmers
from django_cachewarmers import dashboard, runner, tracking
from django_cachewarmers.models import Trigger, WarmingRun
from tests import runs
from tests.processes import wait_until

XSS = "<script>alert(1)</script>"

ITEMS = {"keys": "tests.testapp.warming.item_keys", "loader": "tests.testapp.warming.load_item"}

WARMERS: dict[str, dict[str, object]] = {
    "products": {**ITEMS, "strategy": "scheduled", "refresh_interval": 300},
    "categories": {**ITEMS, "strategy": "eager"},
    "reports": {**ITEMS, "strategy": "lazy"},
    "inventory": {
        "keys": "tests.testapp.warming.item_keys",
        "loader": "tests.testapp.warming.load_item_failing_3",
        "strategy": "eager",
        "max_retries": 0,
    },
    "hot": {
        "keys": {"adaptive": {"tracker": "admin-test", "threshold": 1}},
        "loader": "tests.testapp.warming.load_item",
        "strategy": "adaptive",
        "refresh_interval": 60,
    },
    "broken": {**ITEMS, "cache": "no-such-cache"},
}

OVERVIEW = "admin:django_cachewarmers_warmer_changelist"


def overview_url() -> str:
    return reverse(OVERVIEW)


def warm_url(name: str) -> str:
    return reverse("admin:django_cachewarmers_warmer_warm", args=[name])


def warm_all_url() -> str:
    return reverse("admin:django_cachewarmers_warmer_warm_all")


def make_run(warmer: str, minutes_ago: float = 0, **fields: Any) -> WarmingRun:
    return runs.make_run(warmer, timezone.now() - timedelta(minutes=minutes_ago), **fields)


def wait_for_run(warmer: str, trigger: str = "admin", timeout: float = 20.0) -> WarmingRun:
    """The run the background thread records, polled for at most ``timeout`` seconds."""
    run: WarmingRun = wait_until(
        WarmingRun.objects.filter(warmer=warmer, trigger=trigger).first,
        timeout,
        f"a {trigger} run of {warmer}",
    )
    return run


@pytest.fixture(autouse=True)
def warmers() -> Iterator[None]:
    with override_settings(CACHE_WARMERS=WARMERS):
        yield
        # No background warm may outlive its test (nor its settings).
        assert runner.wait_for_background_warms(timeout=30)
    tracking.get_tracker("admin-test").clear()


def staff_user(django_user_model: Any, *, warm: bool, view: bool = True) -> User:
    user: User = django_user_model.objects.create_user(
        "operator", password="a-long-password-1", is_staff=True
    )
    codenames = (["view_warmer"] if view else []) + (["warm_cache"] if warm else [])
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_cachewarmers", codename__in=codenames
        )
    )
    return user


@pytest.fixture
def operator_client(client: Client, django_user_model: Any) -> Client:
    """Staff with the overview's view permission and ``warm_cache``."""
    client.force_login(staff_user(django_user_model, warm=True))
    return client


@pytest.fixture
def viewer_client(client: Client, django_user_model: Any) -> Client:
    """Staff who may see the overview but not warm."""
    client.force_login(staff_user(django_user_model, warm=False))
    return client


def row_html(content: str, name: str) -> str:
    match = re.search(
        rf'<tbody class="cw-warmer[^"]*"[^>]*data-warmer="{name}">.*?</tbody>', content, re.S
    )
    assert match is not None, f"no row for {name}"
    return match.group(0)


# -- the overview ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_index_links_to_the_overview(admin_client: Client) -> None:
    content = admin_client.get(reverse("admin:index")).content.decode()
    assert overview_url() in content
    assert "Cache warmers" in content
    assert overview_url() == "/admin/django_cachewarmers/warmer/"
    app_page = admin_client.get(reverse("admin:app_list", args=["django_cachewarmers"]))
    assert overview_url() in app_page.content.decode()


@pytest.mark.django_db
def test_overview_shows_every_warmer(admin_client: Client) -> None:
    make_run("products", 5, keys_warmed=20, total_time_ms=1234.0, trigger=Trigger.COMMAND)
    make_run("products", 10, total_time_ms=200.0)
    response = admin_client.get(overview_url())
    assert response.status_code == 200
    assert response.templates[0].name == "django_cachewarmers/overview.html"
    content = response.content.decode()
    for name in WARMERS:
        assert f'data-warmer="{name}"' in content
    # Breadcrumbs back to the app's section, as on every admin page.
    assert f'href="{reverse("admin:app_list", args=["django_cachewarmers"])}"' in content

    products = row_html(content, "products")
    assert "scheduled" in products
    assert "cache default" in products
    assert "every 300 s" in products
    assert "1.23 s" in products  # the last run's duration
    assert "100.0%" in products
    assert "Management command" in products
    assert ">20<" in products
    assert "in " in products  # the next slot, "in N minutes"
    assert 'href="/admin/django_cachewarmers/warmingrun/?warmer__exact=products"' in products

    assert "at server start" in row_html(content, "categories")
    assert "on demand" in row_html(content, "reports")
    assert "Never run" in row_html(content, "reports")


@pytest.mark.django_db
def test_next_slot_time() -> None:
    now = datetime(2026, 1, 1, 12, 3, 20, tzinfo=dt_timezone.utc).timestamp()
    rows = {row.name: row for row in dashboard.overview(now=now)}
    assert rows["products"].next_run == datetime(2026, 1, 1, 12, 5, tzinfo=dt_timezone.utc)
    assert rows["hot"].next_run == datetime(2026, 1, 1, 12, 4, tzinfo=dt_timezone.utc)
    assert rows["categories"].next_run is None
    assert rows["reports"].next_run is None


@pytest.mark.django_db
def test_failing_warmer_is_marked_in_text(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # the test's transaction commits
        django_cachewarmers.warm("inventory", trigger="command")
    make_run("products", 1)
    content = admin_client.get(overview_url()).content.decode()
    inventory = row_html(content, "inventory")
    assert "cw-failing" in inventory
    assert "Failing" in inventory
    assert "item 3 is missing upstream" in inventory  # the first error, in words
    assert "95.0%" in inventory
    products = row_html(content, "products")
    assert "Failing" not in products
    assert "OK" in products
    assert "1 failing" in content  # the summary line


@pytest.mark.django_db
def test_invalid_warmer_shows_its_error(admin_client: Client) -> None:
    response = admin_client.get(overview_url())
    assert response.status_code == 200
    broken = row_html(response.content.decode(), "broken")
    assert "Invalid" in broken
    assert "no-such-cache" in broken
    assert "django_cachewarmers.E004" in broken
    assert "Warm now" not in broken


@pytest.mark.django_db
def test_unparseable_setting_does_not_crash(admin_client: Client) -> None:
    with override_settings(CACHE_WARMERS={"odd": "not a dict"}):
        response = admin_client.get(overview_url())
    assert response.status_code == 200
    assert "Invalid" in row_html(response.content.decode(), "odd")


@pytest.mark.django_db
def test_no_warmers(admin_client: Client) -> None:
    with override_settings(CACHE_WARMERS={}):
        content = admin_client.get(overview_url()).content.decode()
    assert "No cache warmers are configured" in content
    assert "Warm all" not in content


@pytest.mark.django_db
def test_history_sparkline(admin_client: Client) -> None:
    for i in range(25):
        failed = 2 if i == 3 else 0
        make_run(
            "products",
            30 - i,
            total_time_ms=100.0 + 10 * i,
            keys_failed=failed,
            keys_warmed=20 - failed,
            success_rate=(20 - failed) / 20,
        )
    content = admin_client.get(overview_url()).content.decode()
    products = row_html(content, "products")
    svg = re.search(r"<svg class=\"cw-spark\".*?</svg>", products, re.S)
    assert svg is not None
    chart = svg.group(0)
    assert 'role="img"' in chart
    assert chart.count("<rect") == dashboard.HISTORY_LENGTH  # the last 20 of 25 runs
    assert "cw-spark-failed" not in chart  # the failing run is older than the last 20
    label = re.search(r'aria-label="([^"]*)"', chart)
    assert label is not None
    assert label.group(1) == (
        "Last 20 runs; duration 150 ms to 340 ms (median 245 ms); "
        "success rate 100.0% to 100.0%; 0 failed."
    )
    assert f"<title>{label.group(1)}</title>" in chart
    assert "<polyline" in chart
    assert "<script" not in content.split("<main", 1)[1]  # no JavaScript in the page's content


def test_sparkline_geometry_ignores_the_locale() -> None:
    runs = [
        WarmingRun(
            warmer="w",
            trigger="admin",
            started_at=timezone.now(),
            finished_at=timezone.now(),
            keys_warmed=1,
            keys_failed=1,
            success_rate=0.5,
            total_time_ms=12.5,
        )
    ]
    from django.utils import translation

    with translation.override("de"):
        chart = dashboard.sparkline(runs)
    assert chart is not None
    assert chart.bars[0].failed
    assert chart.bars[0].x == "114.9"  # the newest run on the right, with a dot
    assert "," in chart.rate_points
    assert chart.rate_points.count(" ") == 1  # one rate: a flat line across its slot
    assert dashboard.sparkline([]) is None


@pytest.mark.django_db
def test_hot_keys_are_escaped(admin_client: Client) -> None:
    for _ in range(3):
        django_cachewarmers.track(XSS, tracker="admin-test")
    django_cachewarmers.track("product:42", tracker="admin-test")
    response = admin_client.get(overview_url())
    content = response.content.decode()
    assert XSS not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    hot = row_html(content, "hot")
    assert "\N{MULTIPLICATION SIGN}3" in hot
    assert "product:42" in hot
    assert hot.index("&lt;script&gt;") < hot.index("product:42")  # hottest first


@pytest.mark.django_db
def test_hot_keys_with_the_default_tracker_name(admin_client: Client) -> None:
    adaptive = {
        "keys": {"adaptive": {"tracker": "keys", "threshold": 1}},
        "loader": "tests.testapp.warming.load_item",
        "strategy": "adaptive",
    }
    with override_settings(CACHE_WARMERS={"pages": adaptive}):
        django_cachewarmers.track(XSS, tracker="keys")
        try:
            content = admin_client.get(overview_url()).content.decode()
        finally:
            tracking.get_tracker("keys").clear()
    assert XSS not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


@pytest.mark.django_db
def test_errors_and_names_are_escaped(admin_client: Client) -> None:
    make_run("inventory", 1, keys_failed=1, success_rate=0.95, errors=[f"{XSS}: boom"])
    content = admin_client.get(overview_url()).content.decode()
    assert XSS not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: boom" in content


@pytest.mark.django_db
def test_running_now(admin_client: Client) -> None:
    from django.core.cache import caches

    from django_cachewarmers.claims import Claims

    # Another process's claimed run: its running mark is in the warmer's (shared) cache.
    key = Claims(caches["default"], "products").key("running")
    caches["default"].set(key, "web-2:99:abcd", 60)
    try:
        content = admin_client.get(overview_url()).content.decode()
    finally:
        caches["default"].delete(key)
    # LocMemCache: the warmer's private cache object shares the default cache's store.
    assert "Running now" in row_html(content, "products")
    assert "Running now" not in row_html(content, "categories")


# -- permissions -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client: Client) -> None:
    response = client.get(overview_url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(warm_url("products"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert not WarmingRun.objects.exists()


@pytest.mark.django_db
def test_staff_without_view_permission_sees_nothing(client: Client, django_user_model: Any) -> None:
    client.force_login(staff_user(django_user_model, warm=True, view=False))
    assert client.get(overview_url()).status_code == 403
    assert client.post(warm_url("products")).status_code == 403
    assert client.post(warm_all_url()).status_code == 403
    assert overview_url() not in client.get(reverse("admin:index")).content.decode()
    assert not WarmingRun.objects.exists()


@pytest.mark.django_db
def test_view_permission_on_runs_is_enough_to_see(client: Client, django_user_model: Any) -> None:
    user = staff_user(django_user_model, warm=False, view=False)
    user.user_permissions.add(Permission.objects.get(codename="view_warmingrun"))
    client.force_login(user)
    assert client.get(overview_url()).status_code == 200
    assert overview_url() in client.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_viewer_sees_no_buttons_and_gets_403(viewer_client: Client) -> None:
    response = viewer_client.get(overview_url())
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-warmer="products"' in content
    assert "Warm now" not in content
    assert "Warm all" not in content
    assert "/warm/" not in content
    assert viewer_client.post(warm_url("products")).status_code == 403
    assert viewer_client.post(warm_all_url()).status_code == 403
    # No link to the runs without their view permission.
    assert "warmingrun" not in content
    assert not WarmingRun.objects.exists()


@pytest.mark.django_db
def test_operator_sees_buttons(operator_client: Client) -> None:
    content = operator_client.get(overview_url()).content.decode()
    assert f'action="{warm_url("products")}"' in row_html(content, "products")
    assert "Warm now" in row_html(content, "products")
    assert f'action="{warm_all_url()}"' in content
    assert "csrfmiddlewaretoken" in content


@pytest.mark.django_db
def test_overview_is_read_only(admin_client: Client) -> None:
    base = "/admin/django_cachewarmers/warmer/"
    for url in (base + "add/", base + "1/change/", base + "1/delete/", base + "1/history/"):
        assert admin_client.get(url).status_code == 404


# -- Warm now ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_warms_nothing(admin_client: Client) -> None:
    with mock.patch.object(runner, "run_warm") as run_warm:
        assert admin_client.get(warm_url("products")).status_code == 405
        assert admin_client.get(warm_all_url()).status_code == 405
    run_warm.assert_not_called()
    assert not WarmingRun.objects.exists()


@pytest.mark.django_db
def test_unknown_warmer_is_404(admin_client: Client) -> None:
    assert admin_client.post(warm_url("nope")).status_code == 404
    assert admin_client.post(warm_url(XSS)).status_code == 404


@pytest.mark.django_db
def test_invalid_warmer_is_not_started(admin_client: Client) -> None:
    response = admin_client.post(warm_url("broken"), follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    assert messages[0].startswith("broken cannot be warmed:")
    assert not runner.is_warming_in_background("broken")


@pytest.mark.django_db
def test_csrf_is_enforced(django_user_model: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, warm=True))
    with mock.patch.object(runner, "run_warm") as run_warm:
        assert client.post(warm_url("products")).status_code == 403
        assert client.post(warm_all_url()).status_code == 403
    run_warm.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_warm_now_with_csrf_token(django_user_model: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user(django_user_model, warm=True))
    page = client.get(overview_url()).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(warm_url("products"), {"csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 302
    assert response["Location"] == overview_url()
    run = wait_for_run("products")
    assert run.keys_warmed == 20


@pytest.mark.django_db(transaction=True)
def test_warm_now_runs_in_the_background(operator_client: Client) -> None:
    release = threading.Event()
    started = threading.Event()
    from tests.testapp import warming

    load_item = warming.load_item

    def slow_load(key: str) -> str:
        started.set()
        release.wait(10)
        return load_item(key)

    try:
        with mock.patch.object(warming, "load_item", slow_load):
            response = operator_client.post(warm_url("categories"), follow=True)
            # The request came back while the loader still waits: the warm is in the background.
            assert response.status_code == 200
            messages = [str(m) for m in response.context["messages"]]
            assert messages == [
                "Warming categories started in the background. Its run shows here when it is done."
            ]
            assert started.wait(10)
            assert not WarmingRun.objects.filter(warmer="categories").exists()
            assert "Running now" in row_html(response.content.decode(), "categories")
            # A second click while it runs starts nothing more.
            again = operator_client.post(warm_url("categories"), follow=True)
            assert [str(m) for m in again.context["messages"]] == [
                "categories is already being warmed."
            ]
            release.set()
            run = wait_for_run("categories")
    finally:
        release.set()
    assert run.trigger == "admin"
    assert run.keys_warmed == 20
    assert run.keys_failed == 0
    assert runner.wait_for_background_warms(timeout=10)
    assert WarmingRun.objects.filter(warmer="categories").count() == 1

    content = operator_client.get(overview_url()).content.decode()
    categories = row_html(content, "categories")
    assert "Admin" in categories
    assert "OK" in categories
    assert "<svg" in categories


@pytest.mark.django_db(transaction=True)
def test_warm_all(operator_client: Client) -> None:
    response = operator_client.post(warm_all_url(), follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    assert messages[0].startswith("Warming products, categories, reports, inventory, hot started")
    assert runner.wait_for_background_warms(timeout=30)
    warmed = set(WarmingRun.objects.filter(trigger="admin").values_list("warmer", flat=True))
    assert warmed == {"products", "categories", "reports", "inventory", "hot"}  # not "broken"


@pytest.mark.django_db(transaction=True)
def test_background_errors_are_logged(
    operator_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with mock.patch.object(runner, "run_warm", side_effect=RuntimeError("boom")):
        assert operator_client.post(warm_url("products")).status_code == 302
        assert runner.wait_for_background_warms(timeout=10)
    assert "cache warmer products: admin run failed" in caplog.text


# -- the warming runs' admin -------------------------------------------------------------------


@pytest.mark.django_db
def test_runs_changelist_filters_and_columns(admin_client: Client) -> None:
    make_run("products", 1, keys_warmed=19, keys_failed=1, success_rate=0.95, total_time_ms=1500)
    url = reverse("admin:django_cachewarmers_warmingrun_changelist")
    content = admin_client.get(url).content.decode()
    for shown in ("95.0%", "1.50 s", ">19<", ">1<"):
        assert shown in content
    year = f"?started_at__year={timezone.now().year}"
    for query in ("?warmer__exact=products", "?trigger__exact=schedule", year):
        response = admin_client.get(url + query)
        assert response.status_code == 200
        assert "1.50 s" in response.content.decode()
    assert "Add warming run" not in content
