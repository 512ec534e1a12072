"""Warming on Celery, with real processes: the suite's own redis-server (broker, result backend and
cache in databases of their own), real prefork worker processes, and `warm_cache --celery` runs.

The workers of most tests are shared by the module (one queue of its own); the test that kills a
worker has its own workers and queue.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_cachewarmers.beat import beat_schedule
from tests.processes import (
    PYTHON,
    ROOT,
    Project,
    celery_client,
    celery_worker_argv,
    children,
    wait_until,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

BROKER_DB, RESULT_DB, LOADS_DB = 5, 6, 7

BULK = {
    "keys": "tests.celery_loaders.bulk_keys",
    "loader": "tests.celery_loaders.load",
    "strategy": "lazy",
}
FLAKY = {
    "keys": "tests.celery_loaders.flaky_keys",
    "loader": "tests.celery_loaders.load_failing_sevens",
    "strategy": "lazy",
    "max_retries": 0,
}
SLOW = {
    "keys": "tests.celery_loaders.slow_keys",
    "loader": "tests.celery_loaders.slow_load",
    "strategy": "lazy",
    "max_workers": 2,
}
TICKER = {
    "keys": ["beat:1", "beat:2"],
    "loader": "tests.celery_loaders.load",
    "strategy": "scheduled",
    "refresh_interval": 120,
}
WARMERS = {"bulk": BULK, "flaky": FLAKY, "slow": SLOW, "ticker": TICKER}


class Cluster:
    """A project whose processes share a broker queue of their own, and its Celery workers."""

    def __init__(self, tmp_path: Path, redis_server: RedisServer) -> None:
        self.project = p = Project(tmp_path, redis_server, WARMERS)
        self.queue = f"cw-{uuid.uuid4().hex[:10]}"
        p.env.update(
            CW_BROKER_URL=f"{redis_server.url}/{BROKER_DB}",
            CW_RESULT_URL=f"{redis_server.url}/{RESULT_DB}",
            CW_LOADS_URL=f"{redis_server.url}/{LOADS_DB}",
            CW_CELERY_QUEUE=self.queue,
            CW_LOAD_DELAY="0.02",
            CELERY_APP="tests.celery_app",
        )
        import redis

        self.loads_db = redis.Redis.from_url(f"{redis_server.url}/{LOADS_DB}")
        migrated = p.manage("migrate", "--noinput", "--skip-checks")
        assert migrated.returncode == 0, migrated.stderr
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start_workers(self, *names: str) -> None:
        for name in names:
            self.workers[name] = self.project.start(
                *celery_worker_argv(name, self.queue, 2, "INFO"),
                log=f"{name}.log",
            )
        for name in names:
            wait_until(functools.partial(self.ready, name), 60, f"worker {name} to be ready")

    def ready(self, worker: str) -> bool:
        return " ready." in self.log(worker)

    def log(self, worker: str) -> str:
        return self.project.log(f"{worker}.log")

    def warm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.project.manage("warm_cache", "--celery", *args, timeout=timeout)

    def loads(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.loads_db.hgetall(f"{self.project.prefix}:loads")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def runs(self, warmer: str) -> list[dict[str, Any]]:
        return [r for r in self.project.runs() if r["warmer"] == warmer]

    def close(self) -> None:
        self.project.cleanup()
        self.loads_db.close()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Cluster]:
    """Two prefork workers (2 processes each) shared by the module's tests."""
    c = Cluster(tmp_path_factory.mktemp("celery"), redis_server)
    try:
        c.start_workers("w1", "w2")
        yield c
    finally:
        c.close()


