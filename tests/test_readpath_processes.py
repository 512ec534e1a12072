"""``django_cachewarmers.get`` across real processes sharing the suite's redis-server: one load
per key in the cluster (a lock taken with ``add``), and a lock whose holder died expires so the
others load the key themselves. Each process is ``tests/readpath_worker.py`` with a project's
environment (tests/processes.py)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PYTHON, Project, stop_group, wait_until
from tests.redis_server import RedisServer, close_redis

pytestmark = pytest.mark.slow  # real processes

WARMER = {
    "keys": ["product:1"],
    "loader": "tests.readpath_loaders.shared_load",
    "strategy": "lazy",
    "timeout": 300,
    "max_retries": 0,
}


@pytest.fixture
def project(tmp_path: Path, redis_server: RedisServer) -> Any:
    made = Project(tmp_path, redis_server, {"products": WARMER})
    # A migrated project, as a user's: each reader saves its read counts at exit (ReadCount).
    migrated = made.manage("migrate", "--noinput", "--skip-checks")
    assert migrated.returncode == 0, migrated.stderr
    yield made
    made.cleanup()
    for key in made.cache._cache.get_client().scan_iter(f"{made.prefix}:*"):
        made.cache._cache.get_client().delete(key)  # only this test's keys
    close_redis(made.cache)


def start_reader(project: Project, index: int, key: str = "product:1") -> subprocess.Popen[bytes]:
    return project.start(
        PYTHON, "-m", "tests.readpath_worker", "products", key, log=f"reader-{index}.log"
    )


def result(project: Project, index: int, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert process.wait(60) == 0, project.log(f"reader-{index}.log")
    lines = project.log(f"reader-{index}.log").strip().splitlines()
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def ready(project: Project) -> int:
    client = project.cache._cache.get_client()
    return len(list(client.scan_iter(f"{project.prefix}:1:ready:*")))


def test_processes_missing_one_key_load_it_once(project: Project) -> None:
    readers = [start_reader(project, i) for i in range(3)]
    # One of them loads (and waits for the release); the others find the lock and poll.
    wait_until(lambda: project.cache.get("loads:product:1") == 1, 60, "the first load")
    wait_until(lambda: ready(project) == 3, 60, "every reader to read")
    project.cache.set("release", 1, 60)
    results = [result(project, i, p) for i, p in enumerate(readers)]
    assert results == [{"value": "value of product:1"}] * 3
    assert project.cache.get("loads:product:1") == 1
    assert project.cache.get("product:1") == "value of product:1"


def test_a_lock_whose_holder_died_expires_and_another_process_loads(
    project: Project,
) -> None:
    project.env["CW_WARMERS"] = json.dumps({"products": {**WARMER, "warmup_timeout": 2}})
    holder = start_reader(project, 0)
    wait_until(lambda: project.cache.get("loads:product:1") == 1, 60, "the first load")
    stop_group(holder, signal.SIGKILL)  # it dies holding the lock (2 s TTL)
    assert project.cache.get("django_cachewarmers:load:product:1") is not None
    project.cache.set("release", 1, 60)
    second = start_reader(project, 1)
    assert result(project, 1, second) == {"value": "value of product:1"}
    assert project.cache.get("loads:product:1") == 2
