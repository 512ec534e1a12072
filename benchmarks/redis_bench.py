"""Warming into a real Redis: this app vs the user's loop vs the raw backend floor, side by side.

Starts its own redis-server on a free port (never the machine's Redis) and stops it at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.warm_bench import best_of, load  # load: the loader the warmers name here

N_KEYS = 100_000
BATCH = 100
#: The user's loop of cache.set is slow: it runs on the first this many keys (rate per key).
LOOP_KEYS = 20_000


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


def hiredis_in_use() -> bool:
    """Whether redis-py in this process parses and packs with hiredis."""
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


def run(repeat: int = 3) -> list[dict[str, str]]:
    """Every Redis row, with hiredis (this process, when installed) and without it (a fresh
    process where ``import hiredis`` fails, so redis-py packs and parses in Python, as a project
    without hiredis runs), then the parallel-loader row."""
    from benchmarks.fresh import in_fresh_process

    rows: list[dict[str, str]] = []
    if hiredis_in_use():
        rows.extend(run_backends(repeat))
    rows.extend(
        in_fresh_process("benchmarks.redis_bench", "run_backends", repeat, hide=("hiredis",))
    )
    rows.append(parallel_row(repeat))
    return rows


def run_backends(repeat: int = 3) -> list[dict[str, str]]:
    """The rows of Django's RedisCache and of django-redis against one private redis-server:
    the user's loop, Django's (or django-redis's) ``set_many``, ours, and the raw ceilings,
    measured interleaved (each round runs every contender once; each keeps its best round)."""

    import redis
    from django.core.cache import cache as proxy
    from django.core.cache import caches
    from django.test.utils import override_settings

    from tests.redis_server import RedisServer, close_redis

    parser = "hiredis" if hiredis_in_use() else "no hiredis (redis-py's own parser)"
    server = RedisServer()
    server.start()
    rows: list[dict[str, str]] = []
    try:
        settings = {
            # The project's default cache is Django's RedisCache: the proxy stands for it.
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"{server.url}/0",
            },
            "django_redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"{server.url}/1",
            },
        }
        raw = redis.Redis.from_url(f"{server.url}/2")
        with override_settings(CACHES=settings):
            for alias, label in (
                ("default", "Django's RedisCache"),
                ("django_redis", "django-redis"),
            ):
                cache: Any = caches[alias]
                timings = _measure(cache, proxy if alias == "default" else None, raw, repeat)
                rows.extend(_rows(f"Redis, {parser}: {label}", timings))
                if alias == "default":
                    close_redis(cache)
                else:
                    cache.client.do_close_clients()
        raw.close()
    finally:
        server.cleanup()
    return rows


def _measure(cache: Any, proxy: Any, raw: Any, repeat: int) -> dict[str, float]:
    """Seconds per contender on ``cache`` (best of ``repeat`` interleaved rounds; the loop: one
    round on ``LOOP_KEYS`` keys, scaled to ``N_KEYS``)."""
    import pickle

    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.core import collector
    from django_cachewarmers.core.backends import adapter_for
    from django_cachewarmers.core.config import WarmingConfig

    keys = bench_keys()
    items = [(key, load(key)) for key in keys]
    batches = [dict(items[i : i + BATCH]) for i in range(0, N_KEYS, BATCH)]
    loop_keys = keys[:LOOP_KEYS]

    def loop() -> None:
        for key in loop_keys:
            cache.set(key, load(key), timeout=600)

    def set_many() -> None:
        for batch in batches:
            cache.set_many(batch, timeout=600)

    def warming(target: Any, batch_size: int) -> Callable[[], None]:
        config = WarmingConfig(
            batch_size=batch_size, cache_timeout=600, timeout_jitter=0.1, warmup_timeout_s=600
        )
        warmer = CacheWarmer(target, StaticKeyProvider(keys), CallableValueLoader(load), config)

        def go() -> None:
            stats = warmer.warm()
            assert stats.keys_warmed == N_KEYS, stats.to_dict()
            assert stats.keys_verified == collector.VERIFY_ALL_UP_TO, stats.to_dict()

        return go

    # The ceilings: values pickled and keys made beforehand; MSET (no TTL), and a
    # non-transactional pipeline of SET ... EX; batches of 1,000.
    pickled = [
        (cache.make_key(key), pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) for key, value in items
    ]
    chunks = [pickled[i : i + 1000] for i in range(0, N_KEYS, 1000)]

    def mset_ceiling() -> None:
        for chunk in chunks:
            raw.execute_command("MSET", *[part for pair in chunk for part in pair])

    def set_ex_ceiling() -> None:
        for chunk in chunks:
            pipeline = raw.pipeline(transaction=False)
            for name, data in chunk:
                pipeline.set(name, data, ex=600)
            pipeline.execute()

    adapter = adapter_for(cache)

    def write_path() -> None:
        for batch in batches:
            refused = adapter.write(batch, 600, 0.1, None)
            assert refused == {}, refused

    contenders: dict[str, Callable[[], None]] = {
        "set_many": set_many,
        "write path": write_path,
        "ours": warming(cache, BATCH),
        "ours 1000": warming(cache, 1000),
        "mset": mset_ceiling,
        "set ex": set_ex_ceiling,
    }
    if proxy is not None:
        contenders["proxy"] = warming(proxy, BATCH)

    def reset() -> None:
        cache.clear()  # our own server: nothing else lives there
        raw.flushdb()

    timings = {"loop": best_of(1, loop, reset) * N_KEYS / LOOP_KEYS}
    for _ in range(repeat):
        for name, func in contenders.items():
            seconds = best_of(1, func, reset)
            timings[name] = min(timings.get(name, seconds), seconds)
    reset()
    return timings


def _rows(prefix: str, timings: dict[str, float]) -> list[dict[str, str]]:
    rate = {label: N_KEYS / seconds for label, seconds in timings.items()}
    per_s = "{:,.0f} keys/s".format
    ours = f"CacheWarmer(caches[...]), batches of {BATCH}, read-back on"

    def row(name: str, mine: str, theirs: str, baseline: str, note: str = "") -> dict[str, str]:
        return {
            "benchmark": f"{prefix}, {N_KEYS:,} keys: {name}",
            "ours": per_s(rate[mine]),
            "baseline": f"{per_s(rate[theirs])} ({baseline})",
            "ratio": f"{rate[mine] / rate[theirs]:.2f}x{note}",
        }

    rows = [
        row(f"{ours} vs the user's loop", "ours", "loop", "for k in keys: cache.set(k, load(k))"),
        row(
            f"{ours} vs set_many",
            "ours",
            "set_many",
            f"the cache's set_many, values loaded beforehand, batches of {BATCH}",
            " (goal >= 3x)",
        ),
        row(
            f"{ours} vs the raw ceiling",
            "ours",
            "mset",
            "MSET of pre-pickled values, no TTL, batches of 1,000",
            " (goal >= 0.50x: within 2x)",
        ),
        row(
            f"our write path alone (the adapter's write, values loaded beforehand, batches of "
            f"{BATCH}) vs set_many",
            "write path",
            "set_many",
            f"the cache's set_many, batches of {BATCH}",
        ),
        row(
            "our write path alone vs the raw ceiling",
            "write path",
            "mset",
            "MSET of pre-pickled values, no TTL, batches of 1,000",
        ),
        row(
            "CacheWarmer, batches of 1,000, vs the raw ceiling",
            "ours 1000",
            "mset",
            "MSET of pre-pickled values, no TTL, batches of 1,000",
        ),
        row(
            f"{ours} vs a raw pipeline of SET ... EX",
            "ours",
            "set ex",
            "pre-pickled values, batches of 1,000, no MULTI",
        ),
    ]
    if "proxy" in rate:
        rows.append(
            row(
                f"CacheWarmer(cache) (the proxy), batches of {BATCH} vs caches['default']",
                "proxy",
                "ours",
                "CacheWarmer(caches['default'])",
                " (goal ~1.00x: the same fast path)",
            )
        )
    return rows


def parallel_row(repeat: int) -> dict[str, str]:
    """Parallel warming with an I/O-bound loader: 200 keys, 20 ms each, 16 workers."""
    from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
    from django_cachewarmers.core.config import WarmingConfig

    slow = CacheWarmer(
        {},
        StaticKeyProvider([f"k{i}" for i in range(200)]),
        CallableValueLoader(slow_load),
        WarmingConfig(max_workers=16, warmup_timeout_s=60),
    )
    ideal = 200 * 0.020 / 16
    parallel = best_of(repeat, slow.warm)
    return {
        "benchmark": "parallel: 200 keys x 20 ms loader, 16 workers (s; lower is better)",
        "ours": f"{parallel:.3f} s",
        "baseline": f"{ideal:.3f} s ideal (keys x latency / workers)",
        "ratio": f"{parallel / ideal:.2f}x ({parallel / ideal - 1:+.1%} vs ideal; goal within 10%)",
    }


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
