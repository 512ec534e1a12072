"""Filling a page cache from cold: ``render_page`` in process vs an HTTP crawler, side by side.

1,000 cacheable pages (``pages_server``) behind Django's per-site cache, in a real redis-server the
benchmark starts on a free port. Ours: ``warm()`` of a ``render_page`` warmer in this process
(``max_workers`` threads, the read-back included); and the same with its pages rendered in
``RENDER_PROCESSES`` forked render processes (``warm_cache --render-processes``; forking them and
stopping them timed too). The baseline: a plain crawler with the same
number of threads GETting the same URLs from gunicorn with 2 workers serving the same site and
cache. Each fill starts from a flushed cache and must leave every page cached (counted in Redis).

A third row is the ceiling of any warm that renders each page through the project's own handler
on this machine: Django's handler and the view alone (``CommonMiddleware`` only: no page cache,
nothing stored, nothing checked) in ``RENDER_PROCESSES`` forked processes, each rendering its
share of the URLs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

N_PAGES = 1_000
THREADS = 4
#: The render processes of the second row: one per core of the machine this was measured on (2).
RENDER_PROCESSES = 2


def _crawl(urls: list[str]) -> None:
    def fetch(url: str) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            assert response.status == 200

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(fetch, urls))


def _handler_only(urls: list[str]) -> int:
    """Each of ``urls`` through Django's handler in this (forked) process, with the
    ``MIDDLEWARE`` the parent set before forking; how many."""
    from django.core.handlers.wsgi import WSGIHandler

    from django_cachewarmers.pages import environ_for

    handler = WSGIHandler()
    for url in urls:
        body = handler(environ_for(url), lambda status, headers, exc_info=None: None)
        body.close()
    return len(urls)


def _ceiling(urls: list[str], repeat: int) -> float:
    """Seconds of the best of ``repeat`` passes of ``_handler_only`` over ``urls``, shared
    between ``RENDER_PROCESSES`` forked processes (started, and warmed up, before timing)."""
    import multiprocessing

    from django.test.utils import override_settings

    best = float("inf")
    shares = [urls[i::RENDER_PROCESSES] for i in range(RENDER_PROCESSES)]
    with (
        override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware"]),
        multiprocessing.get_context("fork").Pool(RENDER_PROCESSES) as pool,
    ):
        pool.map(_handler_only, [urls[:50]] * RENDER_PROCESSES, chunksize=1)
        for _ in range(repeat):
            start = time.perf_counter()
            done = pool.map(_handler_only, shares, chunksize=1)
            best = min(best, time.perf_counter() - start)
            assert sum(done) == len(urls)
    return best


def run(repeat: int = 3) -> list[dict[str, str]]:
    """Two rows (in process; in render processes) against the same crawler: pages per second of
    each fill, best of ``repeat`` each, interleaved."""
    import redis
    from django.test.utils import override_settings

    import django_cachewarmers
    from benchmarks.pages_server import MIDDLEWARE
    from django_cachewarmers.page_processes import render_processes
    from tests.processes import stop_group, wait_until
    from tests.redis_server import RedisServer, free_port

    server = RedisServer()
    server.start()
    gunicorn: subprocess.Popen[bytes] | None = None
    url = f"{server.url}/0"
    client = redis.Redis.from_url(url)
    try:
        port = free_port()
        env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_PAGES_SERVER="1")
        root = Path(__file__).resolve().parent.parent
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "benchmarks.pages_server:application",
             "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
            env=env, cwd=root, start_new_session=True,
        )  # fmt: skip
        urls = [f"http://127.0.0.1:{port}/p/{i}/" for i in range(N_PAGES)]

        def answers() -> bool:
            try:
                with urllib.request.urlopen(urls[0], timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(answers, 60, "gunicorn to answer")
        warmers = {
            "pages": {
                "keys": urls,
                "loader": "django_cachewarmers.pages.render_page",
                "max_workers": THREADS,
                "max_retries": 0,
                "warmup_timeout": 600,
            }
        }
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }

        def cached_pages() -> int:
            return sum(1 for _ in client.scan_iter(match="*cache_page*", count=1000))

        def ours() -> Any:
            stats = django_cachewarmers.warm("pages")
            assert stats is not None
            assert stats.keys_warmed == N_PAGES, stats
            return stats

        def ours_forked() -> Any:
            with render_processes(RENDER_PROCESSES):
                return ours()

        best = {"ours": float("inf"), "forked": float("inf"), "crawler": float("inf")}
        with override_settings(
            CACHES=caches,
            CACHE_WARMERS=warmers,
            MIDDLEWARE=MIDDLEWARE,
            ROOT_URLCONF="benchmarks.pages_server",
            ALLOWED_HOSTS=["127.0.0.1"],
            CACHE_MIDDLEWARE_SECONDS=3600,
        ):
            _crawl(urls[:50])  # both sides warmed up (imports, connections) before timing
            ours()
            ours_forked()
            fills = (("crawler", lambda: _crawl(urls)), ("ours", ours), ("forked", ours_forked))
            for _ in range(repeat):
                for name, fill in fills:
                    client.flushdb()
                    start = time.perf_counter()
                    fill()
                    best[name] = min(best[name], time.perf_counter() - start)
                    found = cached_pages()
                    assert found == N_PAGES, f"{name} left {found} of {N_PAGES} pages cached"
            best["ceiling"] = _ceiling(urls, repeat)
        crawler_rate = N_PAGES / best["crawler"]
        rows = []
        for name, how in (
            ("ours", "render_page in process"),
            ("forked", f"render_page in {RENDER_PROCESSES} render processes"),
        ):
            rate = N_PAGES / best[name]
            rows.append(
                {
                    "benchmark": f"pages: fill {N_PAGES:,} cacheable pages (per-site cache, "
                    f"Redis) from cold, {THREADS} threads: {how} vs an HTTP crawler through "
                    "gunicorn -w 2",
                    "ours": f"{rate:,.0f} pages/s",
                    "baseline": f"{crawler_rate:,.0f} pages/s",
                    "ratio": f"{rate / crawler_rate:.1f}x",
                }
            )
        ceiling = N_PAGES / best["ceiling"]
        rows.append(
            {
                "benchmark": f"pages: the ceiling of any warm rendering through Django's handler "
                f"here: the handler and the view alone (no page cache, nothing stored), "
                f"{RENDER_PROCESSES} processes, vs the same crawler",
                "ours": f"{ceiling:,.0f} pages/s",
                "baseline": f"{crawler_rate:,.0f} pages/s",
                "ratio": f"{ceiling / crawler_rate:.1f}x",
            }
        )
        return rows
    finally:
        if gunicorn is not None:
            stop_group(gunicorn)
        client.close()
        server.cleanup()
