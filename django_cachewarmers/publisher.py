"""This process's publisher thread: it shares the trackers' counts with the cluster.

Every ``CACHE_WARMERS_SNAPSHOT_INTERVAL`` seconds (off the request path, also when nothing
changed) it publishes each tracker's top keys with their counts under an expiring key of its own
in the shared snapshot cache (``hotkeys`` reads them back), and every
``CACHE_WARMERS_PERSIST_INTERVAL`` seconds, and at a clean shutdown, it saves the hot set to the
database (``hotkeys.persist``). It starts with the process's first tracker.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
import time
import zlib
from collections.abc import Hashable

from django.core.cache import caches
from django.db import close_old_connections, connections

from django_cachewarmers import claims, reads, readstats
from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.hotkeys import (
    MAX_KEY_LENGTH,
    SLOTS,
    SNAPSHOT_VERSION,
    persist,
    slot_key,
    snapshot_ttl,
)
from django_cachewarmers.pages import renders_pages
from django_cachewarmers.parsing import get_specs
from django_cachewarmers.process import running_tests
from django_cachewarmers.tracking import all_trackers, on_tracker_created

__all__ = ["Publisher", "ensure_publisher"]

logger = logging.getLogger("django_cachewarmers")


class Publisher:
    """This process's publisher thread: snapshots every interval, the hot set now and then."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._slots: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._last_persist = time.monotonic()
        #: Failed attempts in a row (an outage is logged once, when it starts).
        self._failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cachewarmer-hotkeys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end (after ``stop``)."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(conf.SNAPSHOT_INTERVAL or 1.0):
            try:
                # Count what the request path left in the backlogs, also when only persisting, so
                # a count lands (and is timed) within this interval even in a quiet process.
                for tracker in all_trackers().values():
                    tracker.flush()
                close_old_connections()
                sync_read_owners()
                save_reads()
                if conf.SNAPSHOT_INTERVAL > 0:
                    self.publish_all()
                interval = conf.PERSIST_INTERVAL
                if interval > 0 and time.monotonic() - self._last_persist >= interval:
                    self._last_persist = time.monotonic()
                    for name in all_trackers():
                        persist(name, claim=True)
            except Exception as exc:
                self._failed(exc)
            else:
                self._succeeded()
            finally:
                connections.close_all()

    def _failed(self, exc: Exception) -> None:
        # An outage of the snapshot cache (Redis down) fails every attempt until it ends: one
        # warning line per outage, not a traceback every interval; the details are at DEBUG.
        self._failures += 1
        if self._failures == 1:
            logger.warning(
                "hot keys: publishing failed (%s); retrying every %gs, quietly until it works",
                " ".join(f"{type(exc).__name__}: {exc}".split()),
                conf.SNAPSHOT_INTERVAL or 1.0,
            )
        logger.debug("hot keys: publishing failed", exc_info=exc)

    def _succeeded(self) -> None:
        if self._failures:
            logger.info("hot keys: publishing again after %d failed attempts", self._failures)
            self._failures = 0

    def publish_all(self) -> None:
        for name, tracker in all_trackers().items():
            self.publish(name, tracker.top(conf.SNAPSHOT_SIZE))
        readstats.publish()  # the read path's counts per warmer, shared the same way

    def publish(self, tracker: str, top: list[tuple[Hashable, int]]) -> bool:
        """Write this process's snapshot of ``tracker``; False if no slot could be had."""
        cache = caches[conf.SNAPSHOT_CACHE]
        record = {
            "v": SNAPSHOT_VERSION,
            "tracker": tracker,
            "owner": claims.OWNER,
            "at": time.time(),
            "items": [
                [key, int(count)]
                for key, count in top
                if isinstance(key, str) and len(key) <= MAX_KEY_LENGTH and count >= 1
            ],
        }
        ttl = snapshot_ttl()
        slot = self._slots.get(tracker)
        if slot is not None:
            current = cache.get(slot_key(tracker, slot))
            if current is None or (
                isinstance(current, dict) and current.get("owner") == claims.OWNER
            ):
                cache.set(slot_key(tracker, slot), record, ttl)
                return True
            del self._slots[tracker]  # our slot expired and another process took it
        start = zlib.crc32(claims.OWNER.encode()) % SLOTS
        for offset in range(SLOTS):
            slot = (start + offset) % SLOTS
            if cache.add(slot_key(tracker, slot), record, ttl):
                self._slots[tracker] = slot
                return True
        logger.warning("hot keys: all %d snapshot slots of %r are taken", SLOTS, tracker)
        return False


