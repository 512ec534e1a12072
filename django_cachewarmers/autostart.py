"""Warming at server start: decide whether this process serves requests, and start once if so.

``AppConfig.ready()`` calls ``arm()``. It touches no database and starts threads only in a process
that serves requests: ``runserver``'s autoreloader child (or ``--noreload``), each gunicorn worker
(after the fork when the app is preloaded in the master), each uWSGI worker, an ASGI server process
(uvicorn, daphne, hypercorn) or mod_wsgi. Never in tests, in other management commands (migrate,
check, shell, warm_cache, ...) or in the autoreloader's parent.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Container, Mapping, Sequence
from types import FrameType

from django_cachewarmers.conf import conf

logger = logging.getLogger("django_cachewarmers")

#: Management commands that serve requests (third-party runservers included).
SERVER_COMMANDS = frozenset({"runserver", "runserver_plus", "runsslserver", "runmodwsgi"})
ASGI_SERVERS = ("uvicorn", "daphne", "hypercorn", "granian")

_lock = threading.Lock()
_armed = False
_scheduler: object | None = None  # a WarmingScheduler, imported lazily


def running_tests(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True under pytest or ``manage.py test``."""
    return (
        "PYTEST_VERSION" in environ
        or "PYTEST_CURRENT_TEST" in environ
        or (len(argv) > 1 and argv[1] == "test")
    )


def _gunicorn_worker_on_stack(frame: FrameType | None) -> bool:
    marker = os.sep + os.path.join("gunicorn", "workers") + os.sep
    while frame is not None:
        if marker in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def detect(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    modules: Container[str] | None = None,
    frame: FrameType | None = None,
) -> str | None:
    """What kind of serving process this is ("runserver", "gunicorn-worker", "gunicorn-master",
    "uwsgi", "asgi", "mod_wsgi"), or None for a process that must not warm at start."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if running_tests(argv, environ):
        return None
    program = argv[0] if argv else ""
    base = os.path.basename(program)
    is_django_cli = (
        base.endswith("manage.py")
        or base.startswith("django-admin")
        or program.endswith(os.path.join("django", "__main__.py"))
    )
    if is_django_cli:
        command = argv[1] if len(argv) > 1 else ""
        if command in SERVER_COMMANDS and (
            environ.get("RUN_MAIN") == "true" or "--noreload" in argv
        ):
            return "runserver"
        return None  # any other command, or the autoreloader's parent (its child will warm)
    if "gunicorn" in program or "gunicorn.arbiter" in modules:
        here = sys._getframe(1) if frame is None else frame
        return "gunicorn-worker" if _gunicorn_worker_on_stack(here) else "gunicorn-master"
    if "uwsgi" in modules:
        return "uwsgi"
    if any(server in base for server in ASGI_SERVERS) or any(s in modules for s in ASGI_SERVERS):
        return "asgi"
    if "mod_wsgi" in modules:
        return "mod_wsgi"
    return None


def arm() -> None:
    """From ``AppConfig.ready()``: start warming here, or after the fork, if this process serves.

    Idempotent: only the first call in a process does anything.
    """
    global _armed
    with _lock:
        if _armed:
            return
        _armed = True
    if not conf.AUTOSTART:
        return
    kind = detect()
    if kind is None:
        return
    logger.debug("cache warming armed for this %s process", kind)
    if kind == "gunicorn-master":
        # Threads do not survive fork(): each worker starts its own after the fork.
        os.register_at_fork(after_in_child=start)
        return
    if kind == "uwsgi" and _uwsgi_master_defers():
        return
    start()


def _uwsgi_master_defers() -> bool:
    import uwsgi  # only exists inside a uWSGI server

    if uwsgi.worker_id() > 0:
        return False
    if not uwsgi.opt.get("enable-threads") and not uwsgi.opt.get("threads"):
        logger.warning(
            "cache warming needs threads in uWSGI: add --enable-threads (or set threads); "
            "without them startup and scheduled warming do not run"
        )
    try:
        from uwsgidecorators import postfork

        postfork(start)
    except ImportError:
        uwsgi.post_fork_hook = start
    return True


def start() -> None:
    """Start startup warming and the scheduler thread in this process (once per process)."""
    global _scheduler
    from django_cachewarmers.scheduler import WarmingScheduler
    from django_cachewarmers.spec import get_specs

    specs = get_specs()
    _report_invalid_warmers(specs)
    if not any(spec.warms_at_startup or spec.is_scheduled for spec in specs.values()):
        return
    with _lock:
        current = _scheduler
        if isinstance(current, WarmingScheduler) and current.running:
            return
        scheduler = _scheduler = WarmingScheduler()
    scheduler.start()
    atexit.register(stop)
    logger.info("cache warming started in process %d", os.getpid())


def _report_invalid_warmers(valid: Mapping[str, object]) -> None:
    # Servers other than runserver run no system checks: name what will not run, once, clearly.
    from django.core.exceptions import ImproperlyConfigured

    from django_cachewarmers.spec import parse_warmer

    declared = conf.CACHE_WARMERS
    if not isinstance(declared, Mapping):  # as get_specs() reads it
        logger.error("CACHE_WARMERS is not a dict: no cache warmer runs (see `manage.py check`)")
        return
    for name, raw in declared.items():
        if name in valid:
            continue
        try:
            parse_warmer(name, raw)
        except ImproperlyConfigured as exc:
            logger.error("cache warmer %r will not run: %s", name, exc)
        except Exception as exc:
            logger.error("cache warmer %r will not run: %s: %s", name, type(exc).__name__, exc)


def stop() -> None:
    """Stop this process's scheduler and cancel its runs (registered with ``atexit``)."""
    from django_cachewarmers.scheduler import WarmingScheduler

    scheduler = _scheduler
    if isinstance(scheduler, WarmingScheduler):
        scheduler.stop(timeout=5)


def _reset_after_fork() -> None:
    # Registered at import, so it runs before a ``start`` hook registered later by arm(): the
    # parent's lock may have been held by another thread at the fork, and its scheduler thread
    # does not exist here.
    global _lock, _scheduler
    _lock = threading.Lock()
    _scheduler = None


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)
