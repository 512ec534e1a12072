"""Which processes warm: at start (``detect``), at their first request (``arms_on_request``), never.

The decision is a function of facts of the process: its command line, its environment, the modules
it has loaded, the code on its stack, and the first request it handles. The real processes are in
tests/test_serving.py and tests/test_servers.py.
"""

# ruff: noqa: E501  (the decision table reads best one case a line)

from __future__ import annotations

import sys
from types import FrameType, ModuleType, SimpleNamespace
from typing import Any

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.test import override_settings
from django.test.client import AsyncClientHandler, ClientHandler

from django_cachewarmers.autostart import arms_on_request
from django_cachewarmers.process import RENDER_MARKER, detect, program_name, running_tests

NO_ENV: dict[str, str] = {}
#: What a server started by a test runner (pytest, pytest-xprocess, Playwright) inherits.
RUNNER_ENV = {"PYTEST_VERSION": "9.2.0", "PYTEST_CURRENT_TEST": "tests/test_e2e.py::test_x (call)"}
PYTEST = "_pytest.main"


def frame_in(stack: tuple[str, str]) -> FrameType:
    """A real frame of module ``stack[0]`` whose code lives in file ``stack[1]``."""
    module, filename = stack
    namespace: dict[str, object] = {"__name__": module}
    exec(compile("import sys\nframe = sys._getframe()", filename, "exec"), namespace)
    frame = namespace["frame"]
    assert isinstance(frame, FrameType)
    return frame


def loaded(*names: str) -> dict[str, object]:
    """A ``sys.modules`` of these (empty) modules."""
    return {name: ModuleType(name) for name in names}


#: ``django.test.utils`` once ``setup_test_environment()`` ran (it sets ``_TestState.saved_data``).
TEST_ENVIRONMENT: dict[str, object] = {
    "django.test.utils": SimpleNamespace(_TestState=SimpleNamespace(saved_data=object()))
}

# The code on the stack while the app loads: (module, file).
ANYWHERE = ("__main__", "/srv/app/run.py")
WORKER = ("gunicorn.workers.sync", "/venv/lib/python3/site-packages/gunicorn/workers/sync.py")
ARBITER = ("gunicorn.arbiter", "/venv/lib/python3/site-packages/gunicorn/arbiter.py")
#: Not gunicorn, though in folders named so: a cron script, and a Celery worker in such a venv.
IN_A_GUNICORN_FOLDER = ("__main__", "/srv/gunicorn/nightly_report.py")
CELERY_IN_A_GUNICORN_VENV = ("celery.worker", "/opt/gunicorn/venv/lib/python3/celery/worker.py")

# The first request: request_started's sender and the WSGI environ (None for ASGI).
WSGI = (WSGIHandler, {"PATH_INFO": "/"})
ASGI = (ASGIHandler, None)
CLIENT = (ClientHandler, {"PATH_INFO": "/"})
ASYNC_CLIENT = (AsyncClientHandler, None)
RENDER = (WSGIHandler, {"PATH_INFO": "/", RENDER_MARKER: True})
LIVE_SERVER = (StaticFilesHandler, {"PATH_INFO": "/"})  # Django's live server's handler
NO_REQUEST = None

Request = tuple[type, dict[str, Any] | None] | None

