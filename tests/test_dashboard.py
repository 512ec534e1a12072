"""The overview tells the truth about this process: what its cache holds now (issue 14, item 6).

Real admin views through Django's test client, real LocMem and file caches, real runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from django_cachewarmers import pages, registry
from django_cachewarmers import probe as probe_module
from django_cachewarmers.backends import max_entries
from django_cachewarmers.runner import run_warm
from tests import runs

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
OVERVIEW = "admin:django_cachewarmers_warmer_changelist"

KEY_CALLS: list[int] = []


def twenty_keys() -> list[str]:
    return [f"dash:{i}" for i in range(20)]


def counted_keys() -> list[str]:
    """Keys from a function (think: a query): the overview must not call it per page view."""
    KEY_CALLS.append(1)
    return [f"dash:{i}" for i in range(20)]


def load(key: str) -> str:
    return f"value of {key}"


STATIC = {"keys": [f"dash:{i}" for i in range(20)], "loader": "tests.test_dashboard.load"}


def caches_setting(**warmed: Any) -> dict[str, Any]:
    return {
        "default": {"BACKEND": LOCMEM, "LOCATION": "default"},
        "warmed": {"BACKEND": LOCMEM, "LOCATION": "dashboard-test", **warmed},
    }


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    caches["default"].clear()  # other tests' keys would be culled into the figures
    yield
    registry.reset()
    caches["default"].clear()
    probe_module._samples.clear()
    KEY_CALLS.clear()


def row_html(content: str, name: str) -> str:
    match = re.search(
        rf'<tbody class="cw-warmer[^"]*"[^>]*data-warmer="{name}">.*?</tbody>', content, re.S
    )
    assert match is not None, f"no row for {name}"
    return match.group(0)


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def overview(client: Client) -> str:
    response = client.get(reverse(OVERVIEW))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_presence_is_read_from_the_cache_now(admin_client: Client) -> None:
    with override_settings(CACHE_WARMERS={"w": STATIC}):
        assert run_warm("w").keys_warmed == 20  # type: ignore[union-attr]
        row = text(row_html(overview(admin_client), "w"))
        assert "Now in this server's cache: 20 of 20 keys cached" in row
        # Evicted behind the last run's back: the run still says 20 warmed, the probe says not.
        caches["default"].delete_many(["dash:0", "dash:7", "dash:19"])
        html = row_html(overview(admin_client), "w")
    assert "Now in this server's cache: 17 of 20 keys cached" in text(html)
    assert re.search(r'class="cw-presence cw-text-failing"[^>]*data-present="17"', html)
    assert ">20<" in html  # beside the last run's own figure


@pytest.mark.django_db
def test_probe_reads_a_bounded_sample(admin_client: Client) -> None:
    keys = [f"many:{i}" for i in range(1000)]
    with override_settings(CACHE_WARMERS={"w": {"keys": keys, "loader": load}}):
        caches["default"].set_many(dict.fromkeys(keys[:250], 1))
        presence = probe_module.probe("w", registry.get_warmer("w"))
        row = text(row_html(overview(admin_client), "w"))
    assert presence.checked == probe_module.PROBE_SAMPLE == 100
    assert presence.present == 25  # spread evenly over the keys, not the first 100
    assert presence.total == 1000
    assert "25 of 100 sampled keys cached" in row


@pytest.mark.django_db
def test_key_function_is_not_called_per_page_view(admin_client: Client) -> None:
    warmer = {"keys": "tests.test_dashboard.counted_keys", "loader": load}
    with override_settings(CACHE_WARMERS={"w": warmer}):
        run_warm("w")
        assert len(KEY_CALLS) == 1
        for _ in range(3):
            assert "20 of 20 keys cached" in text(row_html(overview(admin_client), "w"))
    # One call for the sample, then memoized for KEY_SAMPLE_TTL_S (not one per view).
    assert len(KEY_CALLS) == 2


@pytest.mark.django_db
def test_per_process_cache_filled_by_another_process(admin_client: Client) -> None:
    with override_settings(CACHE_WARMERS={"w": STATIC}):
        # As after `make run`: warm_cache (another process) recorded "OK, 20 warmed", while this
        # server's own LocMem holds nothing.
        runs.make_run("w", timezone.now(), hostname="web-1", pid=4242)
        row = text(row_html(overview(admin_client), "w"))
    assert "OK" in row
    assert "Now in this server's cache: 0 of 20 keys cached" in row
    assert (
        "The last run was in another process (web-1, pid 4242), but cache default is a "
        "per-process cache (LocMemCache): this server's own copy is not the one that run filled."
    ) in row


@pytest.mark.django_db
def test_per_process_cache_filled_here_has_no_warning(admin_client: Client) -> None:
    with override_settings(CACHE_WARMERS={"w": STATIC}):
        run_warm("w")
        html = row_html(overview(admin_client), "w")
    assert "another process" not in html
    assert "cw-warning" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("backend", [LOCMEM, FILE_BASED])
def test_more_keys_than_max_entries(admin_client: Client, backend: str, tmp_path: Path) -> None:
    location = str(tmp_path) if backend == FILE_BASED else "dashboard-test"
    setting = caches_setting(BACKEND=backend, LOCATION=location, OPTIONS={"MAX_ENTRIES": 10})
    with override_settings(CACHES=setting, CACHE_WARMERS={"w": {**STATIC, "cache": "warmed"}}):
        run_warm("w")
        row = text(row_html(overview(admin_client), "w"))
        caches.create_connection("warmed").clear()
    assert (
        "20 keys, more than cache warmed holds (its MAX_ENTRIES is 10): the cache culls "
        "entries, so some warmed keys are not there."
    ) in row
    present = int(re.search(r"Now in this server's cache: (\d+) of 20", row).group(1))  # type: ignore[union-attr]
    assert present < 20


@pytest.mark.django_db
def test_no_max_entries_warning_within_the_limit(admin_client: Client) -> None:
    setting = caches_setting(OPTIONS={"MAX_ENTRIES": 20})
    with override_settings(CACHES=setting, CACHE_WARMERS={"w": {**STATIC, "cache": "warmed"}}):
        run_warm("w")
        html = row_html(overview(admin_client), "w")
        caches.create_connection("warmed").clear()
    assert "MAX_ENTRIES" not in html


def test_max_entries_helper() -> None:
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.locmem import LocMemCache

    assert max_entries(LocMemCache("x", {})) == 300  # Django's default
    assert max_entries(LocMemCache("x", {"OPTIONS": {"MAX_ENTRIES": 7}})) == 7
    assert max_entries(DatabaseCache("t", {"OPTIONS": {"MAX_ENTRIES": 9}})) == 9
    assert max_entries(object()) is None


@pytest.mark.django_db
def test_warm_cache_warns_on_a_per_process_cache() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(CACHE_WARMERS={"w": STATIC}):
        call_command("warm_cache", "w", "--no-progress", stdout=out, stderr=err)
    assert "w: cache 'default' is a LocMemCache, local to each process" in err.getvalue()
    assert "The servers' own caches are not the one it filled" in err.getvalue()


@pytest.mark.django_db
def test_warm_cache_does_not_warn_on_a_shared_cache() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(CACHE_WARMERS={"w": {**STATIC, "cache": "db"}}):
        call_command("createcachetable", stdout=StringIO())
        call_command("warm_cache", "w", "--no-progress", stdout=out, stderr=err)
        caches["db"].clear()
    assert "local to each process" not in err.getvalue()
    assert "20 warmed" in out.getvalue()


PER_SITE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    *settings.MIDDLEWARE,
    "django.middleware.cache.FetchFromCacheMiddleware",
]


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["per-site", "cache_page"])
def test_page_warmer_presence_is_not_a_false_0_of_n(admin_client: Client, where: str) -> None:
    # The page cache stores pages under its own keys, not under the URLs: looking the URLs up
    # as cache keys finds none of them right after a warm that served them from the page cache.
    path = "/shaped/{}/" if where == "per-site" else "/cached/{}/"
    urls = [f"http://testserver{path.format(slug)}" for slug in ("a", "b")]
    warmer = {"keys": urls, "loader": "django_cachewarmers.pages.render_page"}
    middleware = PER_SITE if where == "per-site" else settings.MIDDLEWARE
    with override_settings(CACHE_WARMERS={"pages": warmer}, MIDDLEWARE=middleware):
        stats = run_warm("pages")
        assert stats is not None
        assert (stats.keys_warmed, stats.keys_failed) == (2, 0)
        assert pages.is_page_warmer(registry.get_warmer("pages"))
        row = text(row_html(overview(admin_client), "pages"))
    assert "0 of 2" not in row
    # Once pages.page_is_cached exists and answers, the probe reads the page cache itself;
    # until then it says it did not look.
    assert (
        "Now in this server's cache: 2 of 2 keys cached" in row
        or "Now in this server's cache: pages: not probed in this process" in row
    )


@pytest.mark.django_db
def test_a_keys_warmer_is_not_a_page_warmer() -> None:
    with override_settings(CACHE_WARMERS={"w": STATIC}):
        assert not pages.is_page_warmer(registry.get_warmer("w"))
