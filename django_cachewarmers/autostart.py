"""Warming at server start: in every process that serves requests, and in no other.

``AppConfig.ready()`` calls ``arm()``. It touches no database. It decides from facts of this process
(its command line, the server code loading the application, the modules only a server embeds),
never from environment variables inherited from a parent or from a module that merely got imported:

- a known server starts warming at once (``detect()``): ``runserver``'s autoreloader child (or
  ``--noreload``), each gunicorn worker (after the fork when the master preloads the application),
  each uWSGI worker (after the fork), uvicorn, daphne, hypercorn, granian, ``waitress-serve``,
  cheroot and mod_wsgi processes;
- any other process arms at its first request (``request_started``, sent by every Django WSGI and
  ASGI handler), on a background thread, so the request is not delayed;
- ``start()`` is the explicit hook for a server's own post-fork or lifespan handler.

Never in pytest's own process (pytest-django's ``live_server`` included) or ``manage.py test``,
never for in-process requests (Django's test ``Client``, ``render_page``), never in the
autoreloader's parent or in other management commands, which serve no requests.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.signals import request_started

from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.process import detect, in_process_request, running_tests

logger = logging.getLogger("django_cachewarmers")

_lock = threading.Lock()
_armed = False  # arm() ran in this interpreter
_settled = False  # this process started warming, or its first request found it must not
_start_requested = False  # start() was called before the apps were ready
_scheduler: object | None = None  # a WarmingScheduler, imported lazily


def arms_on_request(
    sender: object,
    environ: Mapping[str, Any] | None,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    modules: Mapping[str, object] | None = None,
) -> bool:
    """Whether a request (``request_started``'s sender, and its WSGI environ if any) arms warming
    in a process that has not started it: a real request, outside a test run, with autostart on."""
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    return (
        not in_process_request(sender, environ)
        and not running_tests(argv, env, modules)
        and bool(conf.AUTOSTART)
    )


def _on_request_started(sender: object, **kwargs: Any) -> None:
    # Runs at the start of every request of every handler: one bool once this process settled.
    if _settled:
        return
    environ = kwargs.get("environ")
    if in_process_request(sender, environ):
        return  # decides nothing: a real request may follow
    try:
        arms = not running_tests(sys.argv, os.environ) and bool(conf.AUTOSTART)
        if _settle() and arms:
            # get_specs() and the scheduler's start are not this request's work.
            threading.Thread(
                target=_start_in_background, name="cachewarmer-autostart", daemon=True
            ).start()
    except Exception:
        # request_started is sent without send_robust: nothing here may fail the request.
        logger.exception("cache warming could not start at this process's first request")


def _settle() -> bool:
    """Mark this process settled; True for the one caller that did it (concurrent requests)."""
    global _settled
    with _lock:
        first, _settled = not _settled, True
    return first


def _start_in_background() -> None:
    try:
        _start("its first request")
    except Exception:
        logger.exception("cache warming could not start")


def arm() -> None:
    """From ``AppConfig.ready()``: start warming here, or after the fork, if this process serves;
    otherwise at its first request. Idempotent: only the first call in a process does anything."""
    global _armed
    with _lock:
        if _armed:
            return
        _armed = True
    if running_tests(sys.argv, os.environ):
        return  # its requests are the test Client's or live_server's: no safety net either
    request_started.connect(_on_request_started, dispatch_uid="django_cachewarmers.autostart")
    if _start_requested:  # start() was called before Django was set up (gunicorn's post_fork)
        _start("start()")
        return
    if not conf.AUTOSTART:
        return
    kind = detect(frame=sys._getframe())
    if kind is None:
        return
    logger.debug("cache warming armed for this %s process", kind)
    if kind == "gunicorn-master":
        # Threads do not survive fork(): each worker starts its own after the fork.
        after_fork_in_child(_start_after_fork)
        return
    if kind == "uwsgi" and _uwsgi_master_defers():
        return
    _start(kind)


def _start_after_fork() -> None:
    _start("the fork")


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

        postfork(_start_after_fork)
    except ImportError:
        uwsgi.post_fork_hook = _start_after_fork
    return True


def start() -> None:
    """Start warming in this process: the startup warms, then the scheduler thread (once per
    process; a second call starts nothing).

    The public hook for a server's own start-up code, called in each process that serves requests
    after any fork: gunicorn's ``post_worker_init`` or ``post_fork``, uWSGI's ``postfork``, an ASGI
    lifespan ``startup`` handler, a server of your own. It runs whatever
    ``CACHE_WARMERS_AUTOSTART`` says (with ``False``, only this call and ``warm_cache --schedule``
    start anything). Called before Django is set up, it starts when the apps are ready. Does
    nothing in pytest's own process or under ``manage.py test``.
    """
    global _start_requested
    if running_tests(sys.argv, os.environ):
        logger.debug("cache warming not started: this process runs tests")
        return
    from django.apps import apps

    if not apps.models_ready:
        _start_requested = True  # arm(), from AppConfig.ready(), starts it
        return
    _start("start()")


def _start(reason: str) -> None:
    global _scheduler, _settled
    from django_cachewarmers.parsing import get_specs
    from django_cachewarmers.scheduler import WarmingScheduler

    _settled = True  # the first request's safety net has nothing left to do here
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
    logger.debug("cache warming started by %s", reason)


def _report_invalid_warmers(valid: Mapping[str, object]) -> None:
    # Servers other than runserver run no system checks: name what will not run, once, clearly.
    from django.core.exceptions import ImproperlyConfigured

    from django_cachewarmers.parsing import parse_warmer

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


@after_fork_in_child
def _reset_after_fork() -> None:
    # Registered at import, so it runs before a start hook registered later by arm(): the
    # parent's lock may have been held by another thread at the fork, its scheduler thread does
    # not exist here, and this process has not started warming (its first request may arm it).
    global _lock, _scheduler, _settled
    _lock = threading.Lock()
    _scheduler = None
    _settled = False
