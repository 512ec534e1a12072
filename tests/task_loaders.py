"""Loaders for the Tasks framework tests, named by dotted path in CW_WARMERS.

``pid_load`` records which process loaded each key in the Redis hash "<CW_KEY_PREFIX>:pids"
(CW_LOADS_URL), so a test can tell a web process's loads from a worker's.
"""

from __future__ import annotations

import os

from tests.celery_loaders import _count

_client = None


def pid_load(key: str) -> str:
    global _client
    url = os.environ.get("CW_LOADS_URL")
    if url:
        if _client is None:
            import redis

            _client = redis.Redis.from_url(url)
        _client.hset(f"{os.environ.get('CW_KEY_PREFIX', '')}:pids", key, os.getpid())
    _count(key)
    return f"value of {key}"


def page_keys() -> list[str]:
    return [f"page:{i}" for i in range(200)]


def slow_batch(keys: list[str]) -> dict[str, str]:
    """An I/O-bound batch loader: sleeps CW_BATCH_DELAY seconds per call (default 0.05)."""
    import time

    time.sleep(float(os.environ.get("CW_BATCH_DELAY", "0.05")))
    return {key: f"value of {key}" for key in keys}
