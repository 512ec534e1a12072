"""Real processes: every process that serves requests warms, and no other.

Each process gets the test runner's environment as it is (PYTEST_* included), as a server started by
a user's end-to-end suite would. Servers run tests.wsgi / tests.asgi on tests/serving_settings.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import PYTHON, ROOT, Project, http_get, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

ITEMS = {
    "keys": "tests.testapp.warming.item_keys",
    "loader": "tests.testapp.warming.load_item",
    "strategy": "eager",
}
STARTED = "cache warming started in process"
QUIET = 1.5  # seconds a wrongly started warming thread would need to show (it takes ~0.1 s)

SERVE_WITH_WAITRESS = """\
import sys

from waitress import create_server

from tests.wsgi import application

server = create_server(application, host="127.0.0.1", port=int(sys.argv[1]), threads=4)
print("listening", flush=True)
server.run()
"""

SERVE_WITH_UVICORN = """\
import sys

import uvicorn

# Logs "Uvicorn running on ..." once it listens (after loading the application).
uvicorn.run("tests.asgi:application", host="127.0.0.1", port=int(sys.argv[1]))
"""

GUNICORN_CONF = """\
def post_fork(server, worker):
    # Before the application is loaded (no --preload): start() waits for Django's apps.
    from django_cachewarmers import autostart

    autostart.start()
