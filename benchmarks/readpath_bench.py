"""The read path (``django_cachewarmers.get``), side by side with Django's own reads.

- A stampede: 200 threads in this process and 4 other processes miss one key at once, the loader
  takes 100 ms: how many loads, and how long until every caller has the value; ``get`` vs
  ``cache.get_or_set``.
- A hit: ``get`` vs a bare ``cache.get`` on Redis (without and with ``fresh_for``: one round trip
  either way) and on LocMem.
- Stale serving: the p99 of ``get`` while a 500 ms refresh of that key runs, vs a hit's p99.

Starts its own redis-server on a free port (never the machine's Redis) and stops it at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

STAMPEDE_THREADS = 200
STAMPEDE_PROCESSES = 4
LOAD_S = 0.100
REFRESH_S = 0.500
PREFIX = "readbench"


def _cache() -> Any:
    from django.core.cache import caches

    return caches["bench"]


def slow_load(key: str) -> str:
    """The stampede's loader: counts its loads in the shared cache, then takes 100 ms."""
    cache = _cache()
    cache.add(f"loads:{key}", 0, None)
    cache.incr(f"loads:{key}")
    time.sleep(LOAD_S)
    return f"value of {key}"


def refresh_load(key: str) -> str:
    """The stale-serving loader: 500 ms per load."""
    time.sleep(REFRESH_S)
    return f"value of {key} at {time.time()}"


def fast_load(key: str) -> str:
    return f"value of {key}"


def warmers(cache: str) -> dict[str, Any]:
    base = {"keys": [], "cache": cache, "strategy": "lazy", "timeout": 300, "max_retries": 0}
    return {
        "stampede": {**base, "loader": "benchmarks.readpath_bench.slow_load"},
        "plain": {**base, "loader": "benchmarks.readpath_bench.fast_load"},
        "fresh": {**base, "loader": "benchmarks.readpath_bench.fast_load", "fresh_for": 60},
        "refresh": {**base, "loader": "benchmarks.readpath_bench.refresh_load", "fresh_for": 60},
    }


def _redis_caches(url: str) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "bench": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": PREFIX,
        },
    }


# -- the stampede -------------------------------------------------------------------------------


def _call(mode: str, key: str) -> Any:
    if mode == "get":
        import django_cachewarmers

        return django_cachewarmers.get("stampede", key)
    return _cache().get_or_set(key, lambda: slow_load(key), 300)


def _stampede_here(mode: str, key: str, start_at: float, threads: int) -> list[float]:
    """``threads`` callers in this process, all at ``start_at`` (epoch s): when each had it."""
    finished: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        _call(mode, "warm-up")  # this thread's connection is open before the start, as a server's
        time.sleep(max(0.0, start_at - time.time()))
        value = _call(mode, key)
        assert value == f"value of {key}", value
        with lock:
            finished.append(time.time())

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return finished


