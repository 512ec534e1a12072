"""Which processes warm at start: servers yes; tests, other commands and reloader parents no."""

from __future__ import annotations

import sys
from types import FrameType

import pytest

from django_cachewarmers.autostart import detect

NO_ENV: dict[str, str] = {}


def frame_in(filename: str) -> FrameType:
    """A real frame whose code lives in ``filename`` (as gunicorn's modules would be)."""
    namespace: dict[str, object] = {}
    exec(compile("import sys\nframe = sys._getframe()", filename, "exec"), namespace)
    frame = namespace["frame"]
    assert isinstance(frame, FrameType)
    return frame


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, "runserver"),
        (["manage.py", "runserver"], NO_ENV, None),  # the autoreloader's parent
        (["manage.py", "runserver", "--noreload"], NO_ENV, "runserver"),
        (["/x/django/__main__.py", "runserver"], {"RUN_MAIN": "true"}, "runserver"),
        (["/usr/bin/django-admin", "runserver"], {"RUN_MAIN": "true"}, "runserver"),
        (["manage.py", "migrate"], {"RUN_MAIN": "true"}, None),
        (["manage.py", "makemigrations"], NO_ENV, None),
        (["manage.py", "check"], NO_ENV, None),
        (["manage.py", "shell"], NO_ENV, None),
        (["manage.py", "collectstatic"], NO_ENV, None),
        (["manage.py", "warm_cache"], NO_ENV, None),
        (["manage.py", "test"], NO_ENV, None),
        (["manage.py", "runserver"], {"RUN_MAIN": "true", "PYTEST_VERSION": "9"}, None),
        (["script.py"], NO_ENV, None),
    ],
)
def test_detect_management_commands(
    argv: list[str], environ: dict[str, str], expected: str | None
) -> None:
    assert detect(argv, environ, modules=set()) == expected


def test_detect_gunicorn_worker_and_preloading_master() -> None:
    worker = frame_in("/venv/lib/python3/site-packages/gunicorn/workers/sync.py")
    master = frame_in("/venv/lib/python3/site-packages/gunicorn/arbiter.py")
    argv = ["/venv/bin/gunicorn", "proj.wsgi"]
    assert detect(argv, NO_ENV, modules={"gunicorn.arbiter"}, frame=worker) == "gunicorn-worker"
    assert detect(argv, NO_ENV, modules={"gunicorn.arbiter"}, frame=master) == "gunicorn-master"
    assert (
        detect(["/x/gunicorn/__main__.py"], NO_ENV, modules=set(), frame=worker)
        == "gunicorn-worker"
    )


def test_detect_asgi_uwsgi_and_mod_wsgi() -> None:
    assert detect(["/venv/bin/uvicorn", "proj.asgi:application"], NO_ENV, modules=set()) == "asgi"
    assert detect(["-c"], NO_ENV, modules={"uvicorn"}) == "asgi"
    assert detect(["/venv/bin/daphne"], NO_ENV, modules=set()) == "asgi"
    assert detect(["uwsgi"], NO_ENV, modules={"uwsgi"}) == "uwsgi"
    assert detect(["httpd"], NO_ENV, modules={"mod_wsgi"}) == "mod_wsgi"


def test_detect_is_off_under_this_test_run() -> None:
    assert detect() is None  # pytest sets PYTEST_VERSION / PYTEST_CURRENT_TEST
    assert "pytest" in sys.modules
