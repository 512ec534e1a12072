"""A bad value fails only its key, whatever it raises, on every backend and every write path.

The exception types here are ones the app never listed: a custom exception raised while pickling,
Django's ContentNotRenderedError, memcached's "object too large". Only a cache that stops
answering stops a run (tests/test_faults.py shows that side with a real Redis stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.template.response import TemplateResponse
from django.test import RequestFactory

from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider, WarmingConfig
from django_cachewarmers.backends.redis import RedisAdapter
from tests.memcached_server import MemcachedServer
from tests.redis_server import RedisServer, close_redis


class NobodyListedThis(Exception):
    """An exception type no list of "value errors" could know in advance."""


class Unpicklable:
    """Pickling it raises NobodyListedThis (through ``__reduce__``, as pickle calls it)."""

    def __reduce__(self) -> Any:
        raise NobodyListedThis("this object refuses to be pickled")


KEYS = [f"k{i}" for i in range(6)]


def warm(cache: Any, bad_key: str, bad_value: Any, **config: Any) -> Any:
    def load(key: str) -> Any:
        return bad_value if key == bad_key else {"key": key}

    return CacheWarmer(
        cache,
        StaticKeyProvider(KEYS),
        CallableValueLoader(load),
        WarmingConfig(**{"batch_size": 2, "max_workers": 1, "max_retries": 0, **config}),
        name="faults",
    )


@pytest.fixture(
    params=[
        "locmem",
        pytest.param("database", marks=pytest.mark.django_db),
        "file",
        "redis-script",
        "redis-pipeline",
        "django-redis",
        "memcached",
    ]
)
def any_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """Every backend the app supports, real, and the write path named."""
    name = request.param
    cache: Any
    if name == "locmem":
        cache = caches["default"]
    elif name == "database":
        cache = caches["db"]
    elif name == "file":
        cache = FileBasedCache(str(tmp_path / "files"), {})
    elif name.startswith("redis"):
        from django.core.cache.backends.redis import RedisCache

        server: RedisServer = request.getfixturevalue("redis_server")
        cache = RedisCache(f"{server.url}/6", {})
    elif name == "django-redis":
        from django_redis.cache import RedisCache as DjangoRedisCache

        server = request.getfixturevalue("redis_server")
        cache = DjangoRedisCache(f"{server.url}/7", {})
    else:
        from django.core.cache.backends.memcached import PyMemcacheCache

        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        cache = PyMemcacheCache(memcached.location, {})
    cache.clear()
    yield name, cache
    cache.clear()  # each is the suite's own: LocMem, its test database, tmp_path, own servers
    if name.startswith("redis"):
        close_redis(cache)
    elif name == "django-redis":
        cache.client.do_close_clients()
    elif name == "memcached":
        cache.close()


def run(name: str, cache: Any, bad_value: Any) -> Any:
    cache.set("k3", "good old value")
    warmer = warm(cache, "k3", bad_value)
    if name == "redis-pipeline":
        # The path taken when the server refuses scripts (see test_redis_writes.py for that server).
        assert isinstance(warmer.backend, RedisAdapter)
        warmer.backend.use_script = False
    return warmer.warm()


def test_a_value_raising_an_unlisted_exception_fails_only_its_key(any_cache: Any) -> None:
    name, cache = any_cache
    stats = run(name, cache, Unpicklable())
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (5, 1, None)
    assert stats.errors == [
        "k3: value not cacheable: NobodyListedThis: this object refuses to be pickled"
    ]
    assert cache.get("k3") == "good old value"  # never touched
    for key in ["k0", "k1", "k2", "k4", "k5"]:  # the keys after it were written too
        assert cache.get(key) == {"key": key}


def test_an_unrendered_template_response_fails_only_its_key(any_cache: Any) -> None:
    """Issue 14 item 3: pickling raises ContentNotRenderedError; no outage, 5 warmed, 1 failed."""
    name, cache = any_cache
    response = TemplateResponse(RequestFactory().get("/"), "nothing.html")
    stats = run(name, cache, response)
    assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (5, 1, None)
    assert stats.errors[0].startswith("k3: value not cacheable: ContentNotRenderedError")
    assert cache.get("k5") == {"key": "k5"}
