"""Background threads, one per name at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ThreadPerName:
    """Daemon threads keyed by name: a new one starts only once the last one of its name ended.

    ``reset()`` forgets every thread (call it in a forked child, where none of them exists).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every thread and replace the lock (a forked child's lock may be held)."""
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def start(
        self, name: str, target: Callable[..., object], *args: object, thread_name: str
    ) -> bool:
        """Start ``target(*args)`` as ``name``; False (starting nothing) while the last is alive."""
        with self._lock:
            previous = self._threads.get(name)
            if previous is not None and previous.is_alive():
                return False
            thread = threading.Thread(target=target, args=args, name=thread_name, daemon=True)
            self._threads[name] = thread
            thread.start()
        return True

    def is_alive(self, name: str) -> bool:
        """Whether the last thread started as ``name`` is still running."""
        with self._lock:
            thread = self._threads.get(name)
        return thread is not None and thread.is_alive()

    def alive(self) -> dict[str, threading.Thread]:
        """The threads still running, by name."""
        with self._lock:
            return {name: t for name, t in self._threads.items() if t.is_alive()}

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every thread (at most ``timeout`` seconds in all); True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = [t for t in self.alive().values() if t is not threading.current_thread()]
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)
