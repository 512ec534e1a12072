"""Render processes (``page_processes.render_processes``, ``warm_cache --render-processes N``):
a page warmer's pages rendered in forked processes, with the outcome of each page exactly as an
in-process warm gives it.

Real forks, Django's real handler and cache middleware, Django's RedisCache on the suite's own
redis-server. Where a view ran is read from $CW_VIEW_LOG (every process appends its executions)
and from ``views.EXECUTIONS`` (this process's only).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client, override_settings

import django_cachewarmers
from django_cachewarmers import page_processes, pages, tracking
from django_cachewarmers.middleware import SCRIPT_NAMES_SEEN
from django_cachewarmers.models import WarmingRun
from django_cachewarmers.page_processes import RenderProcessesRefused, render_processes
from tests.middleware_stacks import PER_SITE
from tests.redis_server import RedisServer
from tests.testapp import views

PAGE = "django_cachewarmers.pages.render_page"
PLAIN = [f"http://testserver/shaped/plain-{i}/" for i in range(12)]

pytestmark = [
    pytest.mark.slow,  # real forked render processes
    pytest.mark.skipif(
        not page_processes.fork_available(), reason="render processes need os.fork()"
    ),
]


@pytest.fixture
def view_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$CW_VIEW_LOG: the views of every process (forked ones too) append their executions."""
    log = tmp_path / "views.log"
    log.touch()
    monkeypatch.setenv("CW_VIEW_LOG", str(log))
    return log


@pytest.fixture
def redis_pages(redis_server: RedisServer) -> Iterator[None]:
    """The page cache ("default") in the suite's own redis-server, under the per-site cache."""
    default = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{redis_server.url}/3",
    }
    with override_settings(CACHES={**settings.CACHES, "default": default}, MIDDLEWARE=PER_SITE):
        caches["default"].clear()
        tracking.reset()
        SCRIPT_NAMES_SEEN.clear()
        views.EXECUTIONS.clear()
        yield
        caches["default"].clear()
    tracking.reset()


def hit(path: str) -> bool:
    """Whether an anonymous GET of ``path`` here is served without running its view."""
    before = sum(views.EXECUTIONS.values())
    response = Client().get(path)
    assert response.status_code < 500, response
    return sum(views.EXECUTIONS.values()) == before


def executed(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").split()


@pytest.mark.django_db(transaction=True)
def test_pages_render_in_other_processes_with_each_outcome_as_in_process(
    redis_pages: None, view_log: Path
) -> None:
    refused = {
        "http://testserver/shaped/private/": "Cache-Control: private (private)",
        "http://testserver/shaped/created/": "answered 201 Created",
        "http://testserver/shaped/opt-out/": "request._cache_update_cache = False",
    }
    warmers = {"pages": {"keys": [*PLAIN, *refused], "loader": PAGE, "max_retries": 0}}
    with override_settings(CACHE_WARMERS=warmers):
        runs = WarmingRun.objects.count()
        with render_processes(2):
            children = multiprocessing.active_children()
            stats = django_cachewarmers.warm("pages")
        assert stats is not None
        # Rendered elsewhere: every view ran (a page refused twice: the probe that tells why),
        # none of them in this process.
        ran = Counter(executed(view_log))
        assert ran == {
            **{f"shaped:{url.split('/')[-2]}": 1 for url in PLAIN},
            **{f"shaped:{url.split('/')[-2]}": 2 for url in refused},
        }
        assert not views.EXECUTIONS
        assert len(children) == 2
        assert not any(child.is_alive() for child in children)
        # Each page's outcome, as an in-process warm gives it.
        assert (stats.keys_warmed, stats.keys_failed) == (len(PLAIN), len(refused)), stats.errors
        for url, reason in refused.items():
            assert any(url in error and reason in error for error in stats.errors), stats.errors
        assert WarmingRun.objects.count() == runs + 1  # the run is recorded once, here
        for url in PLAIN:
            assert hit(url.removeprefix("http://testserver")), url
            assert pages.page_is_cached(url) is True  # where it is cached was sent back


@pytest.mark.django_db(transaction=True)
def test_the_read_back_here_sees_a_page_lost_after_its_render_elsewhere(
    redis_pages: None, view_log: Path
) -> None:
    with render_processes(1):
        for url in PLAIN[:3]:
            pages.render_page(url)
    assert len(executed(view_log)) == 3
    assert not views.EXECUTIONS
    assert pages.check_stored(PLAIN[:3]) == dict.fromkeys(PLAIN[:3])
    lost = pages.served_record(PLAIN[1])
    assert lost is not None
    alias, key = lost[4][-1]  # the page entry the render process stored
    caches[alias].delete(key)
    answer = pages.check_stored(PLAIN[:3])
    assert answer[PLAIN[0]] is None
    assert answer[PLAIN[2]] is None
    assert "no longer holds the page entry" in str(answer[PLAIN[1]])


@pytest.mark.django_db(transaction=True)
def test_a_render_process_reads_the_database_through_its_own_connection(
    redis_pages: None, view_log: Path
) -> None:
    group = Group.objects.create(name="forked readers")
    connection.ensure_connection()
    with override_settings(ROOT_URLCONF="tests.urls"), render_processes(1):
        # This thread's connection was closed before the fork: none is shared with the child.
        assert connection.connection is None
        pages.render_page(f"http://testserver/groups/{group.pk}/")
    assert executed(view_log) == [f"group:{group.pk}"]
    response = Client().get(f"/groups/{group.pk}/")
    assert response.content == b"group forked readers"
    assert not views.EXECUTIONS  # a hit: the page the render process stored


@pytest.mark.django_db(transaction=True)
def test_a_render_process_that_dies_fails_its_page_and_the_rest_render_here(
    redis_pages: None, view_log: Path
) -> None:
    warmers = {"pages": {"keys": PLAIN, "loader": PAGE, "max_retries": 0, "max_workers": 1}}
    with override_settings(CACHE_WARMERS=warmers), render_processes(1):
        (child,) = multiprocessing.active_children()
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        stats = django_cachewarmers.warm("pages")
    assert stats is not None
    assert (stats.keys_warmed, stats.keys_failed) == (len(PLAIN) - 1, 1)
    assert "its render process exited before answering" in stats.errors[0]
    assert len(views.EXECUTIONS) == len(PLAIN) - 1  # rendered here instead
    for url in PLAIN[1:]:
        assert pages.page_is_cached(url) is True


@pytest.mark.django_db(transaction=True)
def test_a_per_process_page_cache_is_a_failure_not_a_warm(view_log: Path) -> None:
    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "forked"}
    with override_settings(CACHES={**settings.CACHES, "default": locmem}, MIDDLEWARE=PER_SITE):
        with render_processes(1), pytest.raises(pages.PageNotWarmed, match="its own memory"):
            pages.render_page(PLAIN[0])
        caches["default"].clear()


