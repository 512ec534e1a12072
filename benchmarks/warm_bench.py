"""Warm throughput into LocMemCache: this app vs the loop a user would write, side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

N_KEYS = 100_000


def load(key: str) -> dict[str, Any]:
    """A cheap in-process loader, so the figures measure the warming machinery itself."""
    return {"key": key, "name": "product", "price_cents": 1999}


def best_of(
    repeat: int, func: Callable[[], object], reset: Callable[[], object] | None = None
) -> float:
    """The shortest of ``repeat`` timed calls of ``func`` (each after ``reset()``, untimed)."""
    best = float("inf")
    for _ in range(repeat):
        if reset is not None:
            reset()
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def run(repeat: int = 3) -> list[dict[str, str]]:
    """Measure keys/s for a plain loop, our per-key mode and our batch mode, in one run."""
    from django.core.cache import caches

    from django_cachewarmers import (
        BatchValueLoader,
        CacheWarmer,
        CallableValueLoader,
        StaticKeyProvider,
        WarmingConfig,
    )

    cache = caches["default"]
    keys = [f"product:{i}" for i in range(N_KEYS)]
    config = WarmingConfig(warmup_timeout_s=600)
    per_key = CacheWarmer(cache, StaticKeyProvider(keys), CallableValueLoader(load), config)
    batch = CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        BatchValueLoader(lambda ks: {k: load(k) for k in ks}, remember=0),
        config,
    )

    def loop() -> None:
        for key in keys:
            cache.set(key, load(key))

    def check(warmer: CacheWarmer) -> Callable[[], None]:
        def go() -> None:
            stats = warmer.warm()
            assert stats.keys_warmed == N_KEYS, stats.to_dict()

        return go

    timings = {}
    for label, func in (("loop", loop), ("per-key", check(per_key)), ("batch", check(batch))):
        cache.clear()
        timings[label] = best_of(repeat, func)
    cache.clear()
    rate = {label: N_KEYS / seconds for label, seconds in timings.items()}
    return [
        {
            "benchmark": f"warm {N_KEYS:,} keys into LocMemCache, {mode} (keys/s)",
            "ours": f"{rate[mode]:,.0f}",
            "baseline": f"{rate['loop']:,.0f} (for k in keys: cache.set(k, load(k)))",
            "ratio": f"{rate[mode] / rate['loop']:.2f}x",
        }
        for mode in ("per-key", "batch")
    ]
