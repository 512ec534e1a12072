"""Single-flight in one process: concurrent calls for one key share the first caller's result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

V = TypeVar("V")


class _Call(Generic[V]):
    __slots__ = ("done", "error", "value", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight(Generic[V]):
    """At most one call of ``fn`` per key at a time in this process (Go's ``singleflight``).

    ``do(key, fn)`` runs ``fn()`` when no call for ``key`` is in flight; a call made while one is
    waits for it and gets its result, or raises the same exception object. A waiter waits at most
    ``wait`` seconds (None: as long as it takes), then runs ``fn()`` itself rather than hang on a
    call that does not end. Thread-safe; ``reset()`` in a forked child (none of the parent's calls
    exists there).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every call in flight and replace the lock (a forked child's may be held)."""
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[V]] = {}

    def in_flight(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is running now."""
        return key in self._calls

    def waiters(self, key: Hashable) -> int:
        """How many callers wait for the call for ``key`` in flight (0 when none is)."""
        call = self._calls.get(key)
        return 0 if call is None else call.waiters

    def do(self, key: Hashable, fn: Callable[[], V], wait: float | None = None) -> V:
        """``fn()``'s result, shared with every concurrent caller of the same ``key``."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
            else:
                call.waiters += 1
        if not leader:
            if not call.done.wait(wait):
                return fn()  # the call in flight outlived ``wait``: do not hang on it
            if call.error is not None:
                raise call.error
            return call.value  # type: ignore[no-any-return]
        try:
            call.value = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                if self._calls.get(key) is call:
                    del self._calls[key]
            call.done.set()
        return call.value  # type: ignore[no-any-return]
