"""Did warming pay off, under a real gunicorn with two workers sharing the suite's redis-server:
the page reads of a warmer's keys, counted in whichever worker served them, land summed in the
admin and in the Prometheus exposition (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Project, http_get, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

RENDER = "django_cachewarmers.pages.render_page"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def reads(project: Project, warmer: str) -> tuple[int, int]:
    row = project.query(
        "SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(misses), 0) "
        f"FROM django_cachewarmers_readcount WHERE warmer = '{warmer}'"
    )[0]
    return int(row[0]), int(row[1])


def admin_opener(port: int) -> urllib.request.OpenerDirector:
    """A browser-like client logged in to the admin through its real login form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"http://127.0.0.1:{port}/admin/login/"
    with opener.open(login, timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": "admin",
            "password": "pw",
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(login, data=data, headers={"Referer": login})
    with opener.open(request, timeout=10) as response:
        assert response.status == 200
    return opener


def test_reads_and_runs_are_counted_across_two_gunicorn_workers(
    projects: Callable[..., Project], tmp_path: Path
) -> None:
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    project = projects(
        {"shop": {"keys": [f"{site}/pages/a/", f"{site}/pages/b/"], "loader": RENDER}},
        CW_MIDDLEWARE="site-cache",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    made = project.manage("shell", "-c", _CREATE_ADMIN)
    assert made.returncode == 0, made.stderr
    server, port = project.start_gunicorn("gunicorn.log", workers=2, port=port)
    wait_until(lambda: [r for r in project.runs() if r["keys_warmed"] == 2], 60, "startup warm")

    # Both workers serve (gunicorn spreads connections): 11 hits of warmed pages, then after a
    # flush one miss (the view renders /pages/b/, the cache stores it) and 3 hits. /pages/c/ is
    # no warmer's: not counted.
    for _ in range(10):
        assert http_get(port, "/pages/a/") == (200, b"page a")
    assert http_get(port, "/pages/b/") == (200, b"page b")
    assert http_get(port, "/pages/c/") == (200, b"page c")
    _flush_pages(project)
    for _ in range(4):
        assert http_get(port, "/pages/b/") == (200, b"page b")

    wait_until(lambda: reads(project, "shop") == (14, 1), 30, "the reads in the database")

    # Prometheus: every worker's counts, summed by the multiprocess collector.
    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = http_get(port, "/cachewarmers/metrics")
        assert status == 200
        return samples(body.decode())

    def hits_scraped() -> bool:
        found = scraped()
        hit = found.get(
            ("django_cachewarmers_reads_total", (("result", "hit"), ("warmer", "shop")))
        )
        return hit == 14.0

    wait_until(hits_scraped, 30, "14 hits in the exposition")
    found = scraped()
    assert found[("django_cachewarmers_reads_total", (("result", "miss"), ("warmer", "shop")))] == 1
    assert found[("django_cachewarmers_keys_warmed_total", (("warmer", "shop"),))] == 2
    ok_run = (("outcome", "ok"), ("trigger", "startup"), ("warmer", "shop"))
    assert found[("django_cachewarmers_runs_total", ok_run)] == 1
    assert found[("django_cachewarmers_run_duration_seconds_count", (("warmer", "shop"),))] == 1
    stamp = found[("django_cachewarmers_last_success_timestamp_seconds", (("warmer", "shop"),))]
    assert stamp > 0
    assert len(list(multiproc.glob("*.db"))) >= 2, "each worker writes its own file"

    # The admin: the test's traffic, exactly.
    opener = admin_opener(port)
    with opener.open(f"http://127.0.0.1:{port}/admin/django_cachewarmers/warmer/") as response:
        page = response.read().decode()
    assert 'data-hits-hour="14" data-misses-hour="1" data-stale-hour="0"' in page
    assert "1 miss within a refresh interval after a warm" in page
    assert "In the last hour 93.3% of 15 reads counted for the warmers were hits" in page

    log = project.log("gunicorn.log")
    assert project.stop(server) == 0
    assert "Traceback" not in log


def _flush_pages(project: Project) -> None:
    """Drop the cached pages only (Django's page-cache keys), leaving the app's own keys."""
    import redis

    client = redis.Redis.from_url(project.redis_url)
    try:
        doomed = list(client.scan_iter(f"{project.prefix}:1:views.decorators.cache.*"))
        assert doomed, "no cached page found"
        client.delete(*doomed)
    finally:
        client.close()


_CREATE_ADMIN = (
    "from django.contrib.auth.models import User; "
    "User.objects.create_superuser('admin', 'admin@example.com', 'pw')"
)


def test_reads_are_saved_with_snapshots_and_persistence_off(
    projects: Callable[..., Project],
) -> None:
    """``CACHE_WARMERS_SNAPSHOT_INTERVAL = 0`` and ``CACHE_WARMERS_PERSIST_INTERVAL = 0`` turn off
    the hot set's sharing, not read counting: a process that reads through ``get()`` and exits
    saves its counts."""
    project = projects(
        {"items": {"keys": ["item:1"], "loader": "tests.testapp.warming.load_item"}},
        CW_SNAPSHOT_INTERVAL="0",
        CW_PERSIST_INTERVAL="0",
    )
    script = (
        "import django_cachewarmers as cw; "
        "[cw.get('items', 'item:1') for _ in range(5)]"  # one miss, then four hits
    )
    done = project.manage("shell", "-c", script)
    assert done.returncode == 0, done.stderr
    assert reads(project, "items") == (4, 1)