@pytest.mark.django_db
def test_refusals_and_zero_processes(redis_pages: None) -> None:
    with pytest.raises(ValueError, match="0 or more"), render_processes(-1):
        pass  # pragma: no cover - never entered
    # The test's transaction: this thread's connection cannot be closed before forking.
    assert transaction.get_connection().in_atomic_block
    with pytest.raises(RenderProcessesRefused, match="inside a transaction"), render_processes(2):
        pass  # pragma: no cover - never entered
    with render_processes(0):  # renders here
        pages.render_page(PLAIN[0])
    assert views.EXECUTIONS == {"shaped:plain-0": 1}


@pytest.mark.django_db(transaction=True)
def test_render_processes_do_not_nest(redis_pages: None) -> None:
    with render_processes(1):
        with pytest.raises(RenderProcessesRefused, match="already running"), render_processes(1):
            pass  # pragma: no cover - never entered
        pages.render_page(PLAIN[0])  # the outer block still renders
    assert multiprocessing.active_children() == []


@pytest.mark.django_db(transaction=True)
def test_warm_cache_render_processes(redis_pages: None, view_log: Path, capsys: Any) -> None:
    warmers = {"pages": {"keys": PLAIN, "loader": PAGE, "max_retries": 0}}
    with override_settings(CACHE_WARMERS=warmers):
        call_command("warm_cache", "pages", "--render-processes", "2", "--no-progress")
        assert f"pages: {len(PLAIN)} warmed, 0 failed" in capsys.readouterr().out
        assert len(executed(view_log)) == len(PLAIN)
        assert not views.EXECUTIONS
        assert WarmingRun.objects.filter(warmer="pages").count() == 1
        for url in PLAIN:
            assert hit(url.removeprefix("http://testserver")), url
        for flags, text in [
            (["--render-processes", "0"], "must be an integer >= 1"),
            (["--render-processes", "2", "--dry-run"], "cannot be combined with --dry-run"),
            (["--render-processes", "2", "--schedule"], "cannot be combined with --schedule"),
            (["--render-processes", "2", "--celery"], "cannot be combined with --celery"),
            (["--render-processes", "2", "--tasks"], "cannot be combined with --tasks"),
        ]:
            with pytest.raises(CommandError, match=text):
                call_command("warm_cache", *flags)


@pytest.mark.django_db(transaction=True)
def test_a_render_that_hangs_past_its_runs_deadline_does_not_hold_the_next_warmers_pages(
    redis_pages: None, view_log: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warmer ``a``'s page hangs in the only render process past ``a``'s deadline; after ``a``'s
    run, ``warm_cache`` stops that render process, so warmer ``b``'s pages render (here) instead
    of waiting for it."""
    monkeypatch.setenv("CW_HANGING_VIEW_S", "60")
    warmers = {
        "a": {
            "keys": ["http://testserver/shaped/hanging/"],
            "loader": PAGE,
            "max_retries": 0,
            "max_workers": 1,
            "warmup_timeout": 1,
        },
        "b": {"keys": PLAIN, "loader": PAGE, "max_retries": 0, "max_workers": 1},
    }
    with (
        override_settings(CACHE_WARMERS=warmers),
        pytest.raises(CommandError, match=r"keys failed in required warmer\(s\): a$"),
    ):
        call_command("warm_cache", "a", "b", "--render-processes", "1", "--no-progress")
    out = capsys.readouterr().out
    assert "a: 0 warmed, 1 failed" in out
    assert f"b: {len(PLAIN)} warmed, 0 failed" in out
    assert not multiprocessing.active_children()


def test_render_processes_exit_when_the_process_that_forked_them_is_killed(
    tmp_path: Path,
) -> None:
    """A supervisor that kills only the warm_cache process (SIGKILL): its render processes see
    their pipes end and exit, rather than live on re-parented."""
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "django.setup()\n"
        "import multiprocessing\n"
        "from django_cachewarmers.page_processes import render_processes\n"
        "with render_processes(2):\n"
        "    print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
        "    time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 30  # a bound to fail rather than hang
        while any(Path(f"/proc/{pid}").exists() for pid in children):
            assert time.monotonic() < deadline, "render processes outlived their parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
