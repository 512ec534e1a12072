"""Warming into a real memcached (PyMemcacheCache) the suite starts: memcached's own limits.

memcached refuses a key over 250 BYTES (not characters) and, by default, an item over 1 MB. Each is
one failed key, never an outage that stops the run (issue 16, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider, WarmingConfig
from tests.memcached_server import MemcachedServer

#: 163 characters, 322 bytes in UTF-8: Django does not warn about it, memcached refuses it.
CYRILLIC_KEY = "key:" + "я" * 159


def warmer(cache: Any, keys: list[str], loader: Any, **config: Any) -> CacheWarmer:
    return CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        CallableValueLoader(loader),
        WarmingConfig(**{"max_workers": 1, "max_retries": 0, **config}),
        name="memcached",
    )


def test_a_key_over_250_bytes_fails_alone_as_an_invalid_key(memcached_cache: Any) -> None:
    assert (len(CYRILLIC_KEY), len(CYRILLIC_KEY.encode())) == (163, 322)
    keys = ["a", "b", "c", "d", CYRILLIC_KEY]
    stats = warmer(memcached_cache, keys, lambda k: f"value of {k}", batch_size=5).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (4, 1, None)
    assert stats.errors[0].startswith(f"{CYRILLIC_KEY}: invalid cache key: 325 bytes in UTF-8")
    assert "memcached refuses keys over 250 bytes" in stats.errors[0]
    assert memcached_cache.get_many(["a", "b", "c", "d"]) == {
        k: f"value of {k}" for k in ["a", "b", "c", "d"]
    }


def test_the_byte_limit_is_memcacheds_only(redis_cache: Any) -> None:
    """Redis takes the same key: the rule knows each backend's real limit."""
    stats = warmer(redis_cache, [CYRILLIC_KEY], lambda k: "v").warm()
    assert (stats.keys_warmed, stats.keys_failed) == (1, 0)
    assert redis_cache.get(CYRILLIC_KEY) == "v"


def test_a_value_over_the_item_limit_fails_only_its_key(memcached_cache: Any) -> None:
    keys = [f"k{i}" for i in range(6)]
    big = b"x" * 2_000_000  # over memcached's default 1 MB item size

    stats = warmer(
        memcached_cache, keys, lambda k: big if k == "k2" else f"small {k}", batch_size=2
    ).warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (5, 1, None)
    assert stats.errors[0].startswith("k2: value not cacheable: MemcacheServerError")
    assert "too large" in stats.errors[0]
    others = [k for k in keys if k != "k2"]
    assert memcached_cache.get_many(others) == {k: f"small {k}" for k in others}


def test_memcached_stopped_is_an_outage_that_stops_the_run() -> None:
    from django.core.cache.backends.memcached import PyMemcacheCache

    server = MemcachedServer()
    server.start()
    cache = PyMemcacheCache(server.location, {})
    try:
        assert warmer(cache, ["a", "b"], str).warm().keys_warmed == 2
        server.stop()
        stats = warmer(cache, [f"k{i}" for i in range(6)], str, batch_size=2).warm()
        assert (stats.keys_warmed, stats.keys_failed) == (0, 6)
        assert stats.run_error is not None
        assert stats.run_error.startswith("the cache was unavailable")
    finally:
        cache.close()
        server.stop()


def test_ttls_are_applied_as_memcached_counts_them(
    memcached_cache: Any, memcached_server: MemcachedServer
) -> None:
    warmer(memcached_cache, ["ttl"], str, cache_timeout=600).warm()
    warmer(memcached_cache, ["forever"], str, cache_timeout=None).warm()
    ttl = memcached_server.ttl(memcached_cache.make_key("ttl"))
    assert ttl is not None
    assert 595 <= ttl <= 600
    assert memcached_server.ttl(memcached_cache.make_key("forever")) == -1


FORK_SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive: this is the point
from django.conf import settings
settings.configure()
from django.core.cache.backends.memcached import PyMemcacheCache
from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider, WarmingConfig

cache = PyMemcacheCache(sys.argv[1], {})
# One warmer for parent and child, made before the fork as a pre-fork server's master makes it.
warmer = CacheWarmer(cache, StaticKeyProvider([]), CallableValueLoader(lambda k: "v:" + k),
                     WarmingConfig(batch_size=3, max_workers=2, warmup_timeout_s=10))
def warm(keys):
    return warmer.warm(keys)
parent = warm(["parent:%d" % i for i in range(10)])  # the pool's threads and sockets now exist
pid = os.fork()
if pid == 0:
    child = warm(["child:%d" % i for i in range(10)])
    os._exit(0 if (child.keys_warmed, child.keys_verified) == (10, 10) else 3)
_, status = os.waitpid(pid, 0)
again = warm(["parent-after:%d" % i for i in range(10)])
print(parent.keys_warmed, os.waitstatus_to_exitcode(status), again.keys_warmed)
"""


def test_warming_works_in_a_forked_child_and_in_its_parent(
    memcached_cache: Any, memcached_server: MemcachedServer
) -> None:
    """A pre-fork server (gunicorn --preload) warms after fork(): the child's warmer and its own
    memcached connections work, and so do the parent's."""
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, memcached_server.location],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(__file__).resolve().parent.parent),  # the project, importable as the suite
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "0", "10"], done.stderr
    assert memcached_cache.get("child:9") == "v:child:9"
    assert memcached_cache.get("parent-after:9") == "v:parent-after:9"


def test_a_child_forked_from_the_test_warms_through_the_same_cache_object(
    memcached_cache: Any,
) -> None:
    """os.fork() here: the child warms through the cache object (and warmer) its parent made and
    used, while the parent keeps using that object's connection; the parent then reads the
    child's keys back. The child must not write through the socket it inherited: the parent would
    read the child's replies (pymemcache raises on a foreign "VALUE" line, or misses keys)."""
    warmer = CacheWarmer(
        memcached_cache,
        StaticKeyProvider([]),
        CallableValueLoader(lambda k: "v:" + k),
        WarmingConfig(batch_size=5, max_workers=2, warmup_timeout_s=30),
        name="forked",
    )
    first = warmer.warm([f"before:{i}" for i in range(20)])  # sockets and pool threads exist now
    assert (first.keys_warmed, first.keys_verified) == (20, 20)
    child_keys = [f"child:{i}" for i in range(3000)]
    started, started_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive: the point
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            os.write(started_w, b"x")
            child = warmer.warm(child_keys)
            code = 0 if (child.keys_warmed, child.keys_verified) == (3000, 3000) else 4
        finally:
            os._exit(code)
    assert os.read(started, 1) == b"x"
    os.close(started)
    os.close(started_w)
    # Meanwhile the parent writes and reads through the same object's connection, directly.
    rounds, status = 0, None
    while status is None or rounds < 50:
        if status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
        batch = {f"parent:{rounds}:{j}": j for j in range(5)}
        memcached_cache.set_many(batch)
        assert memcached_cache.get_many(list(batch)) == batch
        rounds += 1
    assert os.waitstatus_to_exitcode(status) == 0  # the child warmed and read back its 3,000
    assert memcached_cache.get_many(child_keys) == {k: "v:" + k for k in child_keys}
    again = warmer.warm([f"after:{i}" for i in range(20)])
    assert (again.keys_warmed, again.keys_verified) == (20, 20)