"""


def serving(projects: Callable[..., Project], **env: str) -> Project:
    p = projects({"items": ITEMS}, DJANGO_SETTINGS_MODULE="tests.serving_settings", **env)
    assert "PYTEST_CURRENT_TEST" in p.env  # the runner's environment, not a cleaned one
    assert "PYTEST_VERSION" in p.env
    return p


def started_pids(log: str) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if STARTED in line]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_waitress_serve_warms_at_start_without_a_request(
    projects: Callable[..., Project],
) -> None:
    p = serving(projects)
    port = free_port()
    waitress = str(Path(PYTHON).with_name("waitress-serve"))
    server = p.start(
        waitress, "--listen", f"127.0.0.1:{port}", "tests.wsgi:application", log="waitress.log"
    )
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "waitress-serve to warm the cache")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"], r["pid"]) for r in runs] == [
        ("items", "startup", server.pid)
    ]
    assert http_get(port, "/ping/") == (200, b"pong")
    p.stop(server)
    log = p.log("waitress.log")
    assert started_pids(log) == [server.pid], log
    assert "Traceback" not in log


@pytest.mark.parametrize("code", [SERVE_WITH_WAITRESS, SERVE_WITH_UVICORN], ids=["wsgi", "asgi"])
def test_a_server_of_its_own_warms_at_its_first_request_once(
    projects: Callable[..., Project], code: str
) -> None:
    p = serving(projects)
    port = free_port()
    script = write(p.tmp_path / "serve.py", code)
    server = p.start(PYTHON, str(script), str(port), log="serve.log")
    wait_until(
        lambda: any(line in p.log("serve.log") for line in ("listening", "Uvicorn running on")),
        60,
        "the server to listen",
    )
    time.sleep(QUIET)
    assert STARTED not in p.log("serve.log")  # not a known server: nothing at start ...
    assert p.runs() == []
    for _ in range(5):  # ... and its first request arms it, without waiting for the warm
        assert http_get(port, "/ping/") == (200, b"pong")
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "the first request to start warming")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"], r["pid"]) for r in runs] == [
        ("items", "startup", server.pid)
    ]
    assert http_get(port, "/ping/") == (200, b"pong")
    p.stop(server)
    log = p.log("serve.log")
    assert started_pids(log) == [server.pid], log  # once, for six requests
    assert "Traceback" not in log


def test_with_autostart_off_a_request_starts_nothing(projects: Callable[..., Project]) -> None:
    p = serving(projects, CW_AUTOSTART="0")
    port = free_port()
    script = write(p.tmp_path / "serve.py", SERVE_WITH_WAITRESS)
    server = p.start(PYTHON, str(script), str(port), log="serve.log")
    wait_until(lambda: http_get(port, "/ping/") == (200, b"pong"), 60, "waitress to answer")
    time.sleep(QUIET)
    assert p.runs() == []
    assert not p.warmed("item:0")
    p.stop(server)
    assert STARTED not in p.log("serve.log")


def test_with_autostart_off_gunicorns_post_fork_hook_starts_each_worker(
    projects: Callable[..., Project],
) -> None:
    p = serving(projects, CW_AUTOSTART="0")
    port = free_port()
    conf = write(p.tmp_path / "gunicorn.conf.py", GUNICORN_CONF)
    server = p.start(
        PYTHON, "-m", "gunicorn", "tests.wsgi:application", "-c", str(conf),
        "-w", "2", "-b", f"127.0.0.1:{port}",
        log="gunicorn.log",
    )  # fmt: skip
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "the workers to warm the cache")
    wait_until(lambda: len(started_pids(p.log("gunicorn.log"))) == 2, 30, "both workers")
    assert p.stop(server) == 0
    log = p.log("gunicorn.log")
    pids = started_pids(log)
    assert len(set(pids)) == 2, log
    assert server.pid not in pids
    assert [(r["warmer"], r["trigger"]) for r in p.runs()] == [("items", "startup")]
    assert "Traceback" not in log


def test_with_autostart_off_an_asgi_lifespan_handler_starts_warming(
    projects: Callable[..., Project],
) -> None:
    p = serving(projects, CW_AUTOSTART="0")
    port = free_port()
    server = p.start(
        PYTHON, "-m", "uvicorn", "tests.asgi_lifespan:application", "--port", str(port),
        "--lifespan", "on",
        log="uvicorn.log",
    )  # fmt: skip
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "the lifespan startup to warm")
    runs = wait_until(p.runs, 10, "the startup run to be recorded")
    assert [(r["warmer"], r["trigger"], r["pid"]) for r in runs] == [
        ("items", "startup", server.pid)
    ]
    assert http_get(port, "/ping/") == (200, b"pong")
    p.stop(server)
    log = p.log("uvicorn.log")
    assert started_pids(log) == [server.pid], log
    assert "Traceback" not in log


def test_with_autostart_off_uwsgis_postfork_hook_starts_each_worker(
    projects: Callable[..., Project],
) -> None:
    p = serving(projects, CW_AUTOSTART="0")
    port = free_port()
    uwsgi = str(Path(PYTHON).with_name("uwsgi"))
    server = p.start(
        uwsgi, "--http-socket", f"127.0.0.1:{port}", "--module", "tests.wsgi_postfork:application",
        "--master", "--processes", "2", "--enable-threads", "--die-on-term", "--need-app",
        log="uwsgi.log",
    )  # fmt: skip
    wait_until(lambda: p.warmed("item:0", "item:19"), 60, "the workers to warm the cache")
    wait_until(lambda: len(started_pids(p.log("uwsgi.log"))) == 2, 30, "both workers")
    os.kill(server.pid, signal.SIGTERM)  # the master stops its workers (see test_servers.py)
    server.wait(60)
    log = p.log("uwsgi.log")
    pids = started_pids(log)
    assert len(set(pids)) == 2, log
    assert server.pid not in pids
    assert [(r["warmer"], r["trigger"]) for r in p.runs()] == [("items", "startup")]
    assert "Traceback" not in log


def test_uvicorn_workers_each_warm_and_the_supervisor_does_not(
    projects: Callable[..., Project],
) -> None:
    p = serving(projects)
    port = free_port()
    server = p.start(
        PYTHON, "-m", "uvicorn", "tests.asgi:application", "--port", str(port), "--workers", "2",
        log="uvicorn.log",
    )  # fmt: skip
    wait_until(lambda: len(started_pids(p.log("uvicorn.log"))) == 2, 60, "both workers to start")
    wait_until(lambda: p.warmed("item:0", "item:19"), 30, "the workers to warm the cache")
    assert http_get(port, "/ping/") == (200, b"pong")
    p.stop(server)
    log = p.log("uvicorn.log")
    pids = started_pids(log)
    assert len(set(pids)) == 2, log
    assert server.pid not in pids  # the supervisor never loads the application
    assert [(r["warmer"], r["trigger"]) for r in p.runs()] == [("items", "startup")]
    assert "Traceback" not in log


JOB = """\
import time

