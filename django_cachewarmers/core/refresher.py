"""Background refreshes: a few daemon threads, at most one task per key, a bounded backlog."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["Refresher"]

logger = logging.getLogger("django_cachewarmers")


class Refresher:
    """Runs ``task()`` for a key on a daemon thread, never blocking the caller.

    At most one task per key is queued or running (``submit`` of a key already in there is
    ignored), at most ``max_pending`` keys wait at once (more are dropped: a later stale read asks
    again), on at most ``max_threads`` threads, which exit after ``idle_timeout`` seconds without
    work and call ``on_thread_exit()`` as they do. A task's exception is logged, never raised.
    """

    def __init__(
        self,
        name: str,
        *,
        max_threads: int = 4,
        max_pending: int = 1000,
        idle_timeout: float = 10.0,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        if max_threads < 1 or max_pending < 1:
            raise ValueError("max_threads and max_pending must be >= 1")
        self.name = name
        self.max_threads = max_threads
        self.max_pending = max_pending
        self.idle_timeout = idle_timeout
        self._on_thread_exit = on_thread_exit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: set[Hashable] = set()
        self._queue: deque[tuple[Hashable, Callable[[], object]]] = deque()
        self._threads = 0
        self._idle = 0

    def submit(self, key: Hashable, task: Callable[[], object]) -> bool:
        """Queue ``task`` for ``key``; False when one is already queued or running for it, or
        the backlog is full."""
        if key in self._pending:  # the cheap answer for the many stale reads of one hot key
            return False
        with self._lock:
            if key in self._pending or len(self._pending) >= self.max_pending:
                return False
            self._pending.add(key)
            self._queue.append((key, task))
            if self._idle > len(self._queue) - 1:
                self._wake.notify()
            elif self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"cachewarmer[{self.name}]-refresh", daemon=True
                ).start()
        return True

    def pending(self, key: Hashable) -> bool:
        """Whether a task for ``key`` is queued or running."""
        return key in self._pending

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task is queued or running (at most ``timeout`` seconds); True if so."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue:
                        self._idle += 1
                        self._wake.wait(self.idle_timeout)
                        self._idle -= 1
                        if not self._queue:
                            self._threads -= 1
                            return
                    key, task = self._queue.popleft()
                try:
                    task()
                except Exception:
                    logger.exception("cache warmer %s: a background refresh failed", self.name)
                finally:
                    with self._lock:
                        self._pending.discard(key)
        finally:
            if self._on_thread_exit is not None:
                try:
                    self._on_thread_exit()
                except Exception:
                    logger.debug("cache warmer %s: on_thread_exit failed", self.name, exc_info=True)
