"""Warming on Celery: 10,000 keys with a 5 ms loader, fanned out over 1, 2 and 4 worker processes.

Starts its own redis-server on a free port (broker, result backend and cache), one prefork Celery
worker per measurement with that many pool processes, and times `warm_cache NAME --celery` (the
fan-out's own wall time, from its JSON output: process start-up is not counted). Each pool process
warms its chunk with the warmer's default 4 threads, so the loader's 5 ms waits overlap inside a
process too. Efficiency is T1 / (n x Tn): 100% is perfect scaling over one worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.processes import Project

N_KEYS = 10_000
DELAY_S = 0.005
CHUNK_SIZE = 250
PROCESSES = (1, 2, 4)

WARMER = {
    "keys": "tests.celery_loaders.slow_keys",
    "loader": "tests.celery_loaders.slow_load",
    "strategy": "lazy",
    "warmup_timeout": 600,
}


def warm_ms(project: Project, n_keys: int, *args: str) -> float:
    """Milliseconds of one ``warm_cache bench --json`` run (its ``total_time_ms``), which must
    warm all ``n_keys`` keys (``RuntimeError`` otherwise)."""
    done = project.manage("warm_cache", "bench", "--json", *args, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"warm_cache failed: {done.stderr}")
    stats = json.loads(done.stdout)["bench"]
    if stats["keys_warmed"] != n_keys:
        raise RuntimeError(f"not every key warmed: {stats}")
    return float(stats["total_time_ms"])


def _worker(project: Project, queue: str, processes: int) -> subprocess.Popen[bytes]:
    from tests.processes import celery_client, celery_worker_argv, wait_until

    log = f"worker-{processes}.log"
    worker = project.start(
        *celery_worker_argv(f"bench-{processes}", queue, processes, "WARNING"), log=log
    )
    # With --loglevel=WARNING the worker prints no "ready." line: ping it instead.
    client = celery_client(project, "bench-ping")
    try:
        wait_until(
            lambda: client.control.ping(destination=[f"bench-{processes}-{queue}@{_host()}"]),
            60,
            f"the worker with {processes} processes to answer",
        )
    finally:
        client.close()
    return worker


def _host() -> str:
    import socket

    return socket.gethostname()


def run() -> list[dict[str, str]]:
    """Wall time of one fan-out per worker-process count, and the local warm for comparison."""
    from tests.processes import Project
    from tests.redis_server import RedisServer

    if shutil.which("redis-server") is None:
        skipped = "skipped: no redis-server (`bash .ci/run` installs it)"
        return [{"benchmark": "celery fan-out", "ours": skipped, "baseline": "-", "ratio": "-"}]
    server = RedisServer()
    tmp = Path(tempfile.mkdtemp(prefix="cachewarmers-celery-bench-"))
    server.start()
    project = Project(tmp, server, {"bench": WARMER})
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        project.env.update(
            CW_BROKER_URL=f"{server.url}/5",
            CW_RESULT_URL=f"{server.url}/6",
            CW_CELERY_QUEUE=queue,
            CW_SLOW_KEYS=str(N_KEYS),
            CW_LOAD_DELAY=str(DELAY_S),
            CELERY_APP="tests.celery_app",
        )
        project.env.pop("CW_LOADS_URL", None)
        migrated = project.manage("migrate", "--noinput", "--skip-checks")
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        local_ms = warm_ms(project, N_KEYS)
        timings: dict[int, float] = {}
        for processes in PROCESSES:
            project.cache.clear()
            worker = _worker(project, queue, processes)
            try:
                timings[processes] = warm_ms(
                    project, N_KEYS, "--celery", "--chunk-size", str(CHUNK_SIZE)
                )
            finally:
                project.stop(worker, signal.SIGTERM)
                time.sleep(0.2)
    finally:
        project.cleanup()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    t1 = timings[1]
    label = f"{N_KEYS:,} keys, {DELAY_S * 1000:g} ms loader, chunks of {CHUNK_SIZE}"
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
                "benchmark": f"celery fan-out, {n} worker process(es) x 4 threads, {label} (s)",
                "ours": f"{tn / 1000:.2f}",
                "baseline": f"{t1 / 1000:.2f} (1 worker process)",
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
