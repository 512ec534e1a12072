"""Warming into a real Redis: this app vs the user's loop vs the raw backend floor, side by side.

Starts its own redis-server on a free port (never the machine's Redis) and stops it at the end.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from benchmarks.warm_bench import best_of, load  # load: the loader the warmers name here

N_KEYS = 100_000
BATCH = 100


def bench_keys() -> list[str]:
    """The warmer's key provider (referenced by dotted path from CACHE_WARMERS)."""
    return [f"product:{i}" for i in range(N_KEYS)]


def load_many(keys: list[str]) -> dict[str, dict[str, Any]]:
    return {key: load(key) for key in keys}


def slow_load(key: str) -> str:
    """An I/O-bound loader: 20 ms of waiting per key (a remote service, a slow query)."""
    time.sleep(0.020)
    return key


def read_back_timings(
    repeat: int, go: Callable[[], None], reset: Callable[[], object]
) -> tuple[float, float, float]:
    """Best times of ``go`` with the read-back verification on and with it checking no key
    (interleaved, so both see the same machine load), and the read-back's own time in the best
    run with it on (timed around ``_Collector._verify``, the whole read-back)."""
    from django_cachewarmers.core import collector as warmer

    original = warmer.Collector._verify
    spent: list[float] = []

    def timed(collector: Any) -> None:
        start = time.perf_counter()
        try:
            original(collector)
        finally:
            spent.append(time.perf_counter() - start)

    best_on = best_off = best_read_back = float("inf")
    threshold = warmer.VERIFY_ALL_UP_TO
    warmer.Collector._verify = timed  # type: ignore[method-assign,assignment]
    try:
        for _ in range(repeat):
            spent.clear()
            on = best_of(1, go, reset)
            if on < best_on:
                best_on, best_read_back = on, sum(spent)
            warmer.VERIFY_ALL_UP_TO = 0
            try:
                best_off = min(best_off, best_of(1, go, reset))
            finally:
                warmer.VERIFY_ALL_UP_TO = threshold
    finally:
        warmer.Collector._verify = original  # type: ignore[method-assign]
    return best_on, best_off, best_read_back


def run(repeat: int = 3) -> list[dict[str, str]]:
    """Measure every Redis row in one run against one private redis-server."""
    from django.core.cache.backends.redis import RedisCache
    from django.core.management import call_command
    from django.test.utils import override_settings

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.backends.redis import RedisAdapter
    from django_cachewarmers.core.config import WarmingConfig
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        location = f"{server.url}/0"
        cache = RedisCache(location, {})
        keys = bench_keys()
        prepared = {key: load(key) for key in keys}
        batches = [dict(list(prepared.items())[i : i + BATCH]) for i in range(0, N_KEYS, BATCH)]

        def loop() -> None:
            for key in keys:
                cache.set(key, load(key))

        def floor() -> None:
            for batch in batches:
                cache.set_many(batch)

        writer = RedisAdapter(cache)

        def pipelined_floor() -> None:
            timeout = cache.get_backend_timeout()
            for batch in batches:
                writer.write(batch, timeout, 0.0, None)

        settings = {
            "CACHES": {
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                "redis": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": location,
                },
            },
            "CACHE_WARMERS": {
                "products": {
                    "keys": "benchmarks.redis_bench.bench_keys",
                    "loader": "benchmarks.redis_bench.load",
                    "cache": "redis",
                    "batch_size": BATCH,
                    "warmup_timeout": 600,
                },
                "products_batched": {
                    "keys": "benchmarks.redis_bench.bench_keys",
                    "batch_loader": "benchmarks.redis_bench.load_many",
                    "cache": "redis",
                    "batch_size": BATCH,
                    "warmup_timeout": 600,
                },
            },
        }

        def command(name: str) -> Callable[[], None]:
            def go() -> None:
                call_command("warm_cache", name, "--no-progress", stdout=io.StringIO())

            return go

        flush = cache.clear  # our own server: nothing else lives there
        timings: dict[str, float] = {}
        with override_settings(**settings):
            timings["loop"] = best_of(1, loop, flush)
            timings["floor"] = best_of(repeat, floor, flush)
            timings["pipelined floor"] = best_of(repeat, pipelined_floor, flush)
            assert cache.get("product:99999") == load("product:99999")
            # The same command with and without the read-back (a sample of 0 keys checks none),
            # interleaved so that both see the same machine load.
            with_read_back, without, read_back = read_back_timings(
                max(repeat, 5), command("products"), flush
            )
            timings["ours"] = with_read_back
            timings["ours without read-back"] = without
            timings["ours batched"] = best_of(repeat, command("products_batched"), flush)
            flush()
        cache.close()

        # Parallel warming with an I/O-bound loader: 200 keys, 20 ms each, 16 workers.
        slow = CacheWarmer(
            {},
            StaticKeyProvider([f"k{i}" for i in range(200)]),
            CallableValueLoader(slow_load),
            WarmingConfig(max_workers=16, warmup_timeout_s=60),
        )
        ideal = 200 * 0.020 / 16
        parallel = best_of(repeat, slow.warm)
    finally:
        server.cleanup()

    rate = {label: N_KEYS / seconds for label, seconds in timings.items()}

    def row(name: str, ours: str, baseline: str, ratio: float, note: str = "") -> dict[str, str]:
        return {
            "benchmark": name,
            "ours": ours,
            "baseline": baseline,
            "ratio": f"{ratio:.2f}x{note}",
        }

    per_s = "{:,.0f} keys/s".format
    return [
        row(
            f"Redis: warm {N_KEYS:,} keys via warm_cache vs the user's loop",
            per_s(rate["ours"]),
            f"{per_s(rate['loop'])} (for k in keys: cache.set(k, load(k)))",
            rate["ours"] / rate["loop"],
        ),
        row(
            "Redis: warm_cache vs the raw floor (set_many of prepared values, batches of 100)",
            per_s(rate["ours"]),
            per_s(rate["floor"]),
            rate["ours"] / rate["floor"],
            " (goal >= 0.80x)",
        ),
        row(
            f"Redis: warm_cache's read-back of {min(N_KEYS, 10_000):,} of {N_KEYS:,} keys "
            "(its own time vs the rest of the run)",
            f"{read_back * 1000:,.0f} ms of a {timings['ours'] * 1000:,.0f} ms run",
            f"{timings['ours without read-back'] * 1000:,.0f} ms run without it (best of 5, "
            "interleaved)",
            1 + read_back / (timings["ours"] - read_back),
            f" ({read_back / (timings['ours'] - read_back):+.1%}; goal at most +5%)",
        ),
        row(
            "Redis: warm_cache with a batch loader vs the raw floor",
            per_s(rate["ours batched"]),
            per_s(rate["floor"]),
            rate["ours batched"] / rate["floor"],
        ),
        row(
            "Redis: our write path (one script call per batch) vs Django's set_many",
            per_s(rate["pipelined floor"]),
            per_s(rate["floor"]),
            rate["pipelined floor"] / rate["floor"],
        ),
        row(
            "parallel: 200 keys x 20 ms loader, 16 workers (s; lower is better)",
            f"{parallel:.3f} s",
            f"{ideal:.3f} s ideal (keys x latency / workers)",
            parallel / ideal,
            f" ({parallel / ideal - 1:+.1%} vs ideal; goal within 10%)",
        ),
    ]


