"""The warming history: WarmingRun, its queryset, record_run/last_runs and the read-only admin."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import RequestFactory, override_settings
from django.urls import reverse

from django_cachewarmers.admin import WarmingRunAdmin
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.history import last_runs, record_run
from django_cachewarmers.models import WarmingRun
from tests import runs

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
XSS = "<script>alert(1)</script>"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_run(warmer: str = "products", minutes: float = 0, **fields: Any) -> WarmingRun:
    return runs.make_run(warmer, at(minutes), **fields)


def history_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "django_cachewarmers" and r.levelno >= logging.WARNING
    ]


# -- record_run --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_record_run_stores_every_field() -> None:
    stats = WarmingStats(
        keys_warmed=7,
        keys_failed=2,
        total_time_ms=1234.5,
        finished_at=at(1),
        errors=["item:1: boom", "item:2: timed out"],
        errors_omitted=3,
        run_error=None,
    )
    run = record_run("products", "command", at(0), stats, finished_at=at(1))
    assert run is not None
    run = WarmingRun.objects.get(pk=run.pk)
    assert run.warmer == "products"
    assert run.trigger == "command"
    assert run.get_trigger_display() == "Management command"
    assert (run.started_at, run.finished_at) == (at(0), at(1))
    assert (run.keys_warmed, run.keys_failed) == (7, 2)
    assert run.success_rate == pytest.approx(7 / 9)
    assert run.total_time_ms == pytest.approx(1234.5)
    assert run.errors == ["item:1: boom", "item:2: timed out"]
    assert run.errors_omitted == 3
    assert run.run_error == ""
    assert run.hostname == socket.gethostname()[:255]
    assert run.pid == os.getpid()
    assert run.duration == timedelta(minutes=1)
    assert not run.ok
    assert str(run) == "products (command) 2025-01-01T12:00:00+00:00"


@pytest.mark.django_db
def test_record_run_defaults_finished_at_to_now_and_keeps_the_run_error() -> None:
    before = datetime.now(timezone.utc)
    stats = WarmingStats(run_error="ConnectionError: provider is down")
    run = record_run("products", "startup", at(0), stats)
    assert run is not None
    run.refresh_from_db()
    assert before <= run.finished_at <= datetime.now(timezone.utc)
    assert run.trigger == "startup"
    assert run.run_error == "ConnectionError: provider is down"
    assert (run.keys_warmed, run.keys_failed, run.success_rate) == (0, 0, 1.0)
    assert run.errors == []
    assert not run.ok
    assert run in WarmingRun.objects.failed()


@pytest.mark.django_db
def test_record_run_bounds_errors_and_stores_any_text() -> None:
    stats = WarmingStats(keys_failed=60, errors_omitted=5)
    stats.errors = [f"key\x00{i}: bad \udc80 byte" for i in range(60)]  # written past add_error
    run = record_run("products", "api", at(0), stats, finished_at=at(1))
    assert run is not None
    run.refresh_from_db()
    assert len(run.errors) == WarmingStats.MAX_ERRORS
    assert run.errors_omitted == 5 + 60 - WarmingStats.MAX_ERRORS
    assert run.errors[0] == "key\ufffd0: bad \\udc80 byte"


@pytest.mark.django_db(transaction=True)
def test_record_run_works_from_a_background_thread_without_a_request() -> None:
    results: list[WarmingRun | None] = []

    def work() -> None:
        try:
            results.append(record_run("products", "schedule", at(0), WarmingStats(keys_warmed=3)))
        finally:
            close_thread_connection()

    run_in_thread(work)
    assert len(results) == 1
    assert results[0] is not None
    assert WarmingRun.objects.get(pk=results[0].pk).keys_warmed == 3


# -- pruning -----------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(CACHE_WARMERS_HISTORY_LIMIT=3)
def test_record_run_keeps_only_the_newest_runs_of_that_warmer() -> None:
    others = [make_run("categories", minutes=-100 + i).pk for i in range(5)]
    for minute in range(6):
        record_run("products", "schedule", at(minute), WarmingStats(keys_warmed=minute))
    kept = WarmingRun.objects.for_warmer("products")
    assert [r.started_at for r in kept] == [at(5), at(4), at(3)]
    assert sorted(WarmingRun.objects.for_warmer("categories").values_list("pk", flat=True)) == (
        others
    )


@pytest.mark.django_db
def test_prune_breaks_ties_on_started_at_by_id_and_reports_the_count() -> None:
    runs = [make_run("products", minutes=0) for _ in range(4)] + [make_run("products", 1)]
    assert WarmingRun.objects.prune("products", 3) == 2
    remaining = set(WarmingRun.objects.values_list("pk", flat=True))
    assert remaining == {runs[4].pk, runs[3].pk, runs[2].pk}
    assert WarmingRun.objects.prune("products", 3) == 0
    assert WarmingRun.objects.prune("products", 10) == 0
    assert WarmingRun.objects.prune("nobody", 0) == 0
    assert WarmingRun.objects.prune("products", 0) == 3
    with pytest.raises(ValueError, match="keep"):
        WarmingRun.objects.prune("products", -1)


# -- queries -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_latest_per_warmer_in_one_query(django_assert_num_queries: Any) -> None:
    make_run("products", 0)
    newest_products = make_run("products", 10)
    make_run("products", 5)
    make_run("categories", 3, keys_failed=1)
    newest_categories = make_run("categories", 3)  # same start: the later row wins
    only_search = make_run("search", -50, run_error="boom")

    with django_assert_num_queries(1):
        latest = WarmingRun.objects.latest_per_warmer()
    assert latest == {
        "products": newest_products,
        "categories": newest_categories,
        "search": only_search,
    }
    assert WarmingRun.objects.failed().latest_per_warmer() == {
        "categories": WarmingRun.objects.get(warmer="categories", keys_failed=1),
        "search": only_search,
    }
    assert WarmingRun.objects.none().latest_per_warmer() == {}
    assert last_runs() == latest


@pytest.mark.django_db
def test_failed_and_for_warmer() -> None:
    fine = make_run("products", 0)
    some_keys = make_run("products", 1, keys_failed=2, success_rate=0.8)
    whole_run = make_run("categories", 2, run_error="provider raised")
    assert fine.ok
    assert not some_keys.ok
    assert not whole_run.ok
    assert set(WarmingRun.objects.failed()) == {some_keys, whole_run}
    assert list(WarmingRun.objects.for_warmer("products")) == [some_keys, fine]
    assert list(WarmingRun.objects.for_warmer("products").failed()) == [some_keys]


# -- the database failing ----------------------------------------------------------------------


@pytest.fixture
def history_table_missing() -> Iterator[None]:
    """Really move the history table away (as on an unmigrated database), then put it back."""
    table = WarmingRun._meta.db_table
    with connection.schema_editor() as editor:
        editor.alter_db_table(WarmingRun, table, f"{table}_away")
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.alter_db_table(WarmingRun, f"{table}_away", table)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("history_table_missing")
def test_record_run_without_its_table_logs_one_warning_and_returns_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="django_cachewarmers")
    assert record_run("products", "schedule", at(0), WarmingStats(keys_warmed=1)) is None

    [warning] = history_warnings(caplog)
    message = warning.getMessage()
    assert "products" in message
    assert "could not be recorded" in message
    assert "OperationalError" in message  # the why: SQLite says "no such table"
    assert "\n" not in message
    assert warning.exc_info is None
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)

    caplog.clear()
    assert last_runs() == {}
    [warning] = history_warnings(caplog)
    assert "last runs could not be read" in warning.getMessage()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("history_table_missing")
def test_a_failed_recording_leaves_the_callers_transaction_usable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with transaction.atomic():
        user = User.objects.create(username="inside")
        assert record_run("products", "admin", at(0), WarmingStats()) is None
        assert User.objects.filter(pk=user.pk).exists()
    assert User.objects.filter(username="inside").exists()
    assert len(history_warnings(caplog)) == 1


@pytest.mark.django_db
def test_record_run_with_an_unreachable_database_in_a_thread(
    caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    unreachable = str(tmp_path / "no-such-dir" / "db.sqlite3")
    results: list[WarmingRun | None] = []

    def work() -> None:
        # This thread's own connection points at a database that cannot be opened.
        conn = connections["default"]
        conn.settings_dict = {**conn.settings_dict, "NAME": unreachable}
        try:
            results.append(record_run("products", "schedule", at(0), WarmingStats()))
            results.append(record_run("products", "schedule", at(1), WarmingStats()))
        finally:
            conn.close()

    run_in_thread(work)
    assert results == [None, None]
    warnings = history_warnings(caplog)
    assert len(warnings) == 2
    assert all("could not be recorded" in w.getMessage() for w in warnings)
    assert "unable to open database file" in warnings[0].getMessage()
    assert not WarmingRun.objects.exists()


def run_in_thread(target: Any) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def close_thread_connection() -> None:
    """Really close this thread's connection (SQLite's close() keeps in-memory databases open)."""
    conn = connections["default"]
    if conn.connection is not None:
        BaseDatabaseWrapper.close(conn)


# -- admin -------------------------------------------------------------------------------------


def admin_url(name: str, *args: Any) -> str:
    return reverse(f"admin:django_cachewarmers_warmingrun_{name}", args=args)


@pytest.fixture
def staff_client(client: Any) -> Any:
    """A logged-in staff user (not a superuser) with the view and delete permissions."""
    user = User.objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_cachewarmers",
            codename__in=["view_warmingrun", "delete_warmingrun"],
        )
    )
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.django_db
def test_admin_changelist_lists_runs(admin_client: Any) -> None:
    make_run("products", 0, keys_warmed=9, keys_failed=1, success_rate=0.9, total_time_ms=850.0)
    make_run("categories", 1, total_time_ms=12_345.0)
    response = admin_client.get(admin_url("changelist"))
    assert response.status_code == 200
    content = response.content.decode()
    assert "products" in content
    assert "categories" in content
    assert "90.0%" in content
    assert "850 ms" in content
    assert "12.35 s" in content
    assert "icon-no.svg" in content
    assert "icon-yes.svg" in content
    for query in ("?warmer=products", "?trigger=schedule", "?q=prod", "?started_at__year=2025"):
        assert admin_client.get(admin_url("changelist") + query).status_code == 200


@pytest.mark.django_db
def test_admin_detail_is_read_only(admin_client: Any) -> None:
    run = make_run(
        "products",
        0,
        total_time_ms=2000.0,
        hostname="worker-7",
        pid=31337,
        run_error="provider raised",
    )
    response = admin_client.get(admin_url("change", run.pk))
    assert response.status_code == 200
    content = response.content.decode()
    for shown in ("products", "worker-7", "31337", "provider raised", "100.0%", "2.00 s"):
        assert shown in content
    assert 'name="_save"' not in content
    assert 'name="warmer"' not in content
    assert admin_client.post(admin_url("change", run.pk), {"warmer": "x"}).status_code == 403
    run.refresh_from_db()
    assert run.warmer == "products"


@pytest.mark.django_db
def test_admin_add_is_forbidden(admin_client: Any) -> None:
    assert admin_client.get(admin_url("add")).status_code == 403


@pytest.mark.django_db
def test_admin_escapes_errors(admin_client: Any) -> None:
    run = make_run("products", 0, keys_failed=2, errors=[f"{XSS}: boom", "b: <b>x</b>"])
    run.errors_omitted = 4
    run.save()
    content = admin_client.get(admin_url("change", run.pk)).content.decode()
    assert XSS not in content
    assert "<b>x</b>" not in content
    assert "<div>&lt;script&gt;alert(1)&lt;/script&gt;: boom</div>" in content
    assert "<div>b: &lt;b&gt;x&lt;/b&gt;</div>" in content
    assert "and 4 more errors" in content


@pytest.mark.django_db
def test_admin_detail_without_errors(admin_client: Any) -> None:
    run = make_run("products", 0)
    content = admin_client.get(admin_url("change", run.pk)).content.decode()
    assert ">None<" not in content


@pytest.mark.django_db
def test_only_superusers_may_delete(staff_client: Any, admin_user: User) -> None:
    run = make_run("products", 0)
    assert staff_client.get(admin_url("changelist")).status_code == 200
    assert staff_client.get(admin_url("change", run.pk)).status_code == 200
    assert staff_client.get(admin_url("delete", run.pk)).status_code == 403
    assert staff_client.post(admin_url("delete", run.pk), {"post": "yes"}).status_code == 403
    assert WarmingRun.objects.filter(pk=run.pk).exists()

    model_admin = WarmingRunAdmin(WarmingRun, admin_site())
    request = RequestFactory().get("/")
    request.user = staff_client.user
    assert model_admin.has_view_permission(request, run)
    assert not model_admin.has_delete_permission(request, run)
    assert not model_admin.has_change_permission(request, run)
    request.user = admin_user
    assert model_admin.has_delete_permission(request, run)
    assert not model_admin.has_add_permission(request)


@pytest.mark.django_db
def test_superuser_can_delete(admin_client: Any) -> None:
    run = make_run("products", 0)
    assert admin_client.get(admin_url("delete", run.pk)).status_code == 200
    assert admin_client.post(admin_url("delete", run.pk), {"post": "yes"}).status_code == 302
    assert not WarmingRun.objects.filter(pk=run.pk).exists()


@pytest.mark.django_db
def test_warm_cache_permission_exists() -> None:
    assert Permission.objects.filter(
        content_type__app_label="django_cachewarmers", codename="warm_cache"
    ).exists()
    user = User.objects.create_user("operator")
    user.user_permissions.add(Permission.objects.get(codename="warm_cache"))
    assert User.objects.get(pk=user.pk).has_perm("django_cachewarmers.warm_cache")


def admin_site() -> Any:
    from django.contrib import admin

    return admin.site
