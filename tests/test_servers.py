"""Real processes: runserver, gunicorn (2 workers, with and without --preload), management commands.

Each test runs its own server subprocesses against the suite's own redis-server (a key prefix of its
own) and a SQLite file of its own, and reads the results back from Redis and the database file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PYTHON, Project, started_at, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

ITEMS = {
    "keys": "tests.testapp.warming.item_keys",
    "loader": "tests.testapp.warming.load_item",
    "strategy": "eager",
}
TICKER = {
    "keys": ["tick:1", "tick:2"],
    "loader": "tests.testapp.warming.load_item",
    "strategy": "scheduled",
    "refresh_interval": 1,
}


def slot_of(run: dict[str, Any], interval: float = 1.0) -> int:
    return int(started_at(run).timestamp() // interval)


def test_migrate_and_check_start_no_thread_and_warm_nothing(
    projects: Callable[..., Project],
) -> None:
    p = projects({"items": ITEMS, "ticker": TICKER})  # migrate already ran in the fixture
    checked = p.manage("check")
    assert checked.returncode == 0, checked.stderr
    makemigrations = p.manage("makemigrations", "--check", "--dry-run")
    assert makemigrations.returncode == 0, makemigrations.stdout + makemigrations.stderr
    time.sleep(1.5)  # a startup thread (there must be none) would have warmed by now
    assert not p.warmed("item:0")
    assert p.runs() == []
    assert "cache warming started" not in checked.stderr


def test_runserver_warms_at_start_without_any_request(projects: Callable[..., Project]) -> None:
    p = projects({"items": ITEMS})
    port = free_port()
    server = p.start(PYTHON, "-m", "django", "runserver", f"127.0.0.1:{port}", log="runserver.log")
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "runserver to warm the cache")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"], r["keys_warmed"]) for r in runs] == [
        ("items", "startup", 20)
    ]
    assert runs[0]["pid"] != server.pid  # warmed by the autoreloader's child, not its parent
    assert p.log("runserver.log").count("cache warming started") == 1
    # Django's autoreloader exits 0 on SIGTERM (its handler calls sys.exit(0)).
    assert p.stop(server) == 0, p.log("runserver.log")


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_workers_warm_once_and_schedule_once_per_interval(
    projects: Callable[..., Project], preload: bool
) -> None:
    p = projects({"items": ITEMS, "ticker": TICKER})
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "gunicorn",
        "tests.wsgi:application",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
    ]
    if preload:
        argv.append("--preload")
    server = p.start(*argv, log="gunicorn.log")
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "gunicorn to warm the cache")

    def schedule_runs() -> list[dict[str, Any]]:
        return [r for r in p.runs() if r["trigger"] == "schedule"]

    wait_until(lambda: len(schedule_runs()) >= 4, 60, "four scheduled runs")
    log = p.log("gunicorn.log")
    runs = p.runs()
    assert p.stop(server) == 0
    # Both workers started warming (each its own threads, after the fork) ...
    worker_pids = {int(pid) for pid in _started_pids(log)}
    assert len(worker_pids) == 2, log
    assert server.pid not in worker_pids  # never the master
    # ... but the shared cache was warmed once at startup, and once per interval after that.
    startup = [(r["warmer"], r["trigger"]) for r in runs if r["trigger"] == "startup"]
    assert sorted(startup) == [("items", "startup"), ("ticker", "startup")], runs
    scheduled = [r for r in runs if r["trigger"] == "schedule"]
    assert all(r["warmer"] == "ticker" for r in scheduled)
    slots = [slot_of(r) for r in scheduled]
    assert len(slots) == len(set(slots)), f"two runs in one interval: {scheduled}"
    assert {r["pid"] for r in runs} <= worker_pids
    assert "Traceback" not in log


def _started_pids(log: str) -> list[str]:
    return [
        line.rsplit(" ", 1)[1]
        for line in log.splitlines()
        if "cache warming started in process" in line
    ]


def test_uvicorn_warms_at_start_and_names_an_invalid_warmer_without_a_traceback(
    projects: Callable[..., Project],
) -> None:
    bad = {**ITEMS, "loader": "tests.testapp.warming.no_such_loader"}
    p = projects({"items": ITEMS, "bad": bad})
    port = free_port()
    server = p.start(
        PYTHON, "-m", "uvicorn", "tests.asgi:application", "--port", str(port), log="uvicorn.log"
    )
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "uvicorn to warm the cache")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"]) for r in runs] == [("items", "startup")]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so its exit status shows the signal.
    assert p.stop(server) in (0, -signal.SIGTERM)
    log = p.log("uvicorn.log")
    assert "Finished server process" in log
    assert "cache warmer 'bad' will not run:" in log
    assert "no_such_loader" in log
    assert "Traceback" not in log


def test_uwsgi_workers_warm_after_the_fork(projects: Callable[..., Project]) -> None:
    uwsgi = str(Path(PYTHON).with_name("uwsgi"))
    p = projects({"items": ITEMS, "ticker": TICKER})
    port = free_port()
    server = p.start(
        uwsgi, "--http-socket", f"127.0.0.1:{port}", "--module", "tests.wsgi:application",
        "--master", "--processes", "2", "--enable-threads", "--die-on-term", "--need-app",
        log="uwsgi.log",
    )  # fmt: skip
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "uWSGI to warm the cache")
    wait_until(lambda: len([r for r in p.runs() if r["trigger"] == "schedule"]) >= 2, 60, "runs")
    log = p.log("uwsgi.log")
    runs = p.runs()
    # SIGTERM to the master only: it stops its workers itself (a worker's own SIGTERM means
    # "reload" to uWSGI).
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(60) in (0, 30)  # uWSGI exits 30 after a --die-on-term shutdown
    worker_pids = {int(pid) for pid in _started_pids(log)}
    assert len(worker_pids) == 2, log  # each worker started its own threads after the fork
    assert server.pid not in worker_pids  # the master, which loaded the app, started none
    assert sorted(r["warmer"] for r in runs if r["trigger"] == "startup") == ["items", "ticker"]
    slots = [slot_of(r) for r in runs if r["trigger"] == "schedule"]
    assert len(slots) == len(set(slots))
    assert "Traceback" not in log


def test_daphne_warms_at_start(projects: Callable[..., Project]) -> None:
    p = projects({"items": ITEMS})
    port = free_port()
    daphne = str(Path(PYTHON).with_name("daphne"))
    server = p.start(
        daphne, "-b", "127.0.0.1", "-p", str(port), "tests.asgi:application", log="daphne.log"
    )
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "daphne to warm the cache")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"]) for r in runs] == [("items", "startup")]
    p.stop(server)
    assert "Traceback" not in p.log("daphne.log")


def test_warm_cache_schedule_stops_on_sigterm_with_exit_0(projects: Callable[..., Project]) -> None:
    p = projects({"items": ITEMS, "ticker": TICKER})
    process = p.start(PYTHON, "-m", "django", "warm_cache", "--schedule", log="schedule.log")
    wait_until(lambda: any(r["trigger"] == "schedule" for r in p.runs()), 60, "a scheduled run")
    assert p.warmed("item:0", "tick:1")
    assert p.stop(process, signal.SIGTERM) == 0
    log = p.log("schedule.log")
    assert "Scheduler stopped." in log
    assert "Traceback" not in log


def test_warm_cache_command_exit_status_in_a_real_process(projects: Callable[..., Project]) -> None:
    p = projects({"items": ITEMS, "broken": {**ITEMS, "keys": "tests.testapp.warming.broken_keys"}})
    ok = p.manage("warm_cache", "items", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["items"]["keys_warmed"] == 20
    failed = p.manage("warm_cache", "broken")
    assert failed.returncode == 1
    assert "key provider failed: RuntimeError: the catalogue service is down" in failed.stderr
    unknown = p.manage("warm_cache", "nope")
    assert unknown.returncode == 1
    assert "unknown cache warmer 'nope'" in unknown.stderr