def worker_main(argv: list[str]) -> None:
    """``python -m benchmarks.readpath_bench URL MODE KEY``: one caller. Prints "ready" once set
    up, reads the start time (epoch s) from stdin, prints when it had the value as JSON."""
    url, mode, key = argv[0], argv[1], argv[2]
    import django
    from django.conf import settings

    settings.configure(
        CACHES=_redis_caches(url),
        CACHE_WARMERS=warmers("bench"),
        INSTALLED_APPS=["django_cachewarmers"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHE_WARMERS_SNAPSHOT_INTERVAL=0,
        CACHE_WARMERS_PERSIST_INTERVAL=0,
        CACHE_WARMERS_AUTOSTART=False,
    )
    django.setup()
    _call(mode, "warm-up")  # imported, set up and connected before the start, as a server is
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    print(json.dumps(_stampede_here(mode, key, start_at, 1)), flush=True)


def stampede(url: str, mode: str, key: str) -> tuple[int, float, int]:
    """(loads, seconds from the start until every caller had the value, callers)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.readpath_bench", url, mode, key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(STAMPEDE_PROCESSES)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    start_at = time.time() + 1.0  # every thread of this process is started and connected by then
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{start_at}\n")
        process.stdin.flush()
    finished = _stampede_here(mode, key, start_at, STAMPEDE_THREADS)
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        finished.extend(json.loads(out.strip().splitlines()[-1]))
    loads = int(_cache().get(f"loads:{key}") or 0)
    return loads, max(finished) - start_at, len(finished)


# -- a hit, and stale serving ---------------------------------------------------------------------


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def side_by_side(
    ours: Callable[[], object], bare: Callable[[], object], calls: int, rounds: int = 7
) -> tuple[float, float]:
    """Median seconds per call of each, measured in interleaved rounds (same machine load)."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        theirs.append(per_call(bare, calls))
        mine.append(per_call(ours, calls))
    return statistics.median(mine), statistics.median(theirs)


def p99(times: list[float]) -> float:
    return sorted(times)[max(0, int(len(times) * 0.99) - 1)]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def run(repeat: int = 3) -> list[dict[str, str]]:
    from django.conf import settings
    from django.core.cache import caches
    from django.test.utils import override_settings

    import django_cachewarmers
    from django_cachewarmers import readpath
    from tests.redis_server import RedisServer, close_redis

    server = RedisServer()
    server.start()
    rows: list[dict[str, str]] = []
    try:
        url = f"{server.url}/0"
        redis_caches = {**settings.CACHES, **_redis_caches(url)}
        with override_settings(CACHES=redis_caches, CACHE_WARMERS=warmers("bench")):
            get = django_cachewarmers.get
            bench = caches["bench"]
            for mode in ("get", "get_or_set"):
                bench.delete_many(["stampede-key", "loads:stampede-key"])
                bench.set("warm-up", "value of warm-up", 300)  # each caller's first read: a hit
                loads, took, callers = stampede(url, mode, "stampede-key")
                if mode == "get":
                    ours = (loads, took, callers)
                else:
                    theirs = (loads, took, callers)
            rows.append(
                {
                    "benchmark": f"stampede: {ours[2]} callers ({STAMPEDE_THREADS} threads + "
                    f"{STAMPEDE_PROCESSES} processes) miss one key, 100 ms loader, Redis",
                    "ours": f"get: {ours[0]} load, all served in {ours[1] * 1000:.0f} ms",
                    "baseline": f"cache.get_or_set: {theirs[0]} loads, all served in "
                    f"{theirs[1] * 1000:.0f} ms",
                    "ratio": f"{theirs[0] / max(1, ours[0]):.0f}x fewer loads; "
                    f"{ours[1] / LOAD_S:.2f} loads' time",
                }
            )
            for name in ("plain", "fresh"):
                get(name, f"hit-{name}")
            calls = 2000
            plain, bare = side_by_side(
                lambda: get("plain", "hit-plain"), lambda: bench.get("hit-plain"), calls
            )
            fresh, bare_f = side_by_side(
                lambda: get("fresh", "hit-fresh"), lambda: bench.get("hit-fresh"), calls
            )
            rows.append(
                {
                    "benchmark": "a hit on Redis: get vs a bare cache.get (no fresh_for)",
                    "ours": us(plain),
                    "baseline": us(bare),
                    "ratio": f"{plain / bare:.2f}x",
                }
            )
            rows.append(
                {
                    "benchmark": "a hit on Redis with fresh_for (value and write time: one MGET)",
                    "ours": us(fresh),
                    "baseline": us(bare_f),
                    "ratio": f"{fresh / bare_f:.2f}x",
                }
            )
            # Stale serving: the entry is an hour old, its refresh takes 500 ms. While it runs,
            # reads of it alternate with hits of a fresh key of the same warmer (same machine load).
            get("refresh", "stale-key")
            get("refresh", "fresh-key")
            found = readpath.reader("refresh")
            bench.set(found.names.companion("stale-key"), time.time() - 3600, 300)
            get("refresh", "stale-key")  # starts the refresh
            stale_times: list[float] = []
            hit_times: list[float] = []
            while found.refresher.pending("stale-key"):
                for target, times in (("stale-key", stale_times), ("fresh-key", hit_times)):
                    start = time.perf_counter()
                    get("refresh", target)
                    times.append(time.perf_counter() - start)
            found.refresher.wait_idle(10)
            rows.append(
                {
                    "benchmark": f"stale serving on Redis: p99 of get during a 500 ms refresh "
                    f"({len(stale_times)} reads)",
                    "ours": us(p99(stale_times)),
                    "baseline": f"a fresh hit's p99: {us(p99(hit_times))}",
                    "ratio": f"{p99(stale_times) / p99(hit_times):.2f}x",
                }
            )
            readpath.reset()
            close_redis(bench)
        locmem = {
            **settings.CACHES,
            "bench": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rb"},
        }
        with override_settings(CACHES=locmem, CACHE_WARMERS=warmers("bench")):
            get = django_cachewarmers.get
            bench = caches["bench"]
            for name in ("plain", "fresh"):
                get(name, f"hit-{name}")
            calls = 20000
            plain, bare = side_by_side(
                lambda: get("plain", "hit-plain"), lambda: bench.get("hit-plain"), calls
            )
            fresh, bare_f = side_by_side(
                lambda: get("fresh", "hit-fresh"), lambda: bench.get("hit-fresh"), calls
            )
            rows.append(
                {
                    "benchmark": "a hit on LocMem: get vs a bare cache.get (no fresh_for)",
                    "ours": us(plain),
                    "baseline": us(bare),
                    "ratio": f"{plain / bare:.2f}x",
                }
            )
            rows.append(
                {
                    "benchmark": "a hit on LocMem with fresh_for (get_many: value, write time)",
                    "ours": us(fresh),
                    "baseline": us(bare_f),
                    "ratio": f"{fresh / bare_f:.2f}x",
                }
            )
            readpath.reset()
    finally:
        server.cleanup()
    return rows


if __name__ == "__main__":
    worker_main(sys.argv[1:])