import django

django.setup()

import daphne  # noqa: F401  (installed and imported, as Channels 4 has it)
from tests.testapp import warming

time.sleep({quiet})  # some work; a wrongly started warm would have called the loader by now
print("loader calls:", sum(warming.CALLS.values()))
"""

IN_PROCESS_REQUESTS = """\
import time

import django

django.setup()

from django.test import Client

from django_cachewarmers.pages import render_page
from tests.testapp import warming

render_page("http://127.0.0.1/cached/plain/")  # a cache_page page: really warmed
assert Client().get("/ping/").content == b"pong"
time.sleep({quiet})
print("loader calls:", sum(warming.CALLS.values()))
"""


@pytest.mark.parametrize(
    ("script", "code"),
    [("reindex_daphne_rooms.py", JOB), ("crawl.py", IN_PROCESS_REQUESTS)],
    ids=["daphne-installed-job", "in-process-requests"],
)
def test_a_process_that_serves_nothing_warms_nothing(
    projects: Callable[..., Project], script: str, code: str
) -> None:
    p = serving(projects, CW_APPS_FIRST="daphne")
    path = write(p.tmp_path / script, code.format(quiet=QUIET))
    done = subprocess.run(
        [PYTHON, str(path)],
        env=p.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "loader calls: 0" in done.stdout
    assert STARTED not in done.stderr
    assert p.runs() == []
    assert not p.warmed("item:0")


LIVE_SERVER_TEST_CASE = """\
import time
import urllib.request

from django.test import LiveServerTestCase

from tests.testapp import warming


class LiveServerTest(LiveServerTestCase):
    def test_live_server(self):
        with urllib.request.urlopen(self.live_server_url + "/ping/") as response:
            self.assertEqual(response.read(), b"pong")
        self.assertEqual(self.client.get("/ping/").content, b"pong")
        time.sleep({quiet})
        print("loader calls:", sum(warming.CALLS.values()))
"""

PYTEST_LIVE_SERVER = """\
import time
import urllib.request

from tests.testapp import warming


def test_live_server(live_server, client):
    with urllib.request.urlopen(live_server.url + "/ping/") as response:
        assert response.read() == b"pong"
    assert client.get("/ping/").content == b"pong"
    time.sleep({quiet})
    print("loader calls:", sum(warming.CALLS.values()))
"""


@pytest.mark.parametrize("runner", ["manage.py test", "pytest"])
def test_a_test_run_warms_nothing_live_server_included(
    projects: Callable[..., Project], runner: str
) -> None:
    p = serving(projects)
    if runner == "pytest":
        write(p.tmp_path / "test_live.py", PYTEST_LIVE_SERVER.format(quiet=QUIET))
        argv = [PYTHON, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "test_live.py"]
    else:
        write(p.tmp_path / "livecheck.py", LIVE_SERVER_TEST_CASE.format(quiet=QUIET))
        argv = [PYTHON, "-m", "django", "test", "livecheck"]
    done = subprocess.run(
        argv,
        env={**p.env, "PYTHONPATH": f"{p.tmp_path}{os.pathsep}{ROOT}"},
        cwd=p.tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "loader calls: 0" in output
    assert STARTED not in output
    assert p.runs() == []
    assert not p.warmed("item:0")
