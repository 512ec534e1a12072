"""``get(name, key)`` and ``aget(name, key)``: read a declared warmer's key through its cache.

The Django side of ``core.readthrough``: it finds the warmer declared as ``name`` in
``CACHE_WARMERS`` (``registry``), and gives it one ``ReadThrough`` per process, built on first
use and rebuilt when the settings change or the process forks. Each thread reads through a cache
object of its own for the warmer's cache alias (``caches.create_connection``); background refresh
threads replace a broken database connection before each load and close theirs as they exit, as
the warming threads do.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Hashable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import close_old_connections, connections
from django.dispatch import receiver

from django_cachewarmers import readstats
from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.readthrough import ReadThrough
from django_cachewarmers.pages import renders_pages
from django_cachewarmers.publisher import ensure_publisher
from django_cachewarmers.registry import get_entry

__all__ = ["aget", "get", "reader", "reset"]

_lock = threading.Lock()
_readers: dict[str, ReadThrough] = {}
#: Per event loop: the ``aget`` calls in flight, by (warmer, key).
_async_flights: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, Hashable], asyncio.Future[Any]]
] = weakref.WeakKeyDictionary()


def reader(name: str) -> ReadThrough:
    """The ``ReadThrough`` of warmer ``name`` in this process.

    Raises ``UnknownWarmer`` / ``ImproperlyConfigured`` for a warmer that is not declared or not
    valid, and ``ValueError`` for a ``render_page`` warmer, whose loader stores pages itself.
    """
    found = _readers.get(name)
    if found is not None:
        return found
    spec, warmer = get_entry(name)
    if renders_pages(spec.loader):
        raise ValueError(
            f"cache warmer {name}: it renders pages into the page cache (render_page); get() "
            "reads warmers whose loader returns the value"
        )
    with _lock:
        found = _readers.get(name)
        if found is None:
            alias = spec.cache
            found = _readers[name] = ReadThrough(
                name,
                lambda: caches.create_connection(alias),
                warmer.value_loader,
                spec.config,
                fresh_for=spec.fresh_for,
                prefix=conf.KEY_PREFIX,
                counts=readstats.counts(name),
                before_load=close_old_connections,
                on_thread_exit=connections.close_all,
            )
    # The counts are shared with the cluster like the hot set, and saved per minute (``reads``).
    ensure_publisher(reads_counted=True)
    return found


def get(name: str, key: Any) -> Any:
    """The value of ``key`` in warmer ``name``'s cache, loaded and written on a miss.

    See ``django_cachewarmers.get``. Raises ``UnknownWarmer``, ``ImproperlyConfigured``,
    ``ValueError`` (a key a warm would refuse), ``NoValue`` (the loader gave None) or the loader's
    own exception on a miss it could not load.
    """
    found = _readers.get(name)
    return (found if found is not None else reader(name)).get(key)


def _read_in_thread(found: ReadThrough, key: Any) -> Any:
    # A worker thread of asgiref's, not a request's: no request_started/finished closes the
    # database connections a loader opens here, so do what they do, before and after.
    close_old_connections()
    try:
        return found.get(key)
    finally:
        close_old_connections()


async def aget(name: str, key: Any) -> Any:
    """``get(name, key)`` for async code: the read (and a load on a miss) runs on a worker
    thread (asgiref's ``sync_to_async(thread_sensitive=False)``), never on the event loop.

    Concurrent ``aget`` calls of one key in one event loop share one thread's call: a load blocks
    one worker thread, not one per caller. A caller that is cancelled does not cancel the others.
    Raises what ``get`` raises; ``UnknownWarmer`` and ``ValueError`` before any thread is used.
    """
    found = _readers.get(name)
    if found is None:
        found = reader(name)
    found.check_key(key)
    loop = asyncio.get_running_loop()
    flights = _async_flights.get(loop)
    if flights is None:
        flights = _async_flights[loop] = {}
    flight_key = (name, key)
    flight = flights.get(flight_key)
    if flight is None:
        flight = asyncio.ensure_future(
            sync_to_async(_read_in_thread, thread_sensitive=False)(found, key)
        )
        flights[flight_key] = flight

        def done(future: asyncio.Future[Any]) -> None:
            if flights.get(flight_key) is future:
                del flights[flight_key]
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning when all left

        flight.add_done_callback(done)
    return await asyncio.shield(flight)


def reset() -> None:
    """Forget every reader (the next ``get`` builds it anew)."""
    with _lock:
        _readers.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHE_WARMERS", "CACHES") or setting.startswith("CACHE_WARMERS_"):
        reset()


@after_fork_in_child
def _forget_after_fork() -> None:
    # The parent's connections, threads and calls in flight do not exist here.
    global _lock
    _lock = threading.Lock()
    _readers.clear()
    _async_flights.clear()
