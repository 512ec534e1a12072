"""A coalescing queue of changed keys: collected per name for a window, de-duplicated, bounded,
then handed to a flush function on a background thread of its own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

logger = logging.getLogger("django_cachewarmers")

#: What to do with a changed key: write its new value, or delete it (its source is gone).
Op = Literal["write", "delete"]
WRITE: Final[Op] = "write"
DELETE: Final[Op] = "delete"

#: The longest the thread sleeps while a batch waits for its window: a flush asked for from a
#: signal handler (``request_flush``, which takes no lock) is seen within this many seconds.
POLL_S: Final = 0.1


@dataclass
class Batch:
    """The keys of one name collected since the batch's first change, each with its last op."""

    due: float  # time.monotonic() at which the batch is flushed
    ops: dict[Hashable, Op] = field(default_factory=dict)


class CoalescingQueue:
    """Changed keys per name, flushed together once their batch's window has passed.

    ``add(name, keys, op, delay)`` puts keys into the batch of ``name``; the first change of a
    batch opens its window (``delay`` seconds) and later changes never move it. A key already in
    the batch is not added twice: its last op wins. At most ``max_keys()`` keys wait (all names
    together); a change beyond that is dropped and counted, and ``on_full(name, dropped)`` is
    called once each time the queue fills up. A daemon thread, started by the first ``add``,
    calls ``flush(name, ops)`` for each batch that is due, one batch at a time; a batch taken for
    flushing leaves the queue, so changes arriving during a flush open a new batch. An exception
    of ``flush`` is logged, and the thread goes on.

    ``flush_now(timeout)`` flushes every batch at once (ignoring windows) and waits for it;
    ``request_flush()`` asks for the same without a lock or a wait (from a signal handler).
    """

    def __init__(
        self,
        flush: Callable[[str, dict[Hashable, Op]], object],
        max_keys: Callable[[], int],
        *,
        on_full: Callable[[str, int], object] | None = None,
        thread_name: str = "coalescing-queue",
        after_flush: Callable[[], object] | None = None,
    ) -> None:
        self._flush = flush
        self._max_keys = max_keys
        self._on_full = on_full
        self._after_flush = after_flush
        self._thread_name = thread_name
        self.reset()

    def reset(self) -> None:
        """Forget every batch and the thread (call it in a forked child, where neither exists)."""
        self._cond = threading.Condition(threading.Lock())
        self._batches: dict[str, Batch] = {}
        self._size = 0
        self._in_flight = 0
        self._urgent = False
        self._full = False
        self._thread: threading.Thread | None = None
        #: Keys dropped because the queue was full, since the process started.
        self.dropped = 0
        #: Batches handed to ``flush``, since the process started.
        self.flushes = 0

    # -- producers ----------------------------------------------------------------------------

    def add(self, name: str, keys: Iterable[Hashable], op: Op, delay: float) -> int:
        """Queue ``keys`` of ``name`` (``op``: write or delete); how many were accepted."""
        limit = self._max_keys()
        accepted = dropped = 0
        first_drop = False
        with self._cond:
            batch = self._batches.get(name)
            if batch is None:
                batch = Batch(due=time.monotonic() + delay)
            ops = batch.ops
            for key in keys:
                if key in ops:
                    ops[key] = op
                    accepted += 1
                elif self._size >= limit:
                    dropped += 1
                else:
                    ops[key] = op
                    self._size += 1
                    accepted += 1
            if ops:
                self._batches[name] = batch
            if dropped:
                self.dropped += dropped
                first_drop, self._full = not self._full, True
            self._start_thread()
            self._cond.notify_all()
        if first_drop and self._on_full is not None:
            self._on_full(name, dropped)
        return accepted

    # -- state --------------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """How many keys wait, by name (not counting a batch being flushed)."""
        with self._cond:
            return {name: len(batch.ops) for name, batch in self._batches.items()}

    def pending_unlocked(self) -> dict[str, int]:
        """``pending()`` read without the lock (for a signal handler): a moment's view."""
        return {name: len(batch.ops) for name, batch in list(self._batches.items())}

    @property
    def busy(self) -> bool:
        """Whether a key waits or a flush is in progress (read without a lock)."""
        return bool(self._batches) or self._in_flight > 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no key waits and no flush runs (windows are kept); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._batches or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def flush_now(self, timeout: float | None = None) -> bool:
        """Flush every waiting batch now, whatever its window, and wait at most ``timeout``
        seconds for it (and any flush in progress); True when nothing is left."""
        with self._cond:
            if not self._batches and not self._in_flight:
                return True
            self._urgent = True
            if self._batches:
                self._start_thread()
            self._cond.notify_all()
        try:
            return self.wait_idle(timeout)
        finally:
            self._urgent = False

    def request_flush(self) -> None:
        """Ask the thread to flush every batch now; takes no lock, so a signal handler may call
        it even if it interrupted a thread holding the queue's lock. Seen within ``POLL_S``."""
        self._urgent = True

    # -- the thread ---------------------------------------------------------------------------

    def _start_thread(self) -> None:
        # Called with the lock held.
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                taken = self._take_due()
                try:
                    for name, batch in taken:
                        self._flush_one(name, batch)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()
                    if self._after_flush is not None:
                        self._after_flush()
            except Exception:  # pragma: no cover - _flush_one logs its own errors
                logger.exception("%s: unexpected error", self._thread_name)

    def _take_due(self) -> list[tuple[str, Batch]]:
        """Wait until a batch is due; take every due batch out of the queue."""
        with self._cond:
            while True:
                if not self._batches:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                urgent = self._urgent
                due = [n for n, b in self._batches.items() if urgent or b.due <= now]
                if due:
                    break
                first = min(b.due for b in self._batches.values())
                self._cond.wait(min(first - now, POLL_S))
            taken = [(name, self._batches.pop(name)) for name in due]
            self._size -= sum(len(batch.ops) for _, batch in taken)
            self._in_flight += 1
            if self._full and self._size < self._max_keys():
                self._full = False
            return taken

    def _flush_one(self, name: str, batch: Batch) -> None:
        self.flushes += 1
        try:
            self._flush(name, batch.ops)
        except Exception:
            logger.exception(
                "%s: flushing %d changed keys of %s failed", self._thread_name, len(batch.ops), name
            )
