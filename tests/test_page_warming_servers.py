"""Page warming as real visitors see it: gunicorn (2 workers) behind the per-site cache, with
GZipMiddleware and LocaleMiddleware, on the suite's own redis-server
(tests/page_server_settings.py).

Visitors are plain HTTP clients sending real browser header strings. The views log each execution
to a file shared by the processes, a warm's renders apart from real requests' (``:render``), so a
real request that ran the view is a miss.
"""

from __future__ import annotations

import gzip
import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.processes import Project, started_at, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

CHROME_ENCODING = "gzip, deflate, br, zstd"  # current Chrome's and Firefox's Accept-Encoding
CHROME_EN = {"Accept-Encoding": CHROME_ENCODING, "Accept-Language": "en-US,en;q=0.9"}
CHROME_FR = {"Accept-Encoding": CHROME_ENCODING, "Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"}
FIREFOX_FR = {"Accept-Encoding": CHROME_ENCODING, "Accept-Language": "fr,fr-FR;q=0.8,en;q=0.5"}
PAGE = "django_cachewarmers.pages.render_page"


class PageSite:
    """A gunicorn-served project of tests/page_server_settings.py on a port chosen up front."""

    def __init__(self, projects: Callable[..., Project], warmers: Callable[[int], dict[str, Any]]):
        self.port = free_port()
        self.project = projects(
            warmers(self.port), DJANGO_SETTINGS_MODULE="tests.page_server_settings"
        )
        tmp = self.project.tmp_path
        self.view_log = tmp / "views.log"
        self.view_log.touch()
        self.version_file = tmp / "version.txt"
        self.version_file.write_text("1")
        self.project.env.update(
            CW_VIEW_LOG=str(self.view_log),
            CW_PAGE_VERSION_FILE=str(self.version_file),
            CW_SNAPSHOT_INTERVAL="0.5",
        )
        self.server: Any = None

    def start(self) -> None:
        self.server, _ = self.project.start_gunicorn("gunicorn.log", port=self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        """A visitor's GET with exactly ``headers`` (http.client adds no Accept-Encoding of its
        own when one is given): status, decoded body, response headers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            found = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        if found.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return response.status, body.decode(), found

    def real_executions(self) -> Counter[str]:
        return Counter(n for n in self.view_log.read_text().split() if not n.endswith(":render"))

    def runs(self, warmer: str, after: datetime | None = None) -> list[dict[str, Any]]:
        return [
            run
            for run in self.project.runs()
            if run["warmer"] == warmer and (after is None or started_at(run) > after)
        ]

    def stop(self) -> str:
        log = self.project.log("gunicorn.log")
        assert self.project.stop(self.server) == 0, log
        assert "Traceback" not in log, log
        return log


def test_after_a_flush_and_a_warm_every_sitemap_url_is_a_hit_for_gzip_and_french_visitors(
    projects: Callable[..., Project],
) -> None:
    def warmers(port: int) -> dict[str, Any]:
        return {
            "sitemap": {
                "keys": {
                    "sitemap": {
                        "sitemaps": "tests.page_urls.sitemaps",
                        "domain": f"127.0.0.1:{port}",
                        "protocol": "http",
                    }
                },
                "loader": PAGE,
                "variants": [
                    {"Accept-Encoding": CHROME_ENCODING},
                    {"Accept-Encoding": CHROME_ENCODING, "Accept-Language": "fr"},
                ],
                "max_retries": 0,
            }
        }

    site = PageSite(projects, warmers)
    site.start()
    wait_until(lambda: site.runs("sitemap"), 60, "the startup warm")
    site.project.cache.clear()  # the suite's own redis-server: pages, headers, claims all gone
    warmed = site.project.manage("warm_cache", "sitemap", "--json")
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    assert '"keys_warmed": 12' in warmed.stdout, warmed.stdout  # 6 sitemap URLs x 2 variants
    paths = ["/v/top/", "/v/mid/", "/v/plain/", "/c/c1/", "/c/c2/", "/v/low/"]
    for path in paths:
        status, body, headers = site.get(path, CHROME_EN)
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert " Monday " in body
        for french in (CHROME_FR, FIREFOX_FR):
            status, body, _ = site.get(path, french)
            assert status == 200
            assert " lundi " in body, body[:40]
    assert site.real_executions() == Counter(), "a visitor's request ran the view: a miss"
    site.stop()


def test_learned_variants_are_warmed_again_after_a_flush(projects: Callable[..., Project]) -> None:
    def warmers(port: int) -> dict[str, Any]:
        return {
            "hot_pages": {
                "keys": {"adaptive": {"threshold": 3}},
                "loader": PAGE,
                "strategy": "adaptive",
                "refresh_interval": 1,
                "max_retries": 0,
            }
        }

    site = PageSite(projects, warmers)
    site.start()
    for _ in range(4):
        for browser in (CHROME_EN, CHROME_FR, FIREFOX_FR):
            assert site.get("/v/hot/", browser)[0] == 200
    # The hot page with its two learned variants (Chrome in English, in French: both French
    # browsers pick the same language entry); the plain page too (nobody asked for it, but it is
    # the page's own key).
    wait_until(
        lambda: any(r["keys_warmed"] >= 3 for r in site.runs("hot_pages")),
        60,
        "an adaptive run warming the learned variants",
    )
    flushed_at = datetime.now(timezone.utc)
    site.project.cache.clear()
    wait_until(
        lambda: any(r["keys_warmed"] >= 3 for r in site.runs("hot_pages", after=flushed_at)),
        60,
        "an adaptive run after the flush",
    )
    before = site.real_executions()
    for browser in (CHROME_EN, CHROME_FR, FIREFOX_FR):
        status, body, headers = site.get("/v/hot/", browser)
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert (" lundi " in body) is (browser is not CHROME_EN)
    assert site.real_executions() == before, "a learned variant was not warm after the flush"
    site.stop()


def test_a_changed_page_is_served_new_after_the_next_refresh_and_no_poll_misses(
    projects: Callable[..., Project],
) -> None:
    def warmers(port: int) -> dict[str, Any]:
        return {
            "news": {
                "keys": [f"http://127.0.0.1:{port}/v/news/"],
                "loader": PAGE,
                "strategy": "scheduled",
                "refresh_interval": 1,
                "variants": [{"Accept-Encoding": CHROME_ENCODING, "Accept-Language": "fr"}],
            }
        }

    site = PageSite(projects, warmers)
    site.start()
    wait_until(lambda: site.runs("news"), 60, "the startup warm")
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            status, body, _ = site.get("/v/news/", CHROME_FR)
            if status != 200:
                failures.append(f"{status} {body[:60]}")
            seen.append(body.split(" ")[1])
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(1.5)
        site.version_file.write_text("2")
        wait_until(lambda: seen and seen[-1] == "v2", 30, "the new content after a refresh")
        time.sleep(2.5)  # more refreshes, more polls
    finally:
        stop.set()
        poller.join(30)
    assert not failures, failures
    assert seen[0] == "v1"
    switch = seen.index("v2")
    assert set(seen[:switch]) == {"v1"}
    assert set(seen[switch:]) == {"v2"}, "an old render came back after the new one"
    assert site.real_executions() == Counter(), "a poll ran the view: it missed the page cache"
    assert len(site.runs("news")) >= 3
    site.stop()
