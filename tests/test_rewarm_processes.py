"""Re-warm on change in real processes: a management command and a script that save and exit at
once lose nothing (flushed at exit), a script killed by SIGTERM flushes first, and a real
gunicorn worker flushes on SIGTERM through its own graceful shutdown.

Every process shares the suite's own redis-server (a key prefix of its own) and a SQLite file;
``rewarm_delay`` is 600 s, so only the shutdown flush can have written the new values.
"""

from __future__ import annotations

import http.cookiejar
import re
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.processes import PYTHON, Project, http_get, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

GROUPS = {
    "keys": "tests.testapp.rewarming.all_group_keys",
    "batch_loader": "tests.testapp.rewarming.load_groups",
    "strategy": "lazy",
    "rewarm_on": {"auth.Group": "tests.testapp.rewarming.group_keys"},
    "rewarm_delay": 600,
}

SETUP = "import django; django.setup(); from django.contrib.auth.models import Group; "


def change_runs(p: Project) -> list[dict[str, Any]]:
    return [r for r in p.runs() if r["trigger"] == "change"]


def group_id(p: Project, name: str) -> int:
    return int(p.query(f"SELECT id FROM auth_group WHERE name = '{name}'")[0][0])


def test_a_command_and_a_script_that_save_and_exit_at_once_lose_nothing(
    projects: Callable[..., Project],
) -> None:
    p = projects({"groups": GROUPS})
    created = p.manage("shell", "-c", "from django.contrib.auth.models import Group; "
                       "Group.objects.create(name='before')")  # fmt: skip
    assert created.returncode == 0, created.stderr
    pk = group_id(p, "before")
    assert p.cache.get(f"group:{pk}") == "before"  # written by the command as it exited
    assert "flushing 1 changed keys now (the process exits)" in created.stderr

    script = SETUP + f"g = Group.objects.get(pk={pk}); g.name = 'after'; g.save()"
    ran = subprocess.run(
        [PYTHON, "-c", script],
        env=p.env,
        cwd=p.tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert p.cache.get(f"group:{pk}") == "after"
    runs = change_runs(p)
    assert [(r["warmer"], r["keys_warmed"], r["keys_failed"]) for r in runs] == [
        ("groups", 1, 0),
        ("groups", 1, 0),
    ]
    assert "Traceback" not in created.stderr + ran.stderr


def test_a_script_ended_by_sigterm_flushes_first(projects: Callable[..., Project]) -> None:
    p = projects({"groups": GROUPS})
    script = (
        SETUP + "import time; g = Group.objects.create(name='terminated'); "
        "print('saved', flush=True); time.sleep(600)"
    )
    process = p.start(PYTHON, "-c", script, log="script.log")
    wait_until(lambda: "saved" in p.log("script.log"), 60, "the script to save")
    pk = group_id(p, "terminated")
    assert p.cache.get(f"group:{pk}") is None  # waiting for its rewarm_delay
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == -signal.SIGTERM  # it still dies of SIGTERM, as without the app
    assert p.cache.get(f"group:{pk}") == "terminated"
    log = p.log("script.log")
    assert "SIGTERM: flushing 1 changed keys before the process ends" in log, log
    assert "Traceback" not in log, log
    assert [r["keys_warmed"] for r in change_runs(p)] == [1]


def _admin_login(port: int) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, body = http_get(port, "/admin/login/", opener=opener)
    assert status == 200
    form = {"username": "demo", "password": "cachewarmers", "next": "/admin/"}
    _post(opener, port, "/admin/login/", form, body)
    return opener


def _post(
    opener: urllib.request.OpenerDirector, port: int, path: str, form: dict[str, str], page: bytes
) -> str:
    """POST ``form`` with the CSRF token of ``page``: the final URL after redirects."""
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None, page
    data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": token.group(1).decode()})
    url = f"http://127.0.0.1:{port}{path}"
    with opener.open(url, data=data.encode(), timeout=30) as response:
        assert response.status == 200
        return str(response.url)


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_flushes_pending_changes_on_sigterm(
    projects: Callable[..., Project], worker_class: str
) -> None:
    """The sync worker saves in its main thread, gthread in a thread of its pool: either way
    gunicorn's own SIGTERM handler stays, and its graceful exit runs the flush (``atexit``)."""
    p = projects({"groups": GROUPS})
    p.env["DJANGO_SUPERUSER_PASSWORD"] = "cachewarmers"
    made = p.manage("createsuperuser", "--noinput", "--username", "demo", "--email", "d@e.org")
    assert made.returncode == 0, made.stderr
    created = p.manage("shell", "-c", "from django.contrib.auth.models import Group; "
                       "Group.objects.create(name='before')")  # fmt: skip
    assert created.returncode == 0, created.stderr
    pk = group_id(p, "before")
    assert p.cache.get(f"group:{pk}") == "before"

    port = free_port()
    # (gunicorn turns a sync worker with --threads > 1 into gthread: threads only for gthread.)
    threads = ["--threads", "2"] if worker_class == "gthread" else []
    server = p.start(
        PYTHON, "-m", "gunicorn", "tests.wsgi:application", "-w", "1", "-k", worker_class,
        *threads, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "30",
        log="gunicorn.log",
    )  # fmt: skip
    wait_until(lambda: http_get(port, "/ping/") == (200, b"pong"), 60, "gunicorn to answer")
    opener = _admin_login(port)
    change = f"/admin/auth/group/{pk}/change/"
    status, page = http_get(port, change, opener=opener)
    assert status == 200, page
    landed = _post(opener, port, change, {"name": "edited in the admin", "_save": "Save"}, page)
    assert landed.endswith("/admin/auth/group/"), landed
    assert p.query(f"SELECT name FROM auth_group WHERE id = {pk}") == [("edited in the admin",)]
    assert p.cache.get(f"group:{pk}") == "before"  # waiting for its rewarm_delay (600 s)

    assert p.stop(server, signal.SIGTERM) == 0
    assert p.cache.get(f"group:{pk}") == "edited in the admin"
    log = p.log("gunicorn.log")
    assert "flushing 1 changed keys now (the process exits)" in log, log
    assert "Traceback" not in log, log
    assert f"Using worker: {worker_class}" in log, log
    assert [r["keys_warmed"] for r in change_runs(p)] == [1, 1]
