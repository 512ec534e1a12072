"""Adaptive warming through real gunicorn workers sharing the suite's own redis-server.

The views append each execution to a log file, so the tests can tell a cache hit (the view did not
run) from a miss across processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Project, http_get, started_at, wait_until
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

HOT_PAGES = {
    "keys": {"adaptive": {"tracker": "pages", "threshold": 3}},
    "loader": "django_cachewarmers.pages.render_page",
    "strategy": "adaptive",
    "refresh_interval": 1,
}


class Site:
    """A gunicorn-served test project with the access-tracking middleware."""

    def __init__(self, project: Project, mode: str, persist_interval: float) -> None:
        self.project = project
        self.port = free_port()
        self.view_log = project.tmp_path / "views.log"
        self.view_log.touch()
        project.env.update(
            CW_MIDDLEWARE=mode,
            CW_VIEW_LOG=str(self.view_log),
            CW_SNAPSHOT_INTERVAL="0.5",
            CW_PERSIST_INTERVAL=str(persist_interval),
        )

    def start(self, log: str) -> Any:
        """gunicorn on the site's port (the same at every start: a page's cache key names it)."""
        server, _ = self.project.start_gunicorn(log, port=self.port)
        return server

    def executions(self) -> Counter[str]:
        return Counter(self.view_log.read_text().split())

    def adaptive_runs(self, after: datetime | None = None) -> list[dict[str, Any]]:
        return [
            run
            for run in self.project.runs()
            if run["warmer"] == "hot_pages"
            and run["keys_warmed"] >= 1
            and (after is None or started_at(run) > after)
        ]

    def hot_keys(self) -> dict[str, float]:
        return dict(
            self.project.query(
                "SELECT key, count FROM django_cachewarmers_hotkey WHERE tracker = 'pages'"
            )
        )


@pytest.fixture
def site(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[..., Site]]:
    made: list[Project] = []

    def make(mode: str = "tracking", persist_interval: float = 10) -> Site:
        project = Project(tmp_path, redis_server, {"hot_pages": HOT_PAGES})
        made.append(project)
        migrated = project.manage("migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stderr
        return Site(project, mode, persist_interval)

    yield make
    for project in made:
        project.cleanup()


@pytest.mark.parametrize(
    ("mode", "path", "view", "body"),
    [
        ("tracking", "/products/1/", "product:1", b"product 1"),
        ("site-cache", "/pages/home/", "page:home", b"page home"),
    ],
    ids=["cache_page", "per-site-cache"],
)
def test_hot_pages_are_warmed_again_after_the_cache_is_flushed(
    site: Callable[..., Site], mode: str, path: str, view: str, body: bytes
) -> None:
    s = site(mode)
    server = s.start("gunicorn.log")
    for _ in range(12):
        assert http_get(s.port, path) == (200, body)
    wait_until(s.adaptive_runs, 60, "an adaptive run that warmed the hot page")

    flushed_at = datetime.now(timezone.utc)
    s.project.cache.clear()  # our own redis-server: the cache, snapshots and claims all gone
    wait_until(lambda: s.adaptive_runs(after=flushed_at), 60, "an adaptive run after the flush")

    before = s.executions()[view]
    assert http_get(s.port, path) == (200, body)
    assert s.executions()[view] == before, "the view ran: the page was not served from the cache"
    log = s.project.log("gunicorn.log")
    assert s.project.stop(server) == 0
    assert "Traceback" not in log


def test_the_hot_set_survives_a_restart(site: Callable[..., Site]) -> None:
    s = site("tracking", persist_interval=3600)  # saved only by the clean shutdown
    server = s.start("first.log")
    for _ in range(8):
        assert http_get(s.port, "/products/5/") == (200, b"product 5")
    assert s.project.stop(server) == 0  # a plain SIGTERM, no server hooks configured
    url = f"http://127.0.0.1:{s.port}/products/5/"
    assert s.hot_keys().get(url, 0) >= 3, s.hot_keys()

    s.project.cache.clear()  # the deploy starts with an empty cache
    restarted_at = datetime.now(timezone.utc)
    server = s.start("second.log")
    wait_until(lambda: s.adaptive_runs(after=restarted_at), 60, "the startup warm of the hot set")
    before = s.executions()["product:5"]
    assert http_get(s.port, "/products/5/") == (200, b"product 5")
    assert s.executions()["product:5"] == before, "the hot page was not warm after the restart"
    assert s.project.stop(server) == 0
