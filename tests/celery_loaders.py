"""Key providers and loaders for the Celery tests, named by dotted path in CW_WARMERS.

CW_LOADS_URL (a Redis URL) makes the loaders count each load of each key in the hash
"<CW_KEY_PREFIX>:loads", so a test can see a chunk that ran twice. CW_LOAD_DELAY is the seconds
``slow_load`` sleeps per key.
"""

from __future__ import annotations

import os
import time
from typing import Any

_client: Any = None


def _count(key: str) -> None:
    global _client
    url = os.environ.get("CW_LOADS_URL")
    if not url:
        return
    if _client is None:
        import redis

        _client = redis.Redis.from_url(url)
    _client.hincrby(f"{os.environ.get('CW_KEY_PREFIX', '')}:loads", key, 1)


def bulk_keys() -> list[str]:
    return [f"bulk:{i}" for i in range(10_000)]


def slow_keys() -> list[str]:
    return [f"slow:{i}" for i in range(int(os.environ.get("CW_SLOW_KEYS", "1600")))]


def flaky_keys() -> list[str]:
    return [f"flaky:{i}" for i in range(300)]


def load(key: str) -> str:
    _count(key)
    return f"value of {key}"


def load_batch(keys: list[str]) -> dict[str, str]:
    return {key: f"value of {key}" for key in keys}


def slow_load(key: str) -> str:
    time.sleep(float(os.environ.get("CW_LOAD_DELAY", "0.005")))
    _count(key)
    return f"value of {key}"


def load_failing_sevens(key: str) -> str:
    """Fails every key whose number ends in 7."""
    if key.endswith("7"):
        raise LookupError(f"{key} is missing upstream")
    return f"value of {key}"
