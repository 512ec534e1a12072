"""Rendering a page warmer's URLs on more than one core: forked render processes.

One Python process renders pages on one core at a time (the GIL): a ``render_page`` warm of many
pages is bound by it. ``render_processes(n)`` forks ``n`` render processes of this one (same
settings, URLconf, middleware and caches); while it is open, ``render_page`` (on the warmer's
``max_workers`` threads) hands each page to an idle render process and waits for its answer, and
this process only coordinates. A render process renders exactly as ``pages.render`` does here
and sends back the outcome of that one page: the exception that failed it, or where the page
cache keeps it. So a warm's stats, failed keys and their reasons, retries and read-back
(``pages.check_stored``, here, batched) are those of an in-process warm, and the run is recorded
once, here.

Forking: this thread's database connections are closed first (none is shared with a render
process; inside a transaction ``render_processes`` refuses), and a render process opens its own
cache clients and database connections (the ones it inherited are left unused and never closed
from it: a memcached socket written by two processes mixes their replies). A render process that
dies fails the page it was rendering; the next pages are rendered here. ``warm_cache
--render-processes N`` uses this; it needs ``os.fork`` (not on Windows).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from typing import Any

from asgiref.local import Local
from django.core.cache import caches
from django.db import connections

from django_cachewarmers import pages
from django_cachewarmers.backends import is_per_process

logger = logging.getLogger("django_cachewarmers")

#: Seconds a render process is given to exit after being told to.
_STOP_TIMEOUT_S = 5.0
#: Seconds between a waiting render process's checks that its parent is alive.
_PARENT_CHECK_S = 1.0
#: What a render process left behind in its parent's thread-local caches: kept, never closed.
_inherited: list[Any] = []


class RenderProcessError(Exception):
    """A render process failed a page with an exception that could not be sent back as it was:
    its type name and message."""


class RenderProcessesRefused(RuntimeError):
    """``render_processes`` cannot fork here (the message says why)."""


def fork_available() -> bool:
    """Whether this platform can fork render processes."""
    return hasattr(os, "fork") and "fork" in multiprocessing.get_all_start_methods()


def _serve(conn: Connection, parent_ends: list[Connection], parent: int) -> None:
    """A render process's loop: render each URL received, answer its outcome, until told to stop
    (None) or its parent is gone (``parent``: its pid)."""
    # The parent's ends of every pipe forked so far (this one's too) were inherited: closed
    # here, so that the parent's death ends each pipe (EOF) instead of leaving it open in here.
    for end in parent_ends:
        end.close()
    # The caches of the thread that forked are the parent's clients (sockets shared with it):
    # start with fresh ones, and keep the old ones referenced so nothing closes them from here.
    handler: Any
    for handler in (caches, connections):
        _inherited.append(handler._connections)  # Django's BaseConnectionHandler keeps them there
        handler._connections = Local(handler.thread_critical)
    while True:
        try:
            if not conn.poll(_PARENT_CHECK_S):
                if os.getppid() != parent:  # re-parented: the warm that forked us is gone
                    return
                continue
            url = conn.recv()
        except (EOFError, OSError):
            return
        if url is None:
            return
        try:
            pages.render(url)
        except Exception as exc:
            answer: tuple[Any, ...] = ("failed", _sendable(exc))
        else:
            answer = ("rendered", _sendable_record(pages.served_record(url)))
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


def _sendable(exc: Exception) -> Exception:
    """``exc`` when it survives pickling, else a ``RenderProcessError`` naming it."""
    try:
        return pickle.loads(pickle.dumps(exc))  # type: ignore[no-any-return]
    except Exception:
        return RenderProcessError(f"{type(exc).__name__}: {exc}")


def _sendable_record(record: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """A ``served_record`` without what cannot cross a pipe (the environ's error stream)."""
    if record is None:
        return None
    alias, key_prefix, environ, language, entries = record
    environ = {k: v for k, v in environ.items() if k != "wsgi.errors"}
    return (alias, key_prefix, environ, language, entries)


class _RenderProcesses:
    """The render processes of one ``render_processes`` block, and the slots renders take: an
    idle render process's connection, or None (render here: one that died, or after close)."""

    def __init__(self, answer_within: float) -> None:
        self.slots: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self.processes: list[tuple[Any, Connection]] = []
        self.closed = threading.Event()
        #: Seconds a render process has to answer for one page (the longest ``warmup_timeout``
        #: of the page warmers: by then the run that asked is over); then it is stopped.
        self.answer_within = answer_within
        #: The slots handed to a render now (``reclaim`` stops their processes).
        self.busy: set[Connection] = set()

    def start(self, count: int) -> None:
        """Fork ``count`` render processes."""
        context = multiprocessing.get_context("fork")
        for _ in range(count):
            parent_end, child_end = context.Pipe()
            inherited = [parent_end, *(end for _, end in self.processes)]
            process = context.Process(
                target=_serve, args=(child_end, inherited, os.getpid()), daemon=True
            )
            with warnings.catch_warnings():
                # Python >= 3.12 warns on fork() in a process with threads: a lock another thread
                # held stays held in the child. This package's module state resets itself after a
                # fork (core.forks), the render process only renders, and it opens its own cache
                # clients and database connections (_serve).
                warnings.filterwarnings(
                    "ignore",
                    message=r".*fork\(\) may lead to deadlocks",
                    category=DeprecationWarning,
                )
                process.start()
            child_end.close()
            self.processes.append((process, parent_end))
            self.slots.put(parent_end)

    def render(self, url: str) -> None:
        """Render ``url`` in the next free slot; raise what its render raised."""
        while True:
            try:
                slot = self.slots.get(timeout=0.5)
                break
            except queue.Empty:
                if self.closed.is_set():
                    slot = None
                    break
        if slot is None:
            try:
                pages.render(url)
            finally:
                self.slots.put(None)
            return
        gone = None
        self.busy.add(slot)
        try:
            slot.send(url)
            if slot.poll(self.answer_within):
                kind, payload = slot.recv()
            else:
                gone = f"no answer within {self.answer_within:g}s: stopped"
                self._stop(slot)
        except (EOFError, OSError) as exc:
            gone = type(exc).__name__
        finally:
            self.busy.discard(slot)
        if gone is not None:
            # The render process is gone (killed, or closed): this page fails, the next ones are
            # rendered here in its place. Raised outside the except block: the pipe's traceback
            # (frames holding its buffers) is not kept alive in a cycle with this exception.
            self.slots.put(None)
            raise pages.PageNotWarmed(f"{url}: its render process exited before answering ({gone})")
        self.slots.put(slot)
        if kind == "failed":
            raise payload
        if payload is None:
            return
        alias = payload[0]
        if is_per_process(caches[alias]):
            raise pages.PageNotWarmed(
                f"{url}: rendered in a render process, whose page cache {alias!r} "
                f"({type(caches[alias]).__name__}) is its own memory: this process's copy, the "
                "one its requests read, is not filled; use a shared cache (Redis, Memcached, "
                "database) as page cache, or no render processes"
            )
        environ = dict(payload[2], **{"wsgi.errors": sys.stderr})
        pages.record_served(url, (*payload[:2], environ, *payload[3:]))

    def reclaim(self) -> int:
        """Stop the render processes still rendering a page (a run that ended at its deadline
        left them busy with a render that hangs): their pages fail, the next pages render here.
        Returns how many were stopped."""
        busy = list(self.busy)
        for slot in busy:
            self._stop(slot)
        return len(busy)

    def _stop(self, slot: Connection) -> None:
        """Kill the render process at the other end of ``slot`` (its render hangs); its slot
        becomes None: the next pages render here."""
        for process, conn in self.processes:
            if conn is slot and process.is_alive():
                process.kill()
                process.join(_STOP_TIMEOUT_S)

    def close(self) -> None:
        self.closed.set()
        for _, conn in self.processes:
            with suppress(EOFError, OSError):
                conn.send(None)
        for process, conn in self.processes:
            process.join(_STOP_TIMEOUT_S)
            if process.is_alive():  # a render that hangs: its page already failed by deadline
                process.kill()
                process.join()
            conn.close()


_lock = threading.Lock()
_pool: _RenderProcesses | None = None


def reclaim_busy() -> int:
    """After a warmer's run inside ``render_processes``: stop the render processes still busy
    with one of its pages (a render that hangs past the run's deadline), so the next warmer's
    pages do not wait for them (they render here instead). Returns how many were stopped."""
    pool = _pool
    return 0 if pool is None else pool.reclaim()


def _answer_within() -> float:
    """The longest ``warmup_timeout`` of the declared page warmers (60 s without any)."""
    from django_cachewarmers.parsing import get_specs

    timeouts = [
        spec.config.warmup_timeout_s
        for spec in get_specs().values()
        if pages.renders_pages(spec.loader)
    ]
    return max(timeouts, default=60.0)


@contextmanager
def render_processes(count: int) -> Iterator[None]:
    """Render the pages of ``render_page`` warmers run in this process on ``count`` render
    processes while the block runs: forked on entry, stopped on exit (a render still running
    then is killed after 5 seconds).

    ``count`` 0 changes nothing (pages render here). Raises ``ValueError`` for a negative
    ``count``; ``RenderProcessesRefused`` (a ``RuntimeError``) where ``os.fork`` is missing,
    inside a database transaction of this thread (its connection is closed before forking), or
    inside another ``render_processes`` block. Render processes keep the settings of the moment
    they forked. Each thread calling ``render_page`` (a warmer's ``max_workers``) keeps one render
    process busy at a time. Fork from a thread whose process has no other thread holding a
    database connection (``warm_cache`` forks before its first warm): another thread's connection
    is inherited, and freed in the render process, which some drivers close there (psycopg does
    not: it checks the process id).
    """
    global _pool
    if count < 0:
        raise ValueError(f"count: 0 or more, got {count}")
    if count == 0:
        yield
        return
    if not fork_available():
        raise RenderProcessesRefused("rendering pages in render processes needs os.fork()")
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            raise RenderProcessesRefused(
                f"cannot fork render processes inside a transaction (database {connection.alias!r})"
            )
    with _lock:
        if pages._render_elsewhere is not None:
            raise RenderProcessesRefused("render processes are already running in this process")
        connections.close_all()  # no connection of this thread is shared with a render process
        pool = _RenderProcesses(_answer_within())
        try:
            pool.start(count)
        except BaseException:
            pool.close()  # the ones already started
            raise
        pages._render_elsewhere = pool.render
        _pool = pool
    try:
        yield
    finally:
        with _lock:
            pages._render_elsewhere = None
            _pool = None
        pool.close()
