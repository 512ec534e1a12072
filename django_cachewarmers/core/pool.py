"""The engine's worker threads and one run's shared state."""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from django_cachewarmers.core.stats import WarmingStats

logger = logging.getLogger("django_cachewarmers")

#: Seconds an idle worker thread waits for a task before it exits.
IDLE_TIMEOUT_S = 5.0


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, "equal jitter".

    The delay lies in ``[d/2, d]`` with ``d = min(cap, base * 2**(attempt-1))``, so successive
    delays never shrink while concurrent retries still spread out.
    """
    ceiling: float = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


class Run:
    """One in-flight warm: its cancellation flag, its result channel and its outcome."""

    def __init__(
        self,
        request: tuple[Hashable, ...] | None,
        progress: Callable[[int, int], object] | None = None,
    ) -> None:
        self.request = request
        self.progress = progress
        self.cancelled = threading.Event()
        self.cancel_reason = "cancelled"
        self.done = threading.Event()
        # Workers append results here (deque appends are atomic); the collector pops them. A result
        # appended before a loader hangs is still collected when the deadline cuts the run short.
        self.results: deque[tuple[Any, ...]] = deque()
        # Each worker's chunk of loaded keys not handed over to ``results`` yet: (keys, values),
        # by worker. A run cut short takes them from here (``Collector._take_open_chunks``).
        self.open_chunks: dict[int, tuple[list[Hashable], list[Any]]] = {}
        # Tells the collector to look at ``results`` now rather than at its next poll.
        self.wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self.stats: WarmingStats | None = None
        self.error: BaseException | None = None

    def cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()
            self.wake.put(True)

    def outcome(self) -> WarmingStats:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


class WorkerPool:
    """Daemon worker threads for one warmer, never more than ``max_workers`` alive at once.

    A loader that hangs keeps its thread; since the cap counts it, scheduled runs cannot pile up
    threads behind it, and a finished run takes back the tasks no thread got to (``discard``), so
    they cannot pile up either. Idle threads exit after ``idle_timeout`` seconds, calling
    ``on_thread_exit`` (the Django layer closes the thread's database connections there).
    """

    def __init__(
        self,
        name: str,
        max_workers: int,
        idle_timeout: float = IDLE_TIMEOUT_S,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.on_thread_exit = on_thread_exit
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[tuple[object, Callable[[], None]]] = deque()
        self._alive = 0
        self._idle = 0
        self._spawned = 0

    @property
    def alive(self) -> int:
        """Worker threads currently alive (busy or idle)."""
        return self._alive

    @property
    def queued(self) -> int:
        """Tasks waiting for a thread."""
        return len(self._tasks)

    def submit_many(self, owner: object, tasks: Sequence[Callable[[], None]]) -> None:
        """Queue ``tasks`` (on behalf of ``owner``, a run) and start threads for them if needed."""
        with self._cond:
            self._tasks.extend((owner, task) for task in tasks)
            wanted = len(self._tasks) - self._idle
            spawn = max(0, min(self.max_workers - self._alive, wanted))
            self._alive += spawn
            names = [f"cachewarmer[{self.name}]-{self._spawned + i + 1}" for i in range(spawn)]
            self._spawned += spawn
            self._cond.notify(len(tasks))
        for name in names:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def discard(self, owner: object) -> int:
        """Drop the queued tasks of ``owner``; returns how many."""
        with self._cond:
            before = len(self._tasks)
            self._tasks = deque(item for item in self._tasks if item[0] is not owner)
            return before - len(self._tasks)

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._tasks:
                        self._idle += 1
                        woken = self._cond.wait(self.idle_timeout)
                        self._idle -= 1
                        if not woken and not self._tasks:
                            self._alive -= 1
                            return
                    _, task = self._tasks.popleft()
                task()
        finally:
            if self.on_thread_exit is not None:
                try:
                    self.on_thread_exit()
                except Exception:
                    logger.exception("cache warmer %s: thread exit hook failed", self.name)
