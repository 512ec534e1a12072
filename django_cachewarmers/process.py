"""What kind of process this is: a server, a management command, a test run; and requests the
process makes to itself."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

#: The WSGI environ key of the requests ``pages.render_page`` makes inside the process.
RENDER_MARKER = "django_cachewarmers.render"

#: Management commands that serve requests (third-party runservers included).
SERVER_COMMANDS = frozenset({"runserver", "runserver_plus", "runsslserver", "runmodwsgi"})
#: Programs (``argv[0]``'s file name, or the package run with ``python -m``) that are servers.
SERVER_PROGRAMS = frozenset(
    {"uvicorn", "daphne", "hypercorn", "granian", "waitress-serve", "waitress", "cheroot"}
)
DJANGO_PROGRAMS = frozenset({"manage.py", "django-admin", "django-admin.py", "django"})
PYTEST_PROGRAMS = frozenset({"pytest", "py.test"})


def program_name(argv: Sequence[str]) -> str:
    """The program this process runs: ``argv[0]``'s file name, or the package of ``python -m``."""
    if not argv:
        return ""
    path = argv[0]
    base = os.path.basename(path)
    if base == "__main__.py":  # python -m package
        return os.path.basename(os.path.dirname(path))
    return base.removesuffix(".exe")


def running_tests(
    argv: Sequence[str], environ: Mapping[str, str], modules: Mapping[str, object] | None = None
) -> bool:
    """True in pytest's own process and under ``manage.py test``.

    pytest's process has pytest's session module loaded and marks its run (``PYTEST_VERSION``,
    set by ``pytest.main``); a server it started only inherits the variables. Django's test
    environment (``setup_test_environment()``, which pytest-django and ``manage.py test`` call) set
    up in this process also counts.
    """
    modules = sys.modules if modules is None else modules
    program = program_name(argv)
    if program in DJANGO_PROGRAMS and len(argv) > 1 and argv[1] == "test":
        return True
    test_utils = modules.get("django.test.utils")
    state = getattr(test_utils, "_TestState", None)
    if state is not None and hasattr(state, "saved_data"):
        return True
    if "_pytest.main" not in modules:
        return False
    return (
        program in PYTEST_PROGRAMS
        or "PYTEST_VERSION" in environ
        or "PYTEST_CURRENT_TEST" in environ
    )


def _gunicorn_on_stack(frame: FrameType | None) -> str | None:
    # The server code loading the application right now: a fact of this process, whatever its
    # argv (gunicorn embedded in a script of your own is still gunicorn). Known by the module
    # each frame runs in (its ``__name__``), never by file paths: a script or a virtualenv in a
    # folder named "gunicorn" is not gunicorn.
    found = None
    while frame is not None:
        module = frame.f_globals.get("__name__")
        if isinstance(module, str):
            if module.startswith("gunicorn.workers."):
                return "worker"
            if module == "gunicorn" or module.startswith("gunicorn."):
                found = "master"
        frame = frame.f_back
    return found


def detect(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    modules: Mapping[str, object] | None = None,
    frame: FrameType | None = None,
) -> str | None:
    """What kind of serving process this is at start ("runserver", "gunicorn-worker",
    "gunicorn-master", "uwsgi", "mod_wsgi", or a server program's name such as "uvicorn"), or
    None for a process that does not warm at start (its first request may still arm it).

    ``frame`` is where to look for gunicorn's code on the stack (default: the caller's).
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if running_tests(argv, environ, modules):
        return None
    program = program_name(argv)
    if program in DJANGO_PROGRAMS:
        command = argv[1] if len(argv) > 1 else ""
        # RUN_MAIN is Django's autoreloader telling the process it started that it is the child.
        if command in SERVER_COMMANDS and (
            environ.get("RUN_MAIN") == "true" or "--noreload" in argv
        ):
            return "runserver"
        return None  # any other command, or the autoreloader's parent (its child will warm)
    gunicorn = _gunicorn_on_stack(sys._getframe(1) if frame is None else frame)
    if gunicorn is not None or program == "gunicorn":
        return "gunicorn-worker" if gunicorn == "worker" else "gunicorn-master"
    # Both modules exist only inside their servers (uWSGI and Apache embed them), never on disk.
    if "uwsgi" in modules:
        return "uwsgi"
    if "mod_wsgi" in modules:
        return "mod_wsgi"
    if program in SERVER_PROGRAMS:
        return program
    return None


def in_process_request(sender: object, environ: Mapping[str, Any] | None) -> bool:
    """True for a request made inside the process: Django's test ``Client`` (its handlers are
    ``request_started``'s sender) or ``render_page`` (its environ carries ``RENDER_MARKER``)."""
    if environ is not None and RENDER_MARKER in environ:
        return True
    client = sys.modules.get("django.test.client")  # not imported: not a test client request
    handlers = (getattr(client, "ClientHandler", None), getattr(client, "AsyncClientHandler", None))
    return isinstance(sender, type) and any(
        handler is not None and issubclass(sender, handler) for handler in handlers
    )
