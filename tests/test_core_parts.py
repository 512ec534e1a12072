"""WarmingConfig, WarmingStats, key providers and value loaders."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import pytest

from django_cachewarmers import (
    DEFAULT_TIMEOUT,
    AccessTracker,
    AdaptiveKeyProvider,
    BatchValueLoader,
    CallableKeyProvider,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
    WarmingStats,
    WarmingStrategy,
)


def test_import_works_without_django_configured() -> None:
    code = (
        "import sys, django_cachewarmers as c; "
        "conf = sys.modules.get('django.conf'); "
        "assert conf is None or not conf.settings.configured; "
        "assert 'django.db' not in sys.modules and 'django.core.cache' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith('django.')); "
        "print(c.CacheWarmer.__name__)"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CacheWarmer"


# -- WarmingConfig ---------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = WarmingConfig()
    assert config.strategy is WarmingStrategy.EAGER  # as a warmer declared in settings
    assert (config.batch_size, config.max_workers, config.max_retries) == (100, 4, 3)
    assert (config.refresh_interval_s, config.warmup_timeout_s) == (300.0, 60.0)
    assert config.retry_on_failure is True
    assert config.cache_timeout is DEFAULT_TIMEOUT
    assert config.attempts == 4
    assert WarmingConfig(retry_on_failure=False).attempts == 1


def test_strategy_values_and_strings() -> None:
    assert [s.value for s in WarmingStrategy] == ["eager", "lazy", "scheduled", "adaptive"]
    assert WarmingConfig(strategy="scheduled").strategy is WarmingStrategy.SCHEDULED  # type: ignore[arg-type]
    assert str(WarmingStrategy.ADAPTIVE) == "adaptive"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size: must be an integer >= 1, got 0"),
        ("batch_size", 2.5, "batch_size: must be an integer >= 1, got 2.5"),
        ("max_workers", 0, "max_workers: must be an integer >= 1"),
        ("max_retries", -1, "max_retries: must be an integer >= 0"),
        ("max_retries", True, "max_retries: must be an integer"),
        ("refresh_interval_s", 0, "refresh_interval_s: must be a finite number of seconds > 0"),
        ("refresh_interval_s", -5.0, "refresh_interval_s: must be a finite number of seconds > 0"),
        ("warmup_timeout_s", -1, "warmup_timeout_s: must be a finite number of seconds > 0"),
        ("warmup_timeout_s", float("inf"), "warmup_timeout_s: must be a finite number"),
        ("cache_timeout", -1, "cache_timeout: must be a finite number of seconds >= 0"),
        ("cache_timeout", "10", "cache_timeout: must be a finite number"),
        ("timeout_jitter", -0.1, "timeout_jitter: must be a finite number of seconds >= 0"),
        ("retry_backoff_s", -1, "retry_backoff_s: must be a finite number of seconds >= 0"),
        ("retry_on_failure", "yes", "retry_on_failure: must be True or False"),
        ("strategy", "sometimes", "strategy: 'sometimes' is not a warming strategy"),
    ],
)
def test_config_rejects_invalid_values_naming_the_field(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WarmingConfig(**{field: value})


def test_config_accepts_edge_values() -> None:
    config = WarmingConfig(max_retries=0, cache_timeout=0, retry_backoff_s=0)
    assert config.cache_timeout == 0
    assert WarmingConfig(cache_timeout=None).cache_timeout is None


# -- WarmingStats ----------------------------------------------------------------------------


def test_stats_success_rate() -> None:
    assert WarmingStats().success_rate == 1.0
    assert WarmingStats(keys_warmed=3, keys_failed=1).success_rate == 0.75
    assert WarmingStats(keys_failed=2).success_rate == 0.0


def test_stats_to_dict_is_json_ready() -> None:
    stats = WarmingStats(keys_warmed=2, keys_failed=1, total_time_ms=12.3456)
    stats.finished_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    stats.add_error("k", "boom")
    data = json.loads(json.dumps(stats.to_dict()))
    assert data == {
        "keys_warmed": 2,
        "keys_failed": 1,
        "success_rate": pytest.approx(2 / 3),
        "total_time_ms": 12.346,
        "finished_at": "2026-01-02T03:04:05+00:00",
        "errors": ["k: boom"],
        "errors_omitted": 0,
        "run_error": None,
        "keys_verified": 0,
        "keys_lost": 0,
    }


def test_stats_errors_are_bounded_and_truncated() -> None:
    stats = WarmingStats()
    for i in range(WarmingStats.MAX_ERRORS + 7):
        stats.add_error(f"k{i}", "x" * 10_000)
    assert len(stats.errors) == WarmingStats.MAX_ERRORS
    assert stats.errors_omitted == 7
    assert all(len(e) <= WarmingStats.MAX_ERROR_LENGTH for e in stats.errors)


# -- providers -------------------------------------------------------------------------------


def test_static_provider_returns_a_copy() -> None:
    provider = StaticKeyProvider(("a", "b"))
    keys = provider.get_keys()
    keys.append("c")
    assert provider.get_keys() == ["a", "b"]


def test_callable_provider_calls_each_time() -> None:
    counter = iter(range(100))
    provider = CallableKeyProvider(lambda: (f"k{next(counter)}" for _ in range(2)))
    assert provider.get_keys() == ["k0", "k1"]
    assert provider.get_keys() == ["k2", "k3"]
    with pytest.raises(TypeError):
        CallableKeyProvider("not callable")  # type: ignore[arg-type]


def test_adaptive_provider_returns_the_trackers_hot_keys() -> None:
    tracker = AccessTracker(max_keys=100)
    for key, hits in (("hot", 10), ("warm", 6), ("cold", 2)):
        for _ in range(hits):
            tracker.record_access(key)
    assert AdaptiveKeyProvider(tracker, threshold=5).get_keys() == ["hot", "warm"]
    assert AdaptiveKeyProvider(tracker, threshold=1, limit=1).get_keys() == ["hot"]
    assert AdaptiveKeyProvider(tracker, threshold=5).top() == [("hot", 10), ("warm", 6)]
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveKeyProvider(tracker, threshold=-1)


# -- loaders ---------------------------------------------------------------------------------


def test_callable_loader() -> None:
    assert CallableValueLoader(str.upper).load("abc") == "ABC"


def test_batch_loader_remembers_recent_values_and_falls_back() -> None:
    calls: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        return {k: k.upper() for k in keys if k != "missing"}

    loader = BatchValueLoader(load_many)
    assert loader.load_batch(["a", "b"]) == {"a": "A", "b": "B"}
    assert loader.load("a") == "A"
    assert calls == [["a", "b"]]  # answered from the batch
    assert loader.load("c") == "C"
    assert calls[-1] == ["c"]  # a batch of one
    with pytest.raises(KeyError, match="missing"):
        loader.load("missing")


def test_batch_loader_memory_is_bounded() -> None:
    loader = BatchValueLoader(lambda keys: {k: k for k in keys}, remember=50)
    for start in range(0, 10_000, 100):
        loader.load_batch([f"k{i}" for i in range(start, start + 100)])
    assert len(loader._memory) == 50
    assert "k9999" in loader._memory
    assert "k0" not in loader._memory
    loader.forget()
    assert len(loader._memory) == 0


def test_batch_loader_rejects_a_non_mapping_result() -> None:
    loader = BatchValueLoader(lambda keys: list(keys))  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a mapping"):
        loader.load_batch(["a"])
