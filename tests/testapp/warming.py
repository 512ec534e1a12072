"""Key providers and loaders the test settings point at by dotted path."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

CALLS: Counter[str] = Counter()
_lock = threading.Lock()


def item_keys() -> list[str]:
    """Twenty item keys (CW_N_KEYS overrides the count in server subprocesses)."""
    return [f"item:{i}" for i in range(int(os.environ.get("CW_N_KEYS", "20")))]


def load_item(key: str) -> str:
    with _lock:
        CALLS[key] += 1
    return f"value of {key}"


def load_items(keys: list[str]) -> dict[str, str]:
    with _lock:
        for key in keys:
            CALLS[key] += 1
    return {key: f"value of {key}" for key in keys}


def load_item_failing_3(key: str) -> str:
    if key == "item:3":
        raise LookupError("item 3 is missing upstream")
    return load_item(key)


def broken_keys() -> list[str]:
    raise RuntimeError("the catalogue service is down")


def load_item_slowly(key: str) -> str:
    """``load_item``, but only once the file $CW_HANG_FILE is gone, then after $CW_LOAD_DELAY s.

    Real-process fault tests use it to keep a warm surely in flight for as long as they need.
    """
    hang = os.environ.get("CW_HANG_FILE")
    deadline = time.monotonic() + 600
    while hang and os.path.exists(hang) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(float(os.environ.get("CW_LOAD_DELAY", "0")))
    return load_item(key)


def load_item_hanging(key: str) -> str:
    """A loader that never returns (until its process exits)."""
    threading.Event().wait()
    raise AssertionError("unreachable")


def load_item_logged(key: str) -> str:
    """``load_item``, appending each key to $CW_LOADER_LOG (shared by processes)."""
    path = os.environ.get("CW_LOADER_LOG")
    if path:
        with _lock, open(path, "a", encoding="utf-8") as log:
            log.write(key + "\n")
    return load_item(key)