# (argv, environ, modules, code on the stack, first request) -> (at start, at first request)
CASES: list[tuple[str, list[str], dict[str, str], dict[str, object], tuple[str, str], Request, str | None, bool]] = [
    # runserver: the autoreloader's child, or --noreload; never the parent.
    ("runserver child", ["manage.py", "runserver"], {"RUN_MAIN": "true"}, {}, ANYWHERE, WSGI, "runserver", True),
    ("runserver parent", ["manage.py", "runserver"], NO_ENV, {}, ANYWHERE, NO_REQUEST, None, False),
    ("runserver --noreload", ["manage.py", "runserver", "--noreload"], NO_ENV, {}, ANYWHERE, WSGI, "runserver", True),
    ("python -m django runserver", ["/x/django/__main__.py", "runserver"], {"RUN_MAIN": "true"}, {}, ANYWHERE, WSGI, "runserver", True),
    ("django-admin runserver", ["/usr/bin/django-admin", "runserver"], {"RUN_MAIN": "true"}, {}, ANYWHERE, WSGI, "runserver", True),
    ("runserver from a test runner", ["manage.py", "runserver"], {"RUN_MAIN": "true", **RUNNER_ENV}, {}, ANYWHERE, WSGI, "runserver", True),
    # Other management commands serve nothing; their in-process requests never arm.
    ("migrate", ["manage.py", "migrate"], {"RUN_MAIN": "true"}, {}, ANYWHERE, NO_REQUEST, None, False),
    ("check", ["manage.py", "check"], NO_ENV, {}, ANYWHERE, NO_REQUEST, None, False),
    ("shell with the test Client", ["manage.py", "shell"], NO_ENV, {}, ANYWHERE, CLIENT, None, False),
    ("warm_cache renders pages", ["manage.py", "warm_cache"], NO_ENV, {}, ANYWHERE, RENDER, None, False),
    ("a name ending in manage.py", ["/srv/app/not_manage.py", "runserver"], {"RUN_MAIN": "true"}, {}, ANYWHERE, NO_REQUEST, None, False),
    # gunicorn: each worker; the preloading master defers to the fork. A test runner's variables
    # and an imported pytest change nothing.
    ("gunicorn worker", ["/venv/bin/gunicorn", "proj.wsgi"], NO_ENV, {}, WORKER, WSGI, "gunicorn-worker", True),
    ("gunicorn worker from a test runner", ["/venv/bin/gunicorn", "proj.wsgi"], RUNNER_ENV, {}, WORKER, WSGI, "gunicorn-worker", True),
    ("gunicorn worker that imports pytest", ["/venv/bin/gunicorn", "proj.wsgi"], NO_ENV, loaded(PYTEST), WORKER, WSGI, "gunicorn-worker", True),
    ("gunicorn --preload master", ["/venv/bin/gunicorn", "proj.wsgi", "--preload"], NO_ENV, {}, ARBITER, NO_REQUEST, "gunicorn-master", False),
    ("python -m gunicorn worker", ["/x/gunicorn/__main__.py"], NO_ENV, {}, WORKER, WSGI, "gunicorn-worker", True),
    ("gunicorn embedded in a script", ["/srv/app/serve.py"], NO_ENV, {}, WORKER, WSGI, "gunicorn-worker", True),
    # ASGI servers (their --workers children get the parent's argv back from multiprocessing).
    ("uvicorn", ["/venv/bin/uvicorn", "proj.asgi:application"], NO_ENV, {}, ANYWHERE, ASGI, "uvicorn", True),
    ("uvicorn from a test runner", ["/venv/bin/uvicorn", "proj.asgi:application"], RUNNER_ENV, {}, ANYWHERE, ASGI, "uvicorn", True),
    ("python -m uvicorn", ["/venv/lib/python3/site-packages/uvicorn/__main__.py"], NO_ENV, {}, ANYWHERE, ASGI, "uvicorn", True),
    ("daphne", ["/venv/bin/daphne", "proj.asgi:application"], NO_ENV, loaded("daphne"), ANYWHERE, ASGI, "daphne", True),
    ("hypercorn", ["/venv/bin/hypercorn", "proj.asgi:application"], NO_ENV, {}, ANYWHERE, ASGI, "hypercorn", True),
    ("granian", ["/venv/bin/granian", "--interface", "asgi"], NO_ENV, {}, ANYWHERE, ASGI, "granian", True),
    ("the async test Client", ["/venv/bin/uvicorn"], NO_ENV, {}, ANYWHERE, ASYNC_CLIENT, "uvicorn", False),
    # WSGI servers named on the command line, embedded ones.
    ("waitress-serve", ["/venv/bin/waitress-serve", "proj.wsgi:application"], RUNNER_ENV, {}, ANYWHERE, WSGI, "waitress-serve", True),
    ("python -m waitress", ["/x/waitress/__main__.py", "proj.wsgi:application"], NO_ENV, {}, ANYWHERE, WSGI, "waitress", True),
    ("uWSGI", ["uwsgi"], RUNNER_ENV, loaded("uwsgi"), ANYWHERE, WSGI, "uwsgi", True),
    ("mod_wsgi", ["httpd"], NO_ENV, loaded("mod_wsgi"), ANYWHERE, WSGI, "mod_wsgi", True),
    # Any other server arms at its first request (the safety net); a render never arms it.
    ("waitress.serve() in a script", ["/srv/app/serve.py"], RUNNER_ENV, loaded("waitress"), ANYWHERE, WSGI, None, True),
    ("run_simple() in a script", ["devserver.py"], NO_ENV, loaded("werkzeug.serving"), ANYWHERE, WSGI, None, True),
    ("an ASGI server of your own", ["/srv/app/serve.py"], NO_ENV, {}, ANYWHERE, ASGI, None, True),
    ("a render before the first request", ["/srv/app/serve.py"], NO_ENV, {}, ANYWHERE, RENDER, None, False),
    # A job that serves nothing never warms, whatever it imported or is called.
    ("a cron job with daphne installed", ["/srv/app/cron.py"], NO_ENV, loaded("daphne", "uvicorn", "gunicorn.arbiter"), ANYWHERE, NO_REQUEST, None, False),
    ("a script named after a server", ["/srv/app/reindex_daphne_rooms.py"], NO_ENV, {}, ANYWHERE, NO_REQUEST, None, False),
    ("a script in a folder named gunicorn", ["/srv/gunicorn/nightly_report.py"], NO_ENV, {}, IN_A_GUNICORN_FOLDER, NO_REQUEST, None, False),
    ("Celery from a venv in a folder named gunicorn", ["/opt/gunicorn/venv/bin/celery", "-A", "proj", "worker"], NO_ENV, {}, CELERY_IN_A_GUNICORN_VENV, NO_REQUEST, None, False),
    ("a wrapper named after a server", ["/srv/bin/uvicorn-check"], NO_ENV, {}, ANYWHERE, NO_REQUEST, None, False),
    ("a Celery worker rendering pages", ["/venv/bin/celery", "-A", "proj", "worker"], RUNNER_ENV, {}, ANYWHERE, RENDER, None, False),
    # pytest's own process and manage.py test: never, live_server included.
    ("pytest", ["/venv/bin/pytest"], RUNNER_ENV, loaded(PYTEST), ANYWHERE, LIVE_SERVER, None, False),
    ("python -m pytest", ["/venv/lib/python3/site-packages/pytest/__main__.py"], NO_ENV, loaded(PYTEST), ANYWHERE, LIVE_SERVER, None, False),
    ("pytest.main() in a script", ["/srv/app/run_tests.py"], {"PYTEST_VERSION": "9.2.0"}, loaded(PYTEST), ANYWHERE, LIVE_SERVER, None, False),
    ("a pytest-xdist worker", ["-c"], RUNNER_ENV, loaded(PYTEST), ANYWHERE, LIVE_SERVER, None, False),
    ("pytest running a server's code", ["/venv/bin/pytest"], RUNNER_ENV, loaded(PYTEST, "uwsgi"), WORKER, WSGI, None, False),
    ("manage.py test", ["manage.py", "test"], NO_ENV, {}, ANYWHERE, LIVE_SERVER, None, False),
    ("a test runner of your own", ["/srv/app/runtests.py"], NO_ENV, TEST_ENVIRONMENT, ANYWHERE, LIVE_SERVER, None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "environ", "modules", "stack", "request_", "at_start", "at_first_request"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_which_processes_warm(
    argv: list[str],
    environ: dict[str, str],
    modules: dict[str, object],
    stack: tuple[str, str],
    request_: Request,
    at_start: str | None,
    at_first_request: bool,
) -> None:
    assert detect(argv, environ, modules, frame=frame_in(stack)) == at_start
    armed = request_ is not None and arms_on_request(*request_, argv, environ, modules)
    assert armed is at_first_request


@override_settings(CACHE_WARMERS_AUTOSTART=False)
def test_with_autostart_off_a_first_request_arms_nothing() -> None:
    assert not arms_on_request(*WSGI, ["/srv/app/serve.py"], NO_ENV, {})
    assert not arms_on_request(*ASGI, ["/venv/bin/uvicorn"], NO_ENV, {})


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["/venv/bin/gunicorn"], "gunicorn"),
        (["/venv/lib/python3.11/site-packages/uvicorn/__main__.py"], "uvicorn"),
        (["waitress-serve.exe"], "waitress-serve"),
        (["manage.py"], "manage.py"),
        ([], ""),
    ],
)
def test_program_name(argv: list[str], program: str) -> None:
    assert program_name(argv) == program


def test_this_test_run_is_a_test_run_and_has_no_first_request_receiver() -> None:
    import os

    assert running_tests(sys.argv, os.environ)
    assert detect() is None
    # ready() connected nothing: the test Client's and live_server's requests cannot arm.
    uids = [lookup[0] for lookup, *_ in request_started.receivers]
    assert "django_cachewarmers.autostart" not in uids
