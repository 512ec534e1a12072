"""The core engine's ``before_load`` hook (the Django layer passes ``close_old_connections``): when
and where it runs. The effect on real dropped connections is in tests/test_postgres.py."""

from __future__ import annotations

import threading

import pytest

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)


class Hook:
    """Records the thread of each call; raises when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("hook broke")


def test_before_each_batch_and_each_retry_on_the_worker_threads() -> None:
    failed_once: set[str] = set()

    def load_batch(keys: list[str]) -> dict[str, str]:
        if keys[0] == "c" and "c" not in failed_once:
            failed_once.add("c")
            raise ConnectionError("server closed the connection unexpectedly")
        return {key: key.upper() for key in keys}

    hook, cache = Hook(), dict[str, str]()
    config = WarmingConfig(batch_size=2, max_workers=2, max_retries=2, retry_backoff_s=0.001)
    warmer = CacheWarmer(
        cache, StaticKeyProvider(list("abcd")), BatchValueLoader(load_batch), config,
        name="hooked", before_load=hook,
    )  # fmt: skip
    stats = warmer.warm()
    assert (stats.keys_warmed, stats.keys_failed) == (4, 0)
    assert cache == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert len(hook.threads) == 3  # two batches, one retry
    assert all(name.startswith("cachewarmer[hooked]-") for name in hook.threads)


def test_per_key_at_the_start_and_after_a_failed_key_only() -> None:
    def load(key: str) -> str:
        if key == "b":
            raise ConnectionError("terminating connection due to administrator command")
        return key.upper()

    hook, cache = Hook(), dict[str, str]()
    config = WarmingConfig(max_workers=1, max_retries=0)
    warmer = CacheWarmer(
        cache, StaticKeyProvider(list("abcde")), CallableValueLoader(load), config,
        before_load=hook,
    )  # fmt: skip
    stats = warmer.warm()
    assert (stats.keys_warmed, stats.keys_failed) == (4, 1)
    assert len(hook.threads) == 2  # before "a", and before "c" (after "b" failed)


def test_a_failing_hook_is_logged_and_the_keys_are_still_loaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache: dict[str, str] = {}
    warmer = CacheWarmer(
        cache, StaticKeyProvider(["a", "b"]), CallableValueLoader(str.upper),
        name="broken-hook", before_load=Hook(fail=True),
    )  # fmt: skip
    assert warmer.warm().keys_warmed == 2
    assert cache == {"a": "A", "b": "B"}
    assert "cache warmer broken-hook: before_load hook failed" in caplog.text
