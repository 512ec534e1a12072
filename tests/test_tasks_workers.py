"""Warming through Django's Tasks framework with real processes: django-tasks-db's DatabaseBackend
on the project's SQLite file (WAL mode, tests/tasks_settings.py), real ``db_worker`` processes,
the suite's own redis-server as the cache, real ``warm_cache --tasks`` runs and a real gunicorn.

Django >= 6.0 runs it on ``django.tasks``; Django 5.2 on the django-tasks backport.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PYTHON, Project, children, http_get, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

pytest.importorskip("django_tasks_db")

LOADS_DB = 8

BULK = {
    "keys": "tests.celery_loaders.bulk_keys",
    "loader": "tests.celery_loaders.load",
    "strategy": "lazy",
}
SLOW = {
    "keys": "tests.celery_loaders.slow_keys",
    "loader": "tests.celery_loaders.slow_load",
    "strategy": "lazy",
    "max_workers": 2,
}
PAGES = {
    "keys": "tests.task_loaders.page_keys",
    "loader": "tests.task_loaders.pid_load",
    "strategy": "eager",
    "via": "tasks",
    "batch_size": 10,
}
WARMERS = {"bulk": BULK, "slow": SLOW, "pages": PAGES}
TASKS_TABLE = "django_tasks_database_dbtaskresult"


class TaskCluster:
    """A project on tests.tasks_settings (its SQLite file is the task store) and its db_workers."""

    def __init__(self, tmp_path: Path, redis_server: RedisServer) -> None:
        import redis

        self.project = p = Project(tmp_path, redis_server, WARMERS)
        p.env.update(
            DJANGO_SETTINGS_MODULE="tests.tasks_settings",
            CW_LOADS_URL=f"{redis_server.url}/{LOADS_DB}",
            CW_LOAD_DELAY="0.02",
        )
        self.loads_db = redis.Redis.from_url(f"{redis_server.url}/{LOADS_DB}")
        migrated = p.manage("migrate", "--noinput", "--skip-checks")
        assert migrated.returncode == 0, migrated.stderr
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start_workers(self, *names: str) -> None:
        for name in names:
            self.workers[name] = self.project.start(
                PYTHON, "-m", "django", "db_worker", "--no-reload", "--interval", "0.1",
                "--no-startup-delay", "--worker-id", name, "-v", "2",
                log=f"{name}.log",
            )  # fmt: skip
        for name in names:
            wait_until(functools.partial(self.ready, name), 60, f"db_worker {name} to start")

    def ready(self, worker: str) -> bool:
        return "Starting worker" in self.project.log(f"{worker}.log")

    def warm(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.project.manage("warm_cache", "--tasks", *args, timeout=timeout)

    def loads(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.loads_db.hgetall(f"{self.project.prefix}:loads")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def pids(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.loads_db.hgetall(f"{self.project.prefix}:pids")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def tasks(self) -> list[tuple[str, list[str]]]:
        """(status, worker ids) of every task the backend stored."""
        rows = self.project.query(f"SELECT status, worker_ids FROM {TASKS_TABLE}")
        return [(status, json.loads(workers)) for status, workers in rows]

    def runs(self, warmer: str) -> list[dict[str, Any]]:
        return [r for r in self.project.runs() if r["warmer"] == warmer]

    def close(self) -> None:
        self.project.cleanup()
        self.loads_db.close()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[TaskCluster]:
    c = TaskCluster(tmp_path, redis_server)
    try:
        yield c
    finally:
        c.close()


def test_10000_keys_over_two_db_workers_every_key_written_once_one_run(
    cluster: TaskCluster,
) -> None:
    cluster.start_workers("w1", "w2")
    done = cluster.warm("bulk", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["bulk"]
    assert (result["keys_warmed"], result["keys_failed"]) == (10_000, 0), result
    # Read back by the command after the last chunk: every key (10,000 is within the policy).
    assert (result["keys_verified"], result["keys_lost"]) == (10_000, 0), result
    assert [(r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in cluster.runs("bulk")] == [
        ("tasks", 10_000, 0)
    ]
    assert cluster.project.warmed(*(f"bulk:{i}" for i in range(10_000)))
    loads = cluster.loads()
    assert len(loads) == 10_000
    assert set(loads.values()) == {1}  # every key loaded (and written) once
    # Ten chunks of 1,000 keys (batch_size 100 x 10), each run once, shared by both workers.
    tasks = cluster.tasks()
    assert len(tasks) == 10
    assert {status for status, _ in tasks} == {"SUCCESSFUL"}
    assert all(len(workers) == 1 for _, workers in tasks)
    assert {workers[0] for _, workers in tasks} == {"w1", "w2"}


def test_a_db_worker_killed_mid_chunk_leaves_its_chunk_running_and_its_keys_failed(
    cluster: TaskCluster,
) -> None:
    """What docs/tasks.md says of django-tasks-db: a task whose worker dies stays RUNNING, is
    neither retried nor marked failed; the fan-out counts its keys failed when its timeout ends,
    the other chunks are warmed by the surviving worker, and one run records both."""
    cluster.start_workers("victim", "survivor")
    run = cluster.project.start(
        PYTHON, "-m", "django", "warm_cache", "slow", "--tasks", "--json",
        "--chunk-size", "100", "--timeout", "30",
        log="run.log",
    )  # fmt: skip
    # 16 chunks of 100 keys taking about 1 s each; each worker runs one at a time.
    wait_until(lambda: len(cluster.loads()) >= 50, 60, "chunks to be in flight on both workers")
    wait_until(
        lambda: sum(status == "RUNNING" for status, _ in cluster.tasks()) == 2,
        30,
        "both workers to run a chunk",
    )
    os.killpg(cluster.workers["victim"].pid, signal.SIGKILL)
    assert run.wait(120) == 1, cluster.project.log("run.log")
    output = cluster.project.log("run.log")
    result = json.loads(output[output.index('{"slow"') :].splitlines()[0])["slow"]
    assert (result["keys_warmed"], result["keys_failed"]) == (1500, 100), result
    assert "was still running on worker victim after 30s" in result["errors"][0]
    assert [(r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in cluster.runs("slow")] == [
        ("tasks", 1500, 100)
    ]
    tasks = cluster.tasks()
    assert sorted(status for status, _ in tasks) == ["RUNNING"] + ["SUCCESSFUL"] * 15
    running = [workers for status, workers in tasks if status == "RUNNING"]
    assert running == [["victim"]]  # tried once, by the dead worker: not retried
    # The survivor never takes a RUNNING task: it stays so (until `warm_cache` runs it again).
    time.sleep(1.5)
    assert [w for s, w in cluster.tasks() if s == "RUNNING"] == [["victim"]]
    assert cluster.workers["survivor"].poll() is None
    loads = cluster.loads()
    assert 1500 <= len(loads) < 1600  # the killed chunk had loaded some of its keys, not all
    assert max(loads.values()) == 1  # nothing was run twice


def test_via_tasks_under_gunicorn_enqueues_instead_of_loading_in_the_web_process(
    cluster: TaskCluster,
) -> None:
    cluster.start_workers("w1", "w2")
    server, port = cluster.project.start_gunicorn("gunicorn.log", workers=2)
    try:
        web = set(children(server.pid)) | {server.pid}
        runs = wait_until(
            lambda: [r for r in cluster.runs("pages") if r["trigger"] == "startup"],
            90,
            "the startup run of 'pages' to be recorded",
        )
        assert [(r["keys_warmed"], r["keys_failed"]) for r in runs] == [(200, 0)]
        # The web process that won the startup claim enqueued; db_workers loaded every key.
        assert runs[0]["pid"] in web
        pids = cluster.pids()
        assert len(pids) == 200
        assert not set(pids.values()) & web, "a key was loaded in a web process"
        workers = {w.pid for w in cluster.workers.values()}
        assert set(pids.values()) <= workers
        assert set(cluster.loads().values()) == {1}  # once per cluster: one startup run
        tasks = cluster.tasks()
        assert len(tasks) == 2  # 200 keys in chunks of batch_size 10 x 10
        assert http_get(port, "/ping/") == (200, b"pong")
    finally:
        cluster.project.stop(server)
    assert "Traceback" not in cluster.project.log("gunicorn.log")


def test_a_chunk_that_runs_after_the_timeout_records_a_run_of_its_own(
    cluster: TaskCluster,
) -> None:
    """No worker while the command waits: it gives up at --timeout and records the keys as
    failed. A worker started later runs the chunks all the same (the backend keeps them):
    each records a run of its own, so what they write shows in the history."""
    done = cluster.warm("bulk", "--timeout", "2", "--chunk-size", "5000")
    assert done.returncode == 1, done.stdout + done.stderr
    assert [(r["keys_warmed"], r["keys_failed"]) for r in cluster.runs("bulk")] == [(0, 10_000)]
    cluster.start_workers("late")
    wait_until(lambda: len(cluster.runs("bulk")) == 3, 120, "the late chunks' own runs")
    late = cluster.runs("bulk")[1:]
    assert sorted((r["trigger"], r["keys_warmed"], r["keys_failed"]) for r in late) == [
        ("tasks", 5_000, 0),
        ("tasks", 5_000, 0),
    ]
    assert cluster.project.warmed(*(f"bulk:{i}" for i in range(10_000)))
    assert "ran after its coordinator gave up" in cluster.project.log("late.log")


def test_a_chunk_still_running_when_the_wait_ends_records_a_run_of_its_own(
    cluster: TaskCluster,
) -> None:
    """The worker takes the chunk at once, but it outlives --timeout: the command records its
    keys as failed; when the chunk finishes, the worker records its warm as a run of its own."""
    cluster.project.env.update(CW_SLOW_KEYS="200", CW_LOAD_DELAY="0.03")
    cluster.start_workers("w")
    done = cluster.warm("slow", "--timeout", "1", "--chunk-size", "200")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "still running on worker w" in done.stdout + done.stderr
    wait_until(lambda: len(cluster.runs("slow")) == 2, 120, "the chunk's own run")
    given_up, finished = cluster.runs("slow")
    assert (given_up["keys_warmed"], given_up["keys_failed"]) == (0, 200)
    assert (finished["trigger"], finished["keys_warmed"], finished["keys_failed"]) == (
        "tasks",
        200,
        0,
    )
    assert "finished after its coordinator gave up" in cluster.project.log("w.log")
