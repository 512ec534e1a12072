"""Did warming pay off: read counts per warmer, Prometheus metrics, the exposition view, and the
admin's hit ratios, in one process against the real LocMem cache and the test database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.http import HttpResponse
from django.test import Client, override_settings
from prometheus_client import REGISTRY

import django_cachewarmers
from django_cachewarmers import metrics, reads
from django_cachewarmers.middleware import AccessTrackingMiddleware
from django_cachewarmers.models import ReadCount
from django_cachewarmers.publisher import sync_read_owners
from django_cachewarmers.registry import reset
from django_cachewarmers.runner import run_warm

pytestmark = pytest.mark.django_db

RENDER = "django_cachewarmers.pages.render_page"
SITE = "http://testserver"
PAGES = {
    "shop_pages": {"keys": [f"{SITE}/products/1/", f"{SITE}/products/2/"], "loader": RENDER},
    "other_pages": {"keys": [f"{SITE}/products/2/", f"{SITE}/products/3/"], "loader": RENDER},
    "data": {"keys": ["item:1", "item:2"], "loader": "tests.testapp.warming.load_item"},
}
TRACKED = [
    "django.middleware.cache.UpdateCacheMiddleware",
    "django_cachewarmers.middleware.AccessTrackingMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    caches["default"].clear()
    reads.forget()
    reset()
    yield
    reads.forget()
    reset()
    caches["default"].clear()


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def rows() -> dict[str, tuple[int, int, int]]:
    return {r.warmer: (r.hits, r.misses, r.stale) for r in ReadCount.objects.all()}


# --------------------------------------------------------------------------- counting and flushing


def test_reads_are_counted_per_warmer_and_minute_and_summed_by_the_database() -> None:
    minute = datetime(2026, 11, 30, 6, 0, 17, tzinfo=timezone.utc)
    for _ in range(3):
        reads.count("a", "hit")
    reads.count("a", "miss")
    reads.count("b", "stale")
    assert reads.flush(now=minute) == 5
    # A second process (or a later flush in the same minute) adds to the same row.
    reads.count("a", "hit")
    assert reads.flush(now=minute + timedelta(seconds=20)) == 1
    assert rows() == {"a": (4, 1, 0), "b": (0, 0, 1)}
    assert ReadCount.objects.get(warmer="a").minute == minute.replace(second=0)
    assert reads.flush(now=minute) == 0  # nothing new


def test_an_unknown_result_is_refused() -> None:
    with pytest.raises(ValueError, match="result: must be one of hit, miss, stale"):
        reads.count("a", "hot")


def test_summary_and_per_minute_windows() -> None:
    now = datetime(2026, 11, 30, 12, 30, tzinfo=timezone.utc)
    ReadCount.objects.create(warmer="a", minute=now - timedelta(minutes=5), hits=9, misses=1)
    ReadCount.objects.create(warmer="a", minute=now - timedelta(hours=3), hits=0, misses=10)
    ReadCount.objects.create(warmer="a", minute=now - timedelta(days=3), hits=100, misses=0)
    hour = reads.summary(["a", "b"], timedelta(hours=1), now)
    day = reads.summary(["a"], timedelta(days=1), now)
    assert (hour["a"].hits, hour["a"].misses, hour["a"].hit_ratio) == (9, 1, 0.9)
    assert hour["b"].hit_ratio is None
    assert hour["b"].reads == 0
    assert (day["a"].reads, day["a"].hit_ratio) == (20, 0.45)
    minutes = reads.per_minute("a", timedelta(hours=1), now)
    assert len(minutes) == 60
    assert minutes[-6].hits == 9
    assert sum(m.reads for m in minutes) == 10


def test_misses_after_a_successful_warm_are_those_within_its_refresh_interval() -> None:
    from django_cachewarmers.models import WarmingRun

    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    warmed_at = now - timedelta(minutes=30)
    WarmingRun.objects.create(
        warmer="a", trigger="schedule", started_at=warmed_at - timedelta(seconds=5),
        finished_at=warmed_at, keys_warmed=2, keys_failed=0, success_rate=1.0,
        total_time_ms=5000, hostname="h", pid=1,
    )  # fmt: skip
    ReadCount.objects.create(warmer="a", minute=warmed_at + timedelta(minutes=2), misses=3)
    ReadCount.objects.create(warmer="a", minute=warmed_at + timedelta(minutes=20), misses=5)
    ReadCount.objects.create(warmer="a", minute=warmed_at - timedelta(minutes=10), misses=7)
    assert reads.misses_after_warm("a", 300, timedelta(days=1), now) == 3
    assert reads.misses_after_warm("a", 3600, timedelta(days=1), now) == 8
    assert reads.misses_after_warm("b", 300, timedelta(days=1), now) == 0


def test_a_failed_write_keeps_the_reads_for_the_next_flush(
    django_assert_num_queries: Any,
) -> None:
    reads.count("a", "hit")
    ReadCount.objects.create(warmer="x", minute=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with (
        override_settings(DATABASE_ROUTERS=["tests.test_payoff.NoWrites"]),
        pytest.raises(RuntimeError, match="no writes"),
    ):
        reads.flush()
    reads.count("a", "hit")
    assert reads.flush() == 2
    assert rows()["a"] == (2, 0, 0)


class NoWrites:
    """A database router that refuses writes: a database that is down, as the flush sees it."""

    def db_for_write(self, model: Any, **hints: Any) -> str:
        raise RuntimeError("no writes")


# --------------------------------------------------------------------------- attribution


@override_settings(CACHE_WARMERS=PAGES, MIDDLEWARE=TRACKED, CACHE_MIDDLEWARE_SECONDS=300)
def test_page_reads_go_to_the_page_warmers_that_list_the_page(client: Client) -> None:
    run_warm("shop_pages")  # /products/1/ and /products/2/ are now cached
    client.get("/products/1/")  # a hit: cache_page answers
    client.get("/products/2/")  # a hit, for both warmers that list it
    caches["default"].clear()
    client.get("/products/3/")  # a miss: other_pages never ran, the view renders it
    client.get("/products/3/")  # now stored by cache_page: a hit
    client.get("/pages/x/")  # no warmer lists it: not counted
    client.get("/products/1/?utm=1")  # the query string is not part of the page: a miss
    reads.flush()
    assert rows() == {"shop_pages": (2, 1, 0), "other_pages": (2, 1, 0)}


@override_settings(CACHE_WARMERS=PAGES, MIDDLEWARE=TRACKED, CACHE_MIDDLEWARE_SECONDS=300)
def test_a_counted_page_request_starts_the_thread_that_saves_it(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first page read a process counts starts the background thread that writes the counts
    (as the first ``get()`` read does): with snapshots and persistence off, nothing else would."""
    started: list[str] = []
    monkeypatch.setattr(reads, "_on_first_read", [lambda: started.append("thread")])
    monkeypatch.setattr(reads, "_thread_armed", False)
    client.get("/products/1/")
    client.get("/products/1/")
    assert started == ["thread"]
    assert reads.drain() == {("shop_pages", "miss"): 1, ("shop_pages", "hit"): 1}


