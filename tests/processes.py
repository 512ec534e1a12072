"""The real-process harness shared by the server and Celery tests: a project's environment (settings
via CW_* variables, its own SQLite file and Redis key prefix) and the processes it starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from django.core.cache.backends.redis import RedisCache

from tests.redis_server import RedisServer, close_redis, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def http_get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path: (status, body); (0, b"") if the server did not answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    open_ = opener.open if opener is not None else urllib.request.urlopen
    try:
        with open_(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def started_at(run: dict[str, Any]) -> datetime:
    """When a WarmingRun row started (its started_at column, stored in UTC)."""
    return datetime.fromisoformat(str(run["started_at"])).replace(tzinfo=timezone.utc)


def sqlite_query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one SQL query on a SQLite file (errors raise)."""
    # closing(): sqlite3's own context manager commits but never closes the connection.
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql).fetchall()


def start_group(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start a process in a process group of its own, its output (stdout and stderr) to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: runserver's child, gunicorn's workers
        )


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """SIGTERM (or ``sig``) a start_group() process's group, SIGKILL 30 s later; its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return process.returncode


class Project:
    """One test's server environment: settings via CW_* variables, its DB file, its key prefix."""

    def __init__(
        self, tmp_path: Path, redis_server: RedisServer | str, warmers: dict[str, Any]
    ) -> None:
        """``redis_server``: a server (the project uses its database 3), or a cache URL as is."""
        self.tmp_path = tmp_path
        self.db = tmp_path / "db.sqlite3"
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        if isinstance(redis_server, str):
            self.redis_url = redis_server
        else:
            self.redis_url = f"{redis_server.url}/3"
        # The test runner's environment as it is (PYTEST_* included), as a user's end-to-end
        # suite starts its servers: a server must warm all the same.
        self.env = dict(os.environ)
        self.env.update(
            DJANGO_SETTINGS_MODULE="tests.server_settings",
            CW_DB=str(self.db),
            CW_REDIS_URL=self.redis_url,
            CW_KEY_PREFIX=self.prefix,
            CW_WARMERS=json.dumps(warmers),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        self.cache = RedisCache(self.redis_url, {"KEY_PREFIX": self.prefix})
        self.processes: list[subprocess.Popen[bytes]] = []

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "django", *args],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *argv: str, log: str) -> subprocess.Popen[bytes]:
        process = start_group(list(argv), self.env, self.tmp_path, self.tmp_path / log)
        self.processes.append(process)
        return process

    def start_gunicorn(
        self, log: str, workers: int = 2, port: int | None = None
    ) -> tuple[subprocess.Popen[bytes], int]:
        """gunicorn serving tests.wsgi on 127.0.0.1 (a free port unless given), once it answers."""
        port = free_port() if port is None else port
        server = self.start(
            PYTHON, "-m", "gunicorn", "tests.wsgi:application",
            "-w", str(workers), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20",
            log=log,
        )  # fmt: skip
        wait_until(lambda: http_get(port, "/ping/") == (200, b"pong"), 60, "gunicorn to answer")
        return server, port

    def log(self, name: str) -> str:
        return (self.tmp_path / name).read_text(errors="replace")

    def runs(self) -> list[dict[str, Any]]:
        """The WarmingRun rows' main columns, oldest first ([] while the table is unreadable)."""
        return self._run_query("warmer, trigger, started_at, keys_warmed, keys_failed, pid")

    def run_rows(self) -> list[dict[str, Any]]:
        """Every WarmingRun row, all columns, oldest first ([] while the table is unreadable)."""
        return self._run_query("*")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one SQL query on the project's database file (errors raise)."""
        return sqlite_query(self.db, sql)

    def _run_query(self, columns: str) -> list[dict[str, Any]]:
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                rows = conn.execute(
                    f"SELECT {columns} FROM django_cachewarmers_warmingrun ORDER BY started_at"
                ).fetchall()
            except sqlite3.OperationalError:
                return []
        return [dict(row) for row in rows]

    def warmed(self, *keys: str) -> bool:
        return all(self.cache.get(key) == f"value of {key}" for key in keys)

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        return stop_group(process, sig)

    def cleanup(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.stop(process, signal.SIGKILL)
        close_redis(self.cache)


def children(pid: int) -> list[int]:
    """The pids of a process's live children (e.g. gunicorn's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after its last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def rss_kb(pid: int) -> int:
    """A process's resident memory in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def thread_count(pid: int) -> int:
    """How many threads a process has, from /proc."""
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def celery_client(project: Project, name: str) -> Any:
    """A Celery client of the test app's broker and result backend (close it when done)."""
    from celery import Celery

    client = Celery(
        name,
        broker=project.env["CW_BROKER_URL"],
        backend=project.env["CW_RESULT_URL"],
        set_as_current=False,
    )
    client.conf.broker_connection_retry_on_startup = True
    return client


def celery_worker_argv(name: str, queue: str, concurrency: int, loglevel: str) -> list[str]:
    """The command line of a real Celery worker of the test app (tests/celery_app.py).

    Prefork pool, no gossip/mingle/heartbeat (faster, quieter), consuming ``queue`` only.
    """
    return [
        PYTHON, "-m", "celery", "-A", "tests.celery_app", "worker",
        "--pool=prefork", "-c", str(concurrency),
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-Q", queue, "-n", f"{name}-{queue}@%h", f"--loglevel={loglevel}",
    ]  # fmt: skip