PROXY_KEYS = 20_000


def run_proxy(repeat: int = 3) -> list[dict[str, str]]:
    """``CacheWarmer(cache, ...)`` with ``from django.core.cache import cache`` (Django's
    ConnectionProxy) vs ``CacheWarmer(caches["default"], ...)``, on a Django RedisCache that is
    the project's default cache, against a private redis-server."""
    from django.core.cache import cache as proxy
    from django.core.cache import caches
    from django.test.utils import override_settings

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.core.config import WarmingConfig
    from tests.redis_server import RedisServer, close_redis

    server = RedisServer()
    server.start()
    try:
        redis_default = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"{server.url}/0",
            }
        }
        keys = [f"product:{i}" for i in range(PROXY_KEYS)]
        timings: dict[str, float] = {}
        with override_settings(CACHES=redis_default):
            real = caches["default"]

            def warming(target: Any) -> Callable[[], None]:
                config = WarmingConfig(batch_size=BATCH, warmup_timeout_s=600)
                warmer = CacheWarmer(
                    target, StaticKeyProvider(keys), CallableValueLoader(load), config
                )

                def go() -> None:
                    stats = warmer.warm()
                    assert stats.keys_warmed == PROXY_KEYS, stats.to_dict()

                return go

            # Interleaved, so that both see the same machine load.
            for _ in range(repeat):
                for label, target in (("proxy", proxy), ("caches", real)):
                    seconds = best_of(1, warming(target), real.clear)
                    timings[label] = min(timings.get(label, seconds), seconds)
            real.clear()
            close_redis(real)
    finally:
        server.cleanup()
    rate = {label: PROXY_KEYS / seconds for label, seconds in timings.items()}
    return [
        {
            "benchmark": f"Redis: warm {PROXY_KEYS:,} keys through `from django.core.cache import "
            "cache` (the proxy) vs through caches['default']",
            "ours": f"{rate['proxy']:,.0f} keys/s",
            "baseline": f"{rate['caches']:,.0f} keys/s",
            "ratio": f"{rate['proxy'] / rate['caches']:.2f}x (goal ~1.00x: the same fast path)",
        }
    ]