@override_settings(
    CACHE_WARMERS={"pages": {"keys": lambda: [f"{SITE}/products/7/"], "loader": RENDER}}
)
def test_a_run_shares_its_keys_so_other_processes_attribute_reads() -> None:
    run_warm("pages")
    shared = caches["default"].get("django_cachewarmers:runkeys:pages")
    assert shared["keys"] == [f"{SITE}/products/7/"]
    assert shared["pages"] is True
    reads.forget()  # another process: it knows nothing of the run
    reads.page_read("http://testserver/products/7/", hit=True)
    assert reads.drain() == {}
    sync_read_owners(force=True)
    reads.page_read("http://testserver/products/7/", hit=True)
    assert reads.drain() == {("pages", "hit"): 1}


@override_settings(CACHE_WARMERS=PAGES)
def test_track_with_hit_counts_a_data_read_for_the_warmer_listing_the_key() -> None:
    AccessTrackingMiddleware(HttpResponse)  # fixed lists are known from the start
    django_cachewarmers.track("item:1", hit=True)
    django_cachewarmers.track("item:2", hit=False)
    django_cachewarmers.track("unlisted", hit=False)
    django_cachewarmers.track("item:1")  # an access only
    assert reads.drain() == {("data", "hit"): 1, ("data", "miss"): 1}


# --------------------------------------------------------------------------- Prometheus


@override_settings(CACHE_WARMERS=PAGES)
def test_runs_and_reads_land_in_prometheus_default_registry() -> None:
    before = {
        "warmed": sample("django_cachewarmers_keys_warmed_total", warmer="data"),
        "runs": sample(
            "django_cachewarmers_runs_total", warmer="data", trigger="api", outcome="ok"
        ),
        "durations": sample("django_cachewarmers_run_duration_seconds_count", warmer="data"),
        "hits": sample("django_cachewarmers_reads_total", warmer="data", result="hit"),
    }
    stats = run_warm("data")
    assert stats is not None
    assert stats.ok
    reads.count("data", "hit")
    reads.count("data", "hit")
    reads.flush()
    assert sample("django_cachewarmers_keys_warmed_total", warmer="data") == before["warmed"] + 2
    assert (
        sample("django_cachewarmers_runs_total", warmer="data", trigger="api", outcome="ok")
        == before["runs"] + 1
    )
    assert (
        sample("django_cachewarmers_run_duration_seconds_count", warmer="data")
        == before["durations"] + 1
    )
    assert (
        sample("django_cachewarmers_reads_total", warmer="data", result="hit") == before["hits"] + 2
    )
    assert stats.finished_at is not None
    assert sample(
        "django_cachewarmers_last_success_timestamp_seconds", warmer="data"
    ) == pytest.approx(stats.finished_at.timestamp())


