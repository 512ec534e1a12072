"""Fault injection against real processes: Redis stopping mid-warm, hung loaders, failing loaders,
the database going away, a worker killed while it holds the cluster lock, SIGTERM during a warm, and
a one-minute soak of a busy gunicorn.

Every test that stops Redis runs its own private redis-server (never the suite's shared one, never
the machine's), and every server writes its log to a file the test reads. docs/guarantees.md lists
what each test proves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from django_cachewarmers.runner import RUNNING_MARK_MARGIN_S
from tests.processes import (
    PYTHON,
    Project,
    children,
    http_get,
    rss_kb,
    started_at,
    thread_count,
    wait_until,
)
from tests.redis_server import RedisServer, close_redis

pytestmark = pytest.mark.slow

ITEMS = "tests.testapp.warming.item_keys"


# --------------------------------------------------------------------------- harness


def restart(server: RedisServer) -> None:
    """Start a stopped private redis-server again on the same port (empty: no persistence)."""
    assert server.process is None, "stop() it first"
    deadline = time.monotonic() + 15
    while True:
        try:
            server.start()  # binds the same port again (redis-server sets SO_REUSEADDR)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            server.stop()
            time.sleep(0.2)


@pytest.fixture
def project(projects: Callable[..., Project]) -> Callable[..., Project]:
    def make(server: RedisServer, warmers: dict[str, Any], **env: str) -> Project:
        return projects(warmers, server=server, CW_LOG_LEVELS="1", **env)

    return make


def assert_complete(rows: list[dict[str, Any]], n_keys: int) -> None:
    """Every recorded run is whole: finished, its counts adding up to its keys."""
    for row in rows:
        assert row["finished_at"] is not None, row
        assert datetime.fromisoformat(str(row["finished_at"])) >= datetime.fromisoformat(
            str(row["started_at"])
        ), row
        assert row["keys_warmed"] + row["keys_failed"] == n_keys, row
        assert row["success_rate"] == pytest.approx(row["keys_warmed"] / n_keys), row
        assert row["total_time_ms"] >= 0, row


def lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def running_mark(p: Project, warmer: str) -> str | None:
    value = p.cache.get(f"django_cachewarmers:{warmer}:running")
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- Redis stops


def test_redis_stopped_mid_warm_then_back(
    project: Callable[..., Project], own_redis: RedisServer
) -> None:
    n = 40
    warmer = {
        "keys": ITEMS,
        "loader": "tests.testapp.warming.load_item_slowly",
        "strategy": "scheduled",
        "refresh_interval": 2,
        "batch_size": 2,
        "max_workers": 1,
    }
    p = project(
        own_redis,
        {"slow": warmer},
        CW_N_KEYS=str(n),
        CW_LOAD_DELAY="0.1",  # 40 keys: a 4 s warm
        CW_MIDDLEWARE="tracking",  # so the hot-key publisher thread runs too
        CW_SNAPSHOT_INTERVAL="0.3",
    )
    server, port = p.start_gunicorn("gunicorn.log")
    # A tracked page: the publisher has work.
    assert http_get(port, "/pages/home/") == (200, b"page home")
    wait_until(lambda: p.warmed("item:0"), 30, "the startup warm to write its first batch")

    own_redis.stop()  # mid-warm: about 36 keys are still to come
    stopped_at = datetime.now(timezone.utc)
    # The warm stops at its next write: recorded (in SQLite) long before the 4 s it would take.
    row = wait_until(lambda: [r for r in p.run_rows() if r["keys_failed"]], 10, "the cut run")[0]
    assert row["trigger"] == "startup"
    # The keys written before the outage cannot be read back from a stopped Redis (the read-back
    # after the run's last write finds none), so none counts warmed: a real read would miss them.
    assert row["keys_warmed"] == 0
    assert row["keys_failed"] == n
    assert (datetime.fromisoformat(row["finished_at"]).replace(tzinfo=timezone.utc)
            - stopped_at).total_seconds() < 2  # fmt: skip
    assert "cache write failed" in row["errors"]

    # The site keeps answering (views that don't read the cache) while Redis is down, and the
    # schedule and the publisher keep trying across several of their intervals.
    outage_end = time.monotonic() + 4.5
    while time.monotonic() < outage_end:
        assert http_get(port, "/ping/") == (200, b"pong")
        assert http_get(port, "/pages/home/") == (200, b"page home")
        time.sleep(0.1)
    outage_log = p.log("gunicorn.log")

    restart(own_redis)
    back_at = datetime.now(timezone.utc)

    def runs_after_restart() -> list[dict[str, Any]]:
        return [r for r in p.run_rows() if started_at(r) > back_at]

    first = wait_until(runs_after_restart, 20, "a run after Redis is back")[0]
    assert (first["keys_warmed"], first["keys_failed"]) == (n, 0), first
    assert p.warmed(*(f"item:{i}" for i in range(n)))
    # The publisher thread survived the outage: snapshots are published again.
    wait_until(
        lambda: p.cache.get_many([f"django_cachewarmers:hot:pages:{i}" for i in range(64)]),
        10,
        "a hot-key snapshot after Redis is back",
    )
    assert http_get(port, "/ping/") == (200, b"pong")
    log = p.log("gunicorn.log")
    assert p.stop(server) == 0

    assert "Traceback" not in log
    # One clear line for the run Redis cut short, not one per key (exactly one line per run:
    # test_a_cache_outage_is_one_error_line_per_run).
    assert len(lines(outage_log, "stopping this run")) == 1, outage_log
    assert lines(outage_log, "stopping this run")[0].startswith("ERROR ")
    assert not lines(outage_log, "item:3")  # no per-key lines above DEBUG
    # Each background thread reports the outage in at most one line per attempt ...
    skipped = lines(outage_log, "schedule run skipped: its cache is unreachable")
    assert 1 <= len(skipped) <= 2 * 4, outage_log  # 2 workers, ~2 slots of 2 s in the outage
    # ... and the publisher, which retries every 0.3 s, once per outage per process, not per try.
    publisher = lines(outage_log, "hot keys:")
    assert 1 <= len(publisher) <= 2, outage_log
    assert all(line.startswith("WARNING ") for line in publisher), publisher
    assert lines(log, "hot keys: publishing again"), log


def test_a_cache_outage_is_one_error_line_per_run(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.cache.backends.redis import RedisCache

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.core.config import WarmingConfig

    cache = RedisCache(f"{own_redis.url}/0", {})

    def load(key: str) -> str:
        if key == "k:10":  # Redis goes away in the middle of the run, after a first write
            wait_until(lambda: cache.get("k:0"), 10, "the first batch to be written")
            own_redis.stop()
        return f"value of {key}"

    warmer = CacheWarmer(
        cache,
        StaticKeyProvider([f"k:{i}" for i in range(100)]),
        CallableValueLoader(load),
        WarmingConfig(batch_size=5, max_workers=1),
        name="outage",
    )
    caplog.set_level(logging.INFO, logger="django_cachewarmers")
    try:
        stats = warmer.warm()
    finally:
        close_redis(cache)
    # 5 to 10 keys were written before Redis went away; the read-back cannot find them in a
    # stopped Redis, so none counts warmed (a real read would miss them too).
    assert 5 <= stats.keys_verified <= 10
    assert stats.keys_lost == stats.keys_verified
    assert (stats.keys_warmed, stats.keys_failed) == (0, 100)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.exc_info for r in loud] == [None] * len(loud)  # no traceback
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert "cache write failed" in loud[0].getMessage()


# --------------------------------------------------------------------------- a hung loader


def test_runs_cut_short_by_a_hung_loader_leave_nothing_behind(release: threading.Event) -> None:
    import gc
    import tracemalloc

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.core.config import WarmingConfig

    def hang(key: str) -> str:
        release.wait()
        return key

    warmer = CacheWarmer(
        {},
        StaticKeyProvider([f"key:{i}" for i in range(5000)]),
        CallableValueLoader(hang),
        WarmingConfig(warmup_timeout_s=0.05, max_workers=2),
        name="hung",
    )
    warmer.failure_log_level = logging.DEBUG
    threads_before = threading.active_count()  # other tests' idle threads may still be alive
    tracemalloc.start()
    try:
        for _ in range(5):
            warmer.warm()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            assert warmer.warm().keys_failed == 5000
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert threading.active_count() <= threads_before + 2  # the 2 hung workers, nothing more
    # Each cut run's queued work (and the 5000 keys it holds) must not outlive the run.
    assert grown < 200_000, f"{grown} bytes kept by 40 runs"


def test_a_hung_loader_is_bounded_and_threads_stay_flat_over_20_intervals(
    project: Callable[..., Project], redis_server: RedisServer
) -> None:
    n = 6
    hung = {
        "keys": ITEMS,
        "loader": "tests.testapp.warming.load_item_hanging",
        "strategy": "scheduled",
        "refresh_interval": 0.5,
        "warmup_timeout": 0.3,
        "max_workers": 2,
    }
    p = project(redis_server, {"hung": hung}, CW_N_KEYS=str(n))
    process = p.start(PYTHON, "-m", "django", "warm_cache", "--schedule", log="schedule.log")
    wait_until(lambda: len(p.run_rows()) >= 2, 30, "the first runs")  # startup, then schedule
    samples = []
    for _ in range(40):  # 20 intervals of 0.5 s
        samples.append(thread_count(process.pid))
        time.sleep(0.25)
    rows = p.run_rows()
    assert p.stop(process) == 0
    log = p.log("schedule.log")

    # Each run ended at its 0.3 s deadline with every key failed ("timed out") ...
    assert len(rows) >= 20, rows
    assert_complete(rows, n)
    assert all(r["keys_failed"] == n for r in rows)
    assert all(r["total_time_ms"] < 1500 for r in rows), [r["total_time_ms"] for r in rows]
    assert "timed out after 0.3s" in rows[-1]["errors"]
    # ... and the hung loaders held no more than max_workers threads: the count stays flat.
    # (main + scheduler + 2 hung workers + a run thread now and then, whatever the run count.)
    assert max(samples) <= min(samples) + 2, samples
    assert max(samples[20:]) <= max(samples[:20]), samples
    assert max(samples) <= 8, samples
    assert "Scheduler stopped." in log
    assert "Traceback" not in log


# --------------------------------------------------------------------------- failing keys


def test_a_loader_failing_some_keys_keeps_their_good_cached_values(
    project: Callable[..., Project], redis_server: RedisServer
) -> None:
    items = {"keys": ITEMS, "loader": "tests.testapp.warming.load_item_failing_3"}
    p = project(redis_server, {"items": items}, CW_N_KEYS="8")
    p.cache.set("item:3", "the good value from before", None)
    p.cache.set("item:5", "stale value of item:5", None)
    result = p.manage("warm_cache", "items", "--json")
    assert result.returncode == 1, result.stderr  # a required warmer's key failed
    assert "Traceback" not in result.stderr
    assert p.cache.get("item:3") == "the good value from before"  # neither deleted nor replaced
    assert p.warmed(*(f"item:{i}" for i in range(8) if i != 3))  # the others are warmed
    (row,) = p.run_rows()
    assert (row["keys_warmed"], row["keys_failed"]) == (7, 1)
    assert "item:3: LookupError: item 3 is missing upstream" in row["errors"]


# --------------------------------------------------------------------------- database down


def test_database_unavailable_while_recording_then_back(
    project: Callable[..., Project], redis_server: RedisServer
) -> None:
    import sqlite3

    ticker = {"keys": ITEMS, "loader": "tests.testapp.warming.load_item", "strategy": "scheduled",
              "refresh_interval": 1}  # fmt: skip
    p = project(redis_server, {"ticker": ticker}, CW_N_KEYS="5")
    process = p.start(PYTHON, "-m", "django", "warm_cache", "--schedule", log="schedule.log")
    wait_until(lambda: len(p.run_rows()) >= 2, 30, "the first runs to be recorded")

    def alter(sql: str) -> None:
        with contextlib.closing(sqlite3.connect(p.db, timeout=30)) as conn:
            conn.execute(sql)
            conn.commit()

    alter("ALTER TABLE django_cachewarmers_warmingrun RENAME TO warmingrun_away")
    wait_until(
        lambda: len(lines(p.log("schedule.log"), "could not be recorded")) >= 2,
        30,
        "two runs that could not be recorded",
    )
    alter("ALTER TABLE warmingrun_away RENAME TO django_cachewarmers_warmingrun")
    back_at = datetime.now(timezone.utc)
    after = wait_until(
        lambda: [r for r in p.run_rows() if started_at(r) > back_at], 30, "a run recorded again"
    )
    assert p.stop(process) == 0
    log = p.log("schedule.log")

    assert (after[0]["keys_warmed"], after[0]["keys_failed"]) == (5, 0)
    assert_complete(p.run_rows(), 5)
    assert "Traceback" not in log
    lost = lines(log, "could not be recorded")
    # One warning line per run, which still carries the run's result.
    assert all(line.startswith("WARNING ") for line in lost), lost
    assert all("no such table: django_cachewarmers_warmingrun" in line for line in lost), lost
    assert all("5 warmed, 0 failed" in line for line in lost), lost


# --------------------------------------------------------------------------- SIGKILL


def test_a_worker_killed_holding_the_running_mark_is_taken_over_after_its_expiry(
    project: Callable[..., Project], redis_server: RedisServer, tmp_path: Path
) -> None:
    hang = tmp_path / "hang"
    hang.touch()
    slow = {
        "keys": ITEMS,
        "loader": "tests.testapp.warming.load_item_slowly",
        "strategy": "scheduled",
        "refresh_interval": 1,
        "warmup_timeout": 4,
    }
    p = project(
        redis_server,
        {"slow": slow},
        CW_N_KEYS="4",
        CW_HANG_FILE=str(hang),
        CW_RUNNING_MARK_MARGIN="2",  # the mark lasts warmup_timeout + 2 s (60 s in production)
    )
    server, _ = p.start_gunicorn("gunicorn.log")
    owner = wait_until(lambda: running_mark(p, "slow"), 30, "a worker to take the running mark")
    holder = int(owner.split(":")[1])
    assert holder in children(server.pid)
    client = redis.Redis.from_url(p.redis_url)
    try:
        ttl_ms = client.pttl(p.cache.make_key("django_cachewarmers:slow:running"))
    finally:
        client.close()
    expires_at = time.time() + ttl_ms / 1000
    assert 4000 < ttl_ms <= 6000  # warmup_timeout + margin, never "forever"

    os.kill(holder, signal.SIGKILL)  # dies holding the mark, mid-warm
    hang.unlink()  # from now on loading is instant: only the mark holds the others back
    taken_over = wait_until(
        lambda: [r for r in p.run_rows() if r["keys_warmed"] == 4], 30, "another process's run"
    )[0]
    log = p.log("gunicorn.log")
    assert p.stop(server) == 0

    assert taken_over["pid"] != holder
    # Nobody ran while the dead worker's mark lasted, and someone did within a slot or two of its
    # expiry.
    assert started_at(taken_over).timestamp() >= expires_at - 0.5, (taken_over, expires_at)
    assert started_at(taken_over).timestamp() <= expires_at + 3.5, (taken_over, expires_at)
    assert lines(log, "schedule run skipped: another process has it")
    assert not [r for r in p.run_rows() if r["pid"] == holder]  # the killed run left no row
    assert "Traceback" not in log


def test_the_mark_lasts_the_deadline_plus_the_margin() -> None:
    # The test above shortens the margin; production's must leave a hung-but-alive run its time.
    assert RUNNING_MARK_MARGIN_S == 60.0


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("how", ["gunicorn", "warm_cache --schedule"])
def test_sigterm_during_a_warm_exits_cleanly_and_records_whole_runs(
    project: Callable[..., Project], redis_server: RedisServer, tmp_path: Path, how: str
) -> None:
    hang = tmp_path / "hang"
    hang.touch()
    slow = {"keys": ITEMS, "loader": "tests.testapp.warming.load_item_slowly",
            "strategy": "scheduled", "refresh_interval": 1, "warmup_timeout": 30}  # fmt: skip
    fast = {"keys": ["f:1", "f:2"], "loader": "tests.testapp.warming.load_item"}
    p = project(redis_server, {"slow": slow, "fast": fast}, CW_N_KEYS="6", CW_HANG_FILE=str(hang))
    if how == "gunicorn":
        process, _ = p.start_gunicorn("server.log")
    else:
        process = p.start(PYTHON, "-m", "django", "warm_cache", "--schedule", log="server.log")
    wait_until(lambda: running_mark(p, "slow"), 30, "the slow warm to be in flight")
    wait_until(lambda: [r for r in p.run_rows() if r["warmer"] == "fast"], 30, "the fast warm")
    time.sleep(0.3)

    os.kill(process.pid, signal.SIGTERM)  # the master (gunicorn relays it to its workers)
    process.wait(30)
    log = p.log("server.log")
    assert process.returncode == 0, log
    assert "Traceback" not in log

    rows = p.run_rows()
    slow_rows = [r for r in rows if r["warmer"] == "slow"]
    assert_complete(slow_rows, 6)
    assert_complete([r for r in rows if r["warmer"] == "fast"], 2)
    # The run in flight was cut short by the shutdown and recorded as such.
    assert len(slow_rows) == 1, slow_rows
    assert slow_rows[0]["keys_failed"] == 6
    assert "not warmed: shutting down" in slow_rows[0]["errors"]
    assert running_mark(p, "slow") is None  # released on the way out


# --------------------------------------------------------------------------- soak


def test_soak_a_busy_gunicorn_for_60_seconds(
    project: Callable[..., Project], redis_server: RedisServer
) -> None:
    ticker = {"keys": ["tick:1", "tick:2", "tick:3"], "loader": "tests.testapp.warming.load_item",
              "strategy": "scheduled", "refresh_interval": 1}  # fmt: skip
    hot_pages = {"keys": {"adaptive": {"tracker": "pages", "threshold": 3}},
                 "loader": "django_cachewarmers.pages.render_page",
                 "strategy": "adaptive", "refresh_interval": 2}  # fmt: skip
    p = project(
        redis_server,
        {"ticker": ticker, "hot_pages": hot_pages},
        # The per-site cache: every hot page (products, /pages/home/, /ping/) has a page cache in
        # front of it, so render_page can warm it (a page without one is a failed key).
        CW_MIDDLEWARE="site-cache",
        CW_SNAPSHOT_INTERVAL="0.5",
        CW_PERSIST_INTERVAL="5",
        CW_TRACKER_MAX_KEYS="500",
    )
    server, port = p.start_gunicorn("gunicorn.log")
    workers = children(server.pid)
    assert len(workers) == 2
    paths = [f"/products/{i}/" for i in range(5)] + ["/pages/home/", "/ping/"]
    stop = threading.Event()
    served: list[int] = []
    failures: list[str] = []

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            # Steady hot pages, plus a stream of one-off URLs (a crawler) the tracker must bound.
            path = paths[i % len(paths)] if i % 4 else f"/pages/crawl-{i}/"
            if http_get(port, path)[0] != 200:
                failures.append(path)
            served.append(1)
            i += 1

    clients = [threading.Thread(target=traffic, daemon=True) for _ in range(2)]
    began = time.time()
    for client in clients:
        client.start()
    samples: list[tuple[float, dict[int, int], dict[int, int]]] = []
    try:
        while time.time() - began < 60:
            time.sleep(2)
            samples.append(
                (
                    time.time() - began,
                    {pid: rss_kb(pid) for pid in workers},
                    {pid: thread_count(pid) for pid in workers},
                )
            )
    finally:
        stop.set()
        for client in clients:
            client.join(15)
    assert children(server.pid) == workers  # no worker died or was replaced
    rows = p.run_rows()
    log = p.log("gunicorn.log")
    assert p.stop(server) == 0

    assert not failures, failures[:5]
    assert len(served) > 2000, len(served)
    # Memory and threads are flat once warmed up (the first 10 s): no growth with time or traffic.
    warm = [s for s in samples if s[0] >= 10]
    half = len(warm) // 2
    print("soak samples (s, rss KiB, threads):", samples)
    for pid in workers:
        rss = [s[1][pid] for s in warm]
        assert max(rss[half:]) - min(rss[:half]) < 8 * 1024, (pid, rss)
        # Threads come and go (a run's thread, pool workers idle for 5 s), within a fixed ceiling:
        # main, scheduler, publisher, 2 run threads and 2 pools of max_workers (4) threads.
        threads = [s[2][pid] for s in warm]
        assert max(threads) <= 1 + 1 + 1 + 2 + 2 * 4, (pid, threads)
        assert max(threads[half:]) <= max(threads[:half]) + 2, (pid, threads)
    # One scheduled run per 1 s interval across both workers: never two in a slot, few missed.
    scheduled = [r for r in rows if r["warmer"] == "ticker" and r["trigger"] == "schedule"]
    slots = [int(started_at(r).timestamp()) for r in scheduled]
    assert len(slots) == len(set(slots)), scheduled
    assert len(slots) >= 50, len(slots)
    assert_complete([r for r in rows if r["warmer"] == "ticker"], 3)
    assert all(r["keys_failed"] == 0 for r in rows if r["warmer"] == "ticker")
    adaptive = [r for r in rows if r["warmer"] == "hot_pages"]
    assert len(adaptive) >= 20, adaptive
    assert adaptive[-1]["keys_warmed"] >= 6, adaptive[-1]
    # Nothing went wrong, and nothing was logged as if it had.
    assert "Traceback" not in log
    assert not re.search(r"^(ERROR|WARNING|CRITICAL) ", log, re.MULTILINE), log[-3000:]