_lock = threading.Lock()
_publisher: Publisher | None = None


def ensure_publisher(*, reads_counted: bool = False) -> None:
    """Start this process's publisher thread once (not under tests: they start it themselves).

    Without snapshots and persistence (both intervals 0) it starts only to save read counts
    (``reads_counted``: the process counted a read), waking every second."""
    global _publisher
    if _publisher is not None and _publisher.running:
        return
    if conf.SNAPSHOT_INTERVAL <= 0 and conf.PERSIST_INTERVAL <= 0 and not reads_counted:
        return
    if running_tests(sys.argv, os.environ):
        return
    with _lock:
        if _publisher is not None and _publisher.running:
            return
        _publisher = Publisher()
        _publisher.start()
    atexit.register(_persist_at_exit)


on_tracker_created(ensure_publisher)
reads.on_first_read(functools.partial(ensure_publisher, reads_counted=True))

#: Seconds between two syncs of the read attributions that do something (the thread wakes more
#: often).
SYNC_INTERVAL = 5.0
_last_sync = -SYNC_INTERVAL


def sync_read_owners(*, shared: bool = True, force: bool = False) -> None:
    """Bring ``reads``' attributions up to date with ``CACHE_WARMERS``: fixed key lists are
    known without a run; with ``shared``, other warmers' keys come from the last run any process
    shared in the snapshot cache (raises what that cache raises)."""
    global _last_sync
    if shared and not force:
        if time.monotonic() - _last_sync < SYNC_INTERVAL:
            return
        _last_sync = time.monotonic()
    specs = get_specs()
    reads.seed(
        {
            name: (spec.keys, renders_pages(spec.loader))
            for name, spec in specs.items()
            if isinstance(spec.keys, tuple)
        }
    )
    if shared:
        reads.refresh_owners(
            name for name, spec in specs.items() if not isinstance(spec.keys, tuple)
        )


reads.on_sync(lambda: sync_read_owners(shared=False))

#: ``get()``'s counts (``readstats``) already handed to ``reads``, by warmer.
_handed_over: dict[str, dict[str, int]] = {}
_GET_RESULTS = (("hits", reads.HIT), ("misses", reads.MISS), ("stale", reads.STALE))


#: Seconds the exit waits for the background thread to end its round.
_EXIT_JOIN_S = 5.0
#: One save of the reads at a time: the thread's, or the exit's.
_save_lock = threading.Lock()


def save_reads() -> int:
    """Hand ``get()``'s counts to ``reads`` and write the reads (``reads.flush``); one caller at
    a time (the background thread, or the exit). Returns how many were written."""
    with _save_lock:
        hand_over_get_reads()
        return reads.flush()


def hand_over_get_reads() -> None:
    """Give ``reads`` (hit ratios over time, Prometheus) what ``get()`` counted since the last
    call: its counters are this process's totals since it started."""
    delta: dict[tuple[str, str], int] = {}
    counted = readstats.local_counts()
    for name in [name for name in _handed_over if name not in counted]:
        del _handed_over[name]  # its counters were reset (readstats.reset)
    for name, totals in counted.items():
        before = _handed_over.get(name, {})
        for event, result in _GET_RESULTS:
            base = before.get(event, 0)
            if totals[event] < base:  # the counters were reset (readstats.reset)
                base = 0
            grown = totals[event] - base
            if grown > 0:
                delta[(name, result)] = grown
        _handed_over[name] = totals
    if delta:
        reads.count_many(delta)


def _persist_at_exit() -> None:
    # A clean shutdown (gunicorn's SIGTERM, Ctrl+C) saves what this process knows of the hot set.
    if _publisher is not None:
        _publisher.stop()
        _publisher.join(_EXIT_JOIN_S)  # its own save of the reads, if under way, ends first
    try:
        save_reads()
    except Exception as exc:
        logger.warning(
            "read counts: could not save this process's last reads at exit: %s",
            " ".join(f"{type(exc).__name__}: {exc}".split()),
        )
    if conf.PERSIST_INTERVAL <= 0:
        return
    for name in all_trackers():
        try:
            persist(name, claim=False)
        except Exception:
            logger.exception("hot keys: could not save the hot set of %r at exit", name)
    connections.close_all()


@after_fork_in_child
def _reset_after_fork() -> None:
    global _lock, _publisher, _save_lock
    _lock = threading.Lock()
    _save_lock = threading.Lock()
    _publisher = None
    _handed_over.clear()