def test_fan_out_of_10000_keys_over_two_workers_records_one_run(cluster: Cluster) -> None:
    done = cluster.warm("bulk", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["bulk"]
    assert (result["keys_warmed"], result["keys_failed"]) == (10_000, 0), result
    # Read back by this process after the last chunk: every key (10,000 is within the policy).
    assert (result["keys_verified"], result["keys_lost"]) == (10_000, 0), result
    runs = cluster.runs("bulk")
    assert [(r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in runs] == [
        ("celery", 10_000, 0)
    ]
    assert cluster.project.warmed(*(f"bulk:{i}" for i in range(10_000)))
    # Ten chunks of 1,000 keys (batch_size 100 x 10), shared by both workers.
    for worker in ("w1", "w2"):
        assert "django_cachewarmers.tasks.warm_chunk" in cluster.log(worker)
        assert "succeeded" in cluster.log(worker)


def test_a_chunk_whose_loader_fails_counts_its_failures_in_the_run(cluster: Cluster) -> None:
    done = cluster.warm("flaky", "--json", "--chunk-size", "50")
    assert done.returncode == 1, done.stderr
    assert "keys failed in required warmer(s): flaky" in done.stderr
    result = json.loads(done.stdout)["flaky"]
    assert (result["keys_warmed"], result["keys_failed"]) == (270, 30), result
    # The workers named their failed keys: only the 270 written keys are read back.
    assert (result["keys_verified"], result["keys_lost"]) == (270, 0), result
    assert "flaky:7: LookupError: flaky:7 is missing upstream" in result["errors"]
    runs = cluster.runs("flaky")
    assert [(r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in runs] == [
        ("celery", 270, 30)
    ]
    assert cluster.project.warmed("flaky:0", "flaky:299")
    assert cluster.project.cache.get("flaky:17") is None


def test_chunks_no_worker_takes_time_out_as_failed_keys(cluster: Cluster) -> None:
    p = cluster.project
    env = dict(p.env)
    p.env["CW_CELERY_QUEUE"] = f"nobody-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    try:
        done = cluster.warm("ticker", "--json", "--timeout", "1")
    finally:
        p.env = env
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)["ticker"]
    assert (result["keys_warmed"], result["keys_failed"]) == (0, 2)
    assert "beat:1: not warmed: chunk 0 did not return within 1s" in result["errors"][0]
    assert [(r["trigger"], r["keys_failed"]) for r in cluster.runs("ticker")] == [("celery", 2)]


def test_a_second_fan_out_of_a_warmer_in_flight_fails_and_sends_nothing(cluster: Cluster) -> None:
    p = cluster.project
    first = p.start(
        PYTHON, "-m", "django", "warm_cache", "slow", "--celery", "--chunk-size", "100", log="a.log"
    )
    mark = "django_cachewarmers:slow:running"
    wait_until(lambda: p.cache.get(mark), 30, "the first run to hold the running mark")
    second = cluster.warm("slow")  # refused only while the first one holds the mark
    assert second.returncode == 1
    assert "cache warmer 'slow' is already being warmed" in second.stderr
    assert "nothing was sent" in second.stderr
    assert first.wait(60) == 0, p.log("a.log")
    runs = cluster.runs("slow")
    assert [(r["trigger"], r["keys_warmed"]) for r in runs] == [("celery", 1600)]
    assert max(cluster.loads().values()) == 1  # the second run warmed nothing
    assert p.cache.get(mark) is None  # released: the next run may go


def test_beat_task_warms_once_per_interval_however_many_ticks(cluster: Cluster) -> None:
    p = cluster.project
    client = celery_client(p, "beat-test")
    try:
        sent = [
            client.send_task(
                "django_cachewarmers.tasks.warm_warmer", args=["ticker"], queue=cluster.queue
            )
            for _ in range(2)
        ]
        results = [r.get(timeout=30) for r in sent]
        for r in sent:
            r.forget()
    finally:
        client.close()
    ran = [r for r in results if r is not None]
    assert len(ran) == 1, results  # the other tick found the interval's slot taken
    assert ran[0]["keys_warmed"] == 2
    runs = [r for r in cluster.runs("ticker") if r["keys_warmed"] == 2]
    assert [(r["trigger"], r["keys_warmed"]) for r in runs] == [("celery", 2)]
    assert p.warmed("beat:1", "beat:2")


@pytest.mark.parametrize("kill", ["worker", "pool-process"])
def test_killed_worker_mid_chunk_its_chunks_are_redone_and_every_key_counted_once(
    tmp_path: Path, redis_server: RedisServer, kill: str
) -> None:
    """SIGKILL mid-chunk: the whole worker (its chunks come back after the broker's visibility
    timeout, taken by the other worker) or one pool process (``reject_on_worker_lost``: the
    worker puts the chunk back at once)."""
    c = Cluster(tmp_path, redis_server)
    try:
        c.start_workers("victim", "survivor")
        run = c.project.start(
            PYTHON,
            "-m",
            "django",
            "warm_cache",
            "slow",
            "--celery",
            "--json",
            "--chunk-size",
            "100",
            "--timeout",
            "90",
            log="run.log",
        )
        # 16 chunks of 100 keys taking about 1 s each: each worker runs two at a time.
        wait_until(lambda: len(c.loads()) >= 100, 30, "chunks to be in flight on both workers")
        victim = c.workers["victim"].pid
        if kill == "worker":
            os.killpg(victim, signal.SIGKILL)  # the worker and its pool processes
        else:
            os.kill(children(victim)[0], signal.SIGKILL)
        started = time.monotonic()
        assert run.wait(90) == 0, c.project.log("run.log")
        output = c.project.log("run.log")
        result = json.loads(output[output.index('{"slow"') :].splitlines()[0])["slow"]
        assert (result["keys_warmed"], result["keys_failed"]) == (1600, 0), result
        runs = c.runs("slow")
        assert [(r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in runs] == [
            ("celery", 1600, 0)
        ]
        assert c.project.warmed(*(f"slow:{i}" for i in range(1600)))
        loads = c.loads()
        assert len(loads) == 1600
        # The killed chunks were cut off mid-way, delivered again and redone from the start.
        assert max(loads.values()) >= 2, "no chunk was in flight in the killed process"
        assert time.monotonic() - started < 60
        if kill == "pool-process":
            assert "WorkerLostError" in c.log("victim")
    finally:
        c.close()


def test_beat_schedule_lists_the_scheduled_and_adaptive_warmers() -> None:
    warmers = {
        "products": {"keys": "x.keys", "loader": "x.load", "strategy": "scheduled"},
        "hot": {
            "keys": "adaptive",
            "loader": "x.load",
            "strategy": "adaptive",
            "refresh_interval": 30,
        },
        "pages": {"keys": ["a"], "loader": "x.load"},  # eager: warmed at start only
        "manual": {"keys": ["a"], "loader": "x.load", "strategy": "lazy"},
        "broken": {
            "keys": ["a"],
            "loader": "x.load",
            "strategy": "scheduled",
            "refresh_interval": 0,
        },
        # Out of the range the system checks accept (E009): no entry that fails every tick.
        "too_often": {
            "keys": ["a"],
            "loader": "x.load",
            "strategy": "scheduled",
            "refresh_interval": 0.0001,
        },
        "two_years": {
            "keys": ["a"],
            "loader": "x.load",
            "strategy": "scheduled",
            "refresh_interval": 2 * 365 * 24 * 3600,
        },
    }
    assert beat_schedule(warmers) == {
        "cachewarmers-products": {
            "task": "django_cachewarmers.tasks.warm_warmer",
            "schedule": 300.0,
            "args": ["products"],
        },
        "cachewarmers-hot": {
            "task": "django_cachewarmers.tasks.warm_warmer",
            "schedule": 30.0,
            "args": ["hot"],
        },
    }
    only = beat_schedule(warmers, names=["hot"], prefix="warm-", options={"queue": "warming"})
    assert only == {
        "warm-hot": {
            "task": "django_cachewarmers.tasks.warm_warmer",
            "schedule": 30.0,
            "args": ["hot"],
            "options": {"queue": "warming"},
        }
    }
    with override_settings(CACHE_WARMERS={"products": warmers["products"]}):
        assert list(beat_schedule()) == ["cachewarmers-products"]
    assert beat_schedule({}) == {}


def test_without_celery_installed_celery_is_a_clear_error_and_nothing_else_imports_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text('import sys\nsys.modules["celery"] = None\n')
    p = Project(tmp_path, redis_server, {"ticker": TICKER})
    p.env["PYTHONPATH"] = f"{blocker}{os.pathsep}{ROOT}"
    p.env.pop("CELERY_APP", None)
    try:
        migrated = p.manage("migrate", "--noinput", "--skip-checks")
        assert migrated.returncode == 0, migrated.stderr
        refused = p.manage("warm_cache", "ticker", "--celery")
        assert refused.returncode == 1
        assert "install django-cachewarmers[celery]" in refused.stderr
        assert "Traceback" not in refused.stderr
        # Everything else works without Celery: importing it would fail in this process.
        local = p.manage("warm_cache", "ticker")
        assert local.returncode == 0, local.stderr
        assert p.warmed("beat:1", "beat:2")
        listed = p.manage("warm_cache", "--list")
        assert listed.returncode == 0, listed.stderr
        api = subprocess.run(
            [
                PYTHON,
                "-c",
                "import django; django.setup(); import django_cachewarmers as cw\n"
                "try:\n    cw.warm('ticker', via='celery')\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)\n",
            ],
            env=p.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "CeleryUnavailable Celery is not installed" in api.stdout, api.stderr
    finally:
        p.cleanup()


# -- in-process checks of the arguments (nothing is sent) -------------------------------------

LOCAL = {"keys": ["a", "b"], "loader": "tests.celery_loaders.load", "strategy": "lazy"}


@override_settings(CACHE_WARMERS={"local": LOCAL})
def test_celery_flags_need_celery_and_no_other_mode() -> None:
    with pytest.raises(CommandError, match="--chunk-size, --timeout: only with --celery"):
        call_command("warm_cache", "local", "--chunk-size", "5", "--timeout", "3")
    with pytest.raises(CommandError, match="--celery cannot be combined with --dry-run"):
        call_command("warm_cache", "local", "--celery", "--dry-run")
    with pytest.raises(CommandError, match="--chunk-size: must be an integer >= 1"):
        call_command("warm_cache", "local", "--celery", "--chunk-size", "0")


def test_keys_json_cannot_carry_are_refused_before_anything_is_sent() -> None:
    from celery import Celery

    from django_cachewarmers.distributed import UnsendableKeys, fan_out

    app = Celery("t", broker="memory://", backend="cache+memory://", set_as_current=False)
    warmers = {"tuples": {**LOCAL, "keys": [("product", 1), ("product", 2)]}}
    with (
        override_settings(CACHE_WARMERS=warmers),
        pytest.raises(UnsendableKeys, match=r"key \('product', 1\) \(tuple\) cannot be sent"),
    ):
        fan_out("tuples", app=app)
    with (
        override_settings(CACHE_WARMERS={"local": LOCAL}),
        pytest.raises(UnsendableKeys, match="cannot be sent"),
    ):
        fan_out("local", keys=[b"bytes"], app=app)


def _app_from_settings(name: str) -> Any:
    """A Celery app set up as Celery's Django guide shows, read from the current settings."""
    from celery import Celery

    app = Celery(name, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


@pytest.mark.django_db
@override_settings(
    CACHE_WARMERS={"local": {**LOCAL, "keys": [f"eager:{i}" for i in range(25)]}},
    # A project's test settings: tasks run in the caller, and no result backend is configured.
    CELERY_TASK_ALWAYS_EAGER=True,
    CELERY_BROKER_URL="memory://",
)
def test_eager_mode_fans_out_without_a_result_backend() -> None:
    from django.core.cache import caches

    from django_cachewarmers.models import WarmingRun

    app = _app_from_settings("eager")
    assert app.conf.result_backend is None
    caches["default"].clear()
    out = io.StringIO()
    call_command(
        "warm_cache", "local", "--celery", "--chunk-size", "10", celery_app=app, stdout=out
    )
    assert "local: 25 warmed, 0 failed" in out.getvalue()
    # Every key is in the cache a request reads, and one run (of three chunks) is recorded.
    assert caches["default"].get_many([f"eager:{i}" for i in range(25)]) == {
        f"eager:{i}": f"value of eager:{i}" for i in range(25)
    }
    run = WarmingRun.objects.get(warmer="local")
    assert (run.trigger, run.keys_warmed, run.keys_failed) == ("celery", 25, 0)


@override_settings(CACHE_WARMERS={"local": LOCAL}, CELERY_BROKER_URL="memory://")
def test_without_eager_mode_a_missing_result_backend_is_still_refused() -> None:
    app = _app_from_settings("not-eager")
    with pytest.raises(CommandError, match="no result backend, so the chunks' results cannot"):
        call_command("warm_cache", "local", "--celery", celery_app=app)
