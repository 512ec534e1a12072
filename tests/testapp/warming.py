"""Key providers and loaders the test settings point at by dotted path."""

from __future__ import annotations

import os
import threading
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
