"""Warming on Django's Tasks framework: 1, 2 and 4 django-tasks-db ``db_worker`` processes.

A project on an SQLite file in WAL mode (tests/tasks_settings.py: django-tasks-db's
DatabaseBackend is the default task backend) and its own redis-server as the cache. An I/O-bound
batch loader sleeps 50 ms per batch of 10 keys; 8,000 keys in chunks of 200 (40 tasks), each
chunk warmed with the warmer's 4 threads. Times `warm_cache NAME --tasks` (the fan-out's own wall
time, from its JSON output: process start-up is not counted) with 1, 2 and 4 worker processes
started beforehand. Efficiency is T1 / (n x Tn): 100% is perfect scaling over one worker.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.celery_bench import warm_ms

if TYPE_CHECKING:
    import subprocess

    from tests.processes import Project

N_KEYS = 8_000
BATCH_SIZE = 10
DELAY_S = 0.05
CHUNK_SIZE = 200
PROCESSES = (1, 2, 4)

WARMER = {
    "keys": "tests.celery_loaders.slow_keys",
    "batch_loader": "tests.task_loaders.slow_batch",
    "strategy": "lazy",
    "batch_size": BATCH_SIZE,
    "warmup_timeout": 600,
}


def _workers(project: Project, count: int) -> list[subprocess.Popen[bytes]]:
    from tests.processes import PYTHON, wait_until

    started = []
    for i in range(count):
        name = f"bench-{count}-{i}"
        argv = [
            PYTHON, "-m", "django", "db_worker", "--no-reload", "--interval", "0.05",
            "--no-startup-delay", "--worker-id", name,
        ]  # fmt: skip
        started.append(project.start(*argv, log=f"{name}.log"))
        wait_until(
            functools.partial(lambda n: "Starting worker" in project.log(f"{n}.log"), name),
            60,
            f"db_worker {name} to start",
        )
    return started


def run() -> list[dict[str, str]]:
    """Wall time of one `--tasks` fan-out per worker-process count, and the local warm."""
    from tests.processes import Project
    from tests.redis_server import RedisServer

    if shutil.which("redis-server") is None:
        skipped = "skipped: no redis-server (`bash .ci/run` installs it)"
        return [{"benchmark": "tasks fan-out", "ours": skipped, "baseline": "-", "ratio": "-"}]
    try:
        import django_tasks_db  # noqa: F401
    except ImportError:
        skipped = "skipped: no django-tasks-db (pip install -e '.[test]')"
        return [{"benchmark": "tasks fan-out", "ours": skipped, "baseline": "-", "ratio": "-"}]
    server = RedisServer()
    tmp = Path(tempfile.mkdtemp(prefix="cachewarmers-tasks-bench-"))
    server.start()
    project = Project(tmp, server, {"bench": WARMER})
    try:
        project.env.update(
            DJANGO_SETTINGS_MODULE="tests.tasks_settings",
            CW_SLOW_KEYS=str(N_KEYS),
            CW_BATCH_DELAY=str(DELAY_S),
            CW_LOG_LEVEL="WARNING",
        )
        project.env.pop("CW_LOADS_URL", None)
        migrated = project.manage("migrate", "--noinput", "--skip-checks")
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        local_ms = warm_ms(project, N_KEYS)
        timings: dict[int, float] = {}
        for count in PROCESSES:
            project.cache.clear()
            workers = _workers(project, count)
            try:
                timings[count] = warm_ms(
                    project, N_KEYS, "--tasks", "--chunk-size", str(CHUNK_SIZE)
                )
            finally:
                for worker in workers:
                    project.stop(worker, signal.SIGTERM)
                time.sleep(0.2)
    finally:
        project.cleanup()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    t1 = timings[1]
    label = (
        f"{N_KEYS:,} keys, {DELAY_S * 1000:g} ms per batch of {BATCH_SIZE}, chunks of {CHUNK_SIZE}"
    )
    rows = [
        {
            "benchmark": f"local warm (1 process, 4 threads), {label} (s)",
            "ours": f"{local_ms / 1000:.2f}",
            "baseline": "-",
            "ratio": "-",
        }
    ]
    for n in PROCESSES:
        tn = timings[n]
        rows.append(
            {
                "benchmark": f"tasks fan-out (django-tasks-db), {n} db_worker(s) x 4 threads, "
                f"{label} (s)",
                "ours": f"{tn / 1000:.2f}",
                "baseline": f"{t1 / 1000:.2f} (1 db_worker)",
                "ratio": f"speed-up {t1 / tn:.2f}x, efficiency {t1 / (n * tn):.0%}",
            }
        )
    rows.append(
        {
            "benchmark": "cores (the loader sleeps: more processes than cores still overlap)",
            "ours": str(os.cpu_count()),
            "baseline": "-",
            "ratio": "-",
        }
    )
    return rows