@override_settings(
    CACHE_WARMERS={
        "bad": {"keys": ["item:3"], "loader": "tests.testapp.warming.load_item_failing_3"}
    }
)
def test_a_failed_run_is_counted_as_failed() -> None:
    before = sample("django_cachewarmers_runs_total", warmer="bad", trigger="api", outcome="failed")
    stats = run_warm("bad")
    assert stats is not None
    assert not stats.ok
    assert (
        sample("django_cachewarmers_runs_total", warmer="bad", trigger="api", outcome="failed")
        == before + 1
    )
    assert sample("django_cachewarmers_keys_failed_total", warmer="bad") >= 1


# --------------------------------------------------------------------------- the exposition view


@override_settings(ROOT_URLCONF="tests.urls")
@pytest.mark.parametrize(
    ("settings_", "remote", "auth", "status"),
    [
        ({}, "127.0.0.1", "", 200),
        ({}, "::1", "", 200),
        ({}, "10.1.2.3", "", 403),
        ({"CACHE_WARMERS_METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}, "10.1.2.3", "", 200),
        ({"CACHE_WARMERS_METRICS_TOKEN": "s3cret"}, "127.0.0.1", "", 403),
        ({"CACHE_WARMERS_METRICS_TOKEN": "s3cret"}, "127.0.0.1", "Bearer wrong", 403),
        ({"CACHE_WARMERS_METRICS_TOKEN": "s3cret"}, "127.0.0.1", "Bearer s3cret", 200),
        ({"CACHE_WARMERS_METRICS_TOKEN": "s3cret"}, "127.0.0.1", "Bearer s3crét", 403),
        (
            {"CACHE_WARMERS_METRICS_TOKEN": "s3cret", "CACHE_WARMERS_METRICS_ALLOWED_IPS": []},
            "127.0.0.1",
            "Bearer s3cret",
            403,
        ),
    ],
)
def test_the_metrics_view_is_restricted(
    settings_: dict[str, Any], remote: str, auth: str, status: int
) -> None:
    headers = {"Authorization": auth} if auth else {}
    with override_settings(**settings_):
        response = Client().get("/cachewarmers/metrics", REMOTE_ADDR=remote, headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"].startswith("text/plain")
        body = response.content.decode()
        assert "# TYPE django_cachewarmers_reads_total counter" in body
        assert "# TYPE django_cachewarmers_run_duration_seconds histogram" in body
        assert "no-cache" in response["Cache-Control"]


# --------------------------------------------------------------------------- the admin


@override_settings(CACHE_WARMERS=PAGES)
def test_the_admin_shows_each_warmers_hit_ratio_and_a_summary_line(client: Client) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    ReadCount.objects.create(warmer="data", minute=now - timedelta(minutes=1), hits=3, misses=1)
    ReadCount.objects.create(warmer="data", minute=now - timedelta(hours=2), hits=0, misses=4)
    page = client.get("/admin/django_cachewarmers/warmer/").content.decode()
    assert 'data-hits-hour="3" data-misses-hour="1"' in page
    assert 'data-hits-day="3" data-misses-day="5"' in page
    assert "last hour 75.0% hits (4 reads)" in page
    assert "last day 37.5% hits (8 reads)" in page
    assert "In the last hour 75.0% of 4 reads counted for the warmers were hits" in page
    assert 'class="cw-spark cw-hit-chart"' in page


def test_without_prometheus_client_nothing_is_counted_or_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a project without the extra sees: find_spec() finds no prometheus_client.
    monkeypatch.setattr(metrics, "available", lambda: False)
    monkeypatch.setattr(metrics, "_metrics", None)
    assert metrics.connect() is False
    metrics.observe_reads({("a", "hit"): 1})  # no-op, no error
    with override_settings(ROOT_URLCONF="tests.urls"):
        response = Client().get("/cachewarmers/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 503
    assert b"django-cachewarmers[prometheus]" in response.content


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("setting", "value", "check_id", "text"),
    [
        ("CACHE_WARMERS_METRICS_TOKEN", "", "E045", "must be None or a bearer token"),
        ("CACHE_WARMERS_METRICS_TOKEN", "sécret", "E045", "must be None or a bearer token"),
        ("CACHE_WARMERS_METRICS_TOKEN", "two words", "E045", "must be None or a bearer token"),
        ("CACHE_WARMERS_METRICS_TOKEN", 1234, "E045", "got 1234"),
        ("CACHE_WARMERS_METRICS_ALLOWED_IPS", "127.0.0.1", "E046", "must be a list"),
        ("CACHE_WARMERS_METRICS_ALLOWED_IPS", ["10.0.0.0/33"], "E046", "'10.0.0.0/33' is not"),
        ("CACHE_WARMERS_METRICS_ALLOWED_IPS", ["localhost"], "E046", "'localhost' is not"),
    ],
)
def test_bad_metrics_settings_are_check_errors(
    setting: str, value: object, check_id: str, text: str
) -> None:
    from django_cachewarmers.checks import validate_app_settings

    with override_settings(**{setting: value}):
        messages = validate_app_settings()
    assert [m.id for m in messages] == [f"django_cachewarmers.{check_id}"]
    assert setting in messages[0].msg
    assert text in messages[0].msg
    assert messages[0].hint


def test_good_metrics_settings_pass_the_checks() -> None:
    from django_cachewarmers.checks import validate_app_settings

    with override_settings(
        CACHE_WARMERS_METRICS_TOKEN="t", CACHE_WARMERS_METRICS_ALLOWED_IPS=["10.0.0.0/8", "::1"]
    ):
        assert validate_app_settings() == []


@override_settings(CACHE_WARMERS=PAGES)
def test_reads_through_get_count_toward_the_warmers_hit_ratio() -> None:
    from django_cachewarmers import readstats
    from django_cachewarmers.publisher import hand_over_get_reads

    readstats.reset()
    hand_over_get_reads()  # what an earlier test counted is handed over, then forgotten
    reads.drain()
    assert django_cachewarmers.get("data", "item:5") == "value of item:5"  # a miss: loaded
    assert django_cachewarmers.get("data", "item:5") == "value of item:5"  # a hit
    assert django_cachewarmers.get("data", "item:5") == "value of item:5"  # a hit
    hand_over_get_reads()
    hand_over_get_reads()  # nothing new: nothing counted twice
    reads.flush()
    assert rows() == {"data": (2, 1, 0)}


def test_a_page_variants_reads_count_for_the_warmer_of_its_url() -> None:
    reads.remember_keys(
        "gz", [f'{SITE}/products/1/ {{"Accept-Encoding": "gzip, deflate, br, zstd"}}'], pages=True
    )
    reads.page_read(f"{SITE}/products/1/", hit=True)
    assert reads.drain() == {("gz", "hit"): 1}


# --------------------------------------------------------------------------- the background thread


@pytest.mark.django_db(transaction=True)  # the thread's own connection sees committed rows
@override_settings(
    CACHE_WARMERS=PAGES, CACHE_WARMERS_SNAPSHOT_INTERVAL=0.05, CACHE_WARMERS_PERSIST_INTERVAL=0
)
def test_the_background_thread_saves_reads_and_get_counts() -> None:
    """The publisher thread, as a server runs it: it hands get()'s counts over and saves every
    read counted on the request path into the minute's row."""
    import time

    from django_cachewarmers import readstats
    from django_cachewarmers.publisher import Publisher, hand_over_get_reads

    readstats.reset()
    hand_over_get_reads()  # forget what earlier tests counted
    reads.drain()
    reads.count("data", "hit")
    reads.count("data", "stale")
    assert django_cachewarmers.get("data", "item:6") == "value of item:6"  # a miss
    thread = Publisher()
    thread.start()
    try:
        deadline = time.monotonic() + 30  # a bound to fail rather than hang
        while rows().get("data") != (1, 1, 1):
            assert time.monotonic() < deadline, rows()
            time.sleep(0.05)
    finally:
        thread.stop()
        thread.join(10)
    assert not thread.running


@pytest.mark.django_db(transaction=True)
@override_settings(CACHE_WARMERS=PAGES, CACHE_WARMERS_PERSIST_INTERVAL=0)
def test_the_exit_saves_the_last_reads(caplog: pytest.LogCaptureFixture) -> None:
    from django_cachewarmers import publisher

    reads.drain()
    reads.count("data", "miss")
    publisher._persist_at_exit()
    assert rows() == {"data": (0, 1, 0)}
    reads.count("data", "miss")
    with override_settings(DATABASE_ROUTERS=["tests.test_payoff.NoWrites"]):
        publisher._persist_at_exit()  # the database refuses: one warning line, no traceback
    assert "could not save this process's last reads at exit: RuntimeError: no writes" in (
        caplog.text
    )
