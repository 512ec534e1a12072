"""Loaders for the read-path tests (``get``/``aget``), by dotted path, in this process or in
subprocesses.

``SOURCE`` is this process's data source: a test sets its values, can make it fail or hold each
load until ``release`` is set. ``shared_*`` loaders count their loads in the Redis of the
subprocess's project (``INCR``), and wait there for a release key, so several processes can be
watched.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache import caches


class Source:
    """A data source whose loads a test can count, hold, and make fail."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.values: dict[str, Any] = {}
        self.loads: list[str] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def hold(self) -> None:
        """Make every load from now on wait for ``release`` (tests set it at teardown); ``entered``
        is set when the next load starts."""
        self.entered.clear()
        self.release.clear()

    def load(self, key: str) -> Any:
        with self.lock:
            self.loads.append(key)
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the load")
        if self.error is not None:
            raise self.error
        return self.values.get(key, f"value of {key}")


SOURCE = Source()


def load(key: str) -> Any:
    return SOURCE.load(key)


def load_batch(keys: list[str]) -> dict[str, Any]:
    return {key: SOURCE.load(key) for key in keys}


def product_keys() -> list[str]:
    return ["product:1", "product:2"]


# -- across processes: the project's Redis counts and releases ---------------------------------


def shared_load(key: str) -> str:
    """Counts the load in Redis (``loads:<key>``), then waits for ``release`` to be set there."""
    cache = caches["default"]
    cache.add(f"loads:{key}", 0, None)
    cache.incr(f"loads:{key}")
    deadline = time.monotonic() + 30
    while cache.get("release") is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the load")
        time.sleep(0.01)
    return f"value of {key}"


def load_nothing(keys: list[str]) -> dict[str, Any]:
    """A batch loader that finds none of the keys."""
    return {}
