"""render_page on Redis page caches where the engine's write path must step aside or recover.

A render's two page-cache entries go through the engine's Redis write path (one script call) only
for a cache that reads and writes as Django's ``RedisCache`` or django-redis's ``DefaultClient``
do; anything else keeps its own ``set_many`` and the render reads the entries back. Each test
ends with a real anonymous request through Django's cache middleware: a hit exactly when
``render_page`` said the page was warmed. On the suite's own redis-server (and a second one
started here), never a user's.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.test import override_settings
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient

from django_cachewarmers import STORED_BY_LOADER, pages, tracking
from django_cachewarmers.backends.redis import (
    RedisAdapter,
    RedisWriter,
    _is_no_script,
    _is_refused_command,
)
from django_cachewarmers.core.backends import adapter_for
from django_cachewarmers.pages import PageNotWarmed, render_page
from tests.middleware_stacks import PER_SITE
from tests.redis_server import RedisServer, close_redis
from tests.test_pages import hit
from tests.testapp import views

URL = "http://testserver/shaped/plain/"


class EnvelopeRedisCache(RedisCache):
    """Stores every value inside an envelope, and reads a value outside one as a miss."""

    def set(self, key: Any, value: Any, timeout: Any = 300, version: Any = None) -> None:
        super().set(key, ("env1", value), timeout, version)

    def set_many(self, data: Any, timeout: Any = 300, version: Any = None) -> list[Any]:
        return super().set_many({k: ("env1", v) for k, v in data.items()}, timeout, version)

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        value = super().get(key, None, version)
        return value[1] if isinstance(value, tuple) and value[:1] == ("env1",) else default

    def get_many(self, keys: Any, version: Any = None) -> dict[Any, Any]:
        found = super().get_many(keys, version)
        return {k: v[1] for k, v in found.items() if isinstance(v, tuple) and v[:1] == ("env1",)}


class ReadOnlyRedisCache(RedisCache):
    """Drops every write (a maintenance switch)."""

    def set(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_many(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


class RoutingClient(RedisCacheClient):
    """Picks its server per key, as Django's ``get_client(key)`` hook allows (here always the
    first one: what matters is that the method is the project's own)."""

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return super().get_client(key, write=write)


class RoutingRedisCache(RedisCache):
    def __init__(self, server: Any, params: Any) -> None:
        super().__init__(server, params)
        self._class = RoutingClient


class BytearraySerializer:
    """A serializer returning ``bytearray`` (redis-py accepts it; hiredis' packer does not)."""

    def dumps(self, obj: Any) -> Any:
        return bytearray(pickle.dumps(obj))

    def loads(self, data: Any) -> Any:
        return pickle.loads(data)


def render(url: str = URL) -> str:
    """The string "OK", or the reason render_page gave."""
    try:
        assert render_page(url) is STORED_BY_LOADER
    except PageNotWarmed as exc:
        return str(exc)
    return "OK"


def evalsha_calls(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        calls: int = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        return calls
    finally:
        client.close()


def fast_path(cache: Any) -> bool:
    """Whether the engine's Redis write path takes ``cache``."""
    adapter = adapter_for(cache)
    assert isinstance(adapter, RedisWriter)
    return adapter.usable()


def page_cache(default: dict[str, Any]) -> Any:
    return override_settings(CACHES={**settings.CACHES, "default": default}, MIDDLEWARE=PER_SITE)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    tracking.reset()
    views.EXECUTIONS.clear()
    yield
    tracking.reset()


@pytest.mark.slow  # starts a redis-server of its own
@pytest.mark.django_db
def test_a_render_after_redis_forgot_the_script_still_warms(own_redis: RedisServer) -> None:
    """``SCRIPT FLUSH`` (a restart, a failover): redis-py's ``NoScriptError`` says "No matching
    script", without the code; the batch is sent again with the script, and every later render
    warms through the fast path."""
    admin = redis.Redis.from_url(own_redis.url)
    default = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
               "LOCATION": f"{own_redis.url}/0"}  # fmt: skip
    try:
        with page_cache(default):
            assert render("http://testserver/shaped/f0/") == "OK"
            adapter = caches["default"].__dict__[pages._REDIS_PATH]
            for n in range(1, 4):
                admin.script_flush()
                assert adapter.write({f"data:{n}": n}, 60, 0.0) == {}  # no exception: resent
                admin.script_flush()
                assert render(f"http://testserver/shaped/f{n}/") == "OK"
                assert hit(f"/shaped/f{n}/")
            assert adapter.use_script
            close_redis(caches["default"])
    finally:
        admin.close()


def test_noscript_and_oom_replies_are_told_apart_from_a_refused_script() -> None:
    from redis.exceptions import NoPermissionError, NoScriptError, OutOfMemoryError

    assert _is_no_script(NoScriptError("No matching script. Please use EVAL."))
    oom = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    assert not _is_refused_command(oom)
    assert not _is_no_script(oom)
    assert _is_refused_command(NoPermissionError("this user has no permissions to run 'evalsha'"))


@pytest.mark.slow  # starts a redis-server of its own
@pytest.mark.django_db
def test_out_of_memory_is_not_taken_for_a_refused_script(own_redis: RedisServer) -> None:
    """A full Redis (``noeviction``) refuses the write as it refuses Django's own ``set_many``
    (the page is not warmed); once memory is freed, the script is used again."""
    admin = redis.Redis.from_url(own_redis.url)
    default = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
               "LOCATION": f"{own_redis.url}/0"}  # fmt: skip
    try:
        with page_cache(default):
            assert render("http://testserver/shaped/a/") == "OK"
            adapter = caches["default"].__dict__[pages._REDIS_PATH]
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", admin.info("memory")["used_memory"] - 1000)
            assert render("http://testserver/shaped/b/") != "OK"
            admin.config_set("maxmemory", 0)
            assert adapter.use_script
            before = evalsha_calls(own_redis)
            assert render("http://testserver/shaped/c/") == "OK"
            assert evalsha_calls(own_redis) == before + 1
            assert hit("/shaped/c/")
            close_redis(caches["default"])
    finally:
        admin.close()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("backend", "served"),
    [
        ("tests.test_pages_redis.EnvelopeRedisCache", True),
        ("tests.test_pages_redis.RoutingRedisCache", True),
        ("tests.test_pages_redis.ReadOnlyRedisCache", False),
    ],
)
def test_a_redis_cache_with_its_own_methods_keeps_its_own_set_many(
    redis_server: RedisServer, backend: str, served: bool
) -> None:
    """A ``RedisCache`` subclass that overrides how values are written or read, or whose client
    class routes commands its own way, is written through its own ``set_many`` and read back:
    ``render_page`` says "warmed" exactly when the next real request is a hit."""
    default = {"BACKEND": backend, "LOCATION": f"{redis_server.url}/7"}
    with page_cache(default):
        caches["default"].clear()
        assert not fast_path(caches["default"])
        before = evalsha_calls(redis_server)
        outcome = render()
        assert evalsha_calls(redis_server) == before  # the engine's script was not used
        assert (outcome == "OK") is served, outcome
        assert hit("/shaped/plain/") is served
        caches["default"].clear()
        close_redis(caches["default"])


def test_a_warm_of_data_keys_into_an_envelope_cache_is_true_of_real_reads(
    redis_server: RedisServer,
) -> None:
    """The engine's data-key path too: the envelope cache's own ``set_many``, and its own
    ``get_many`` for the read-back, so every key counted warmed is one a real ``get`` finds."""
    from tests.test_redis_writes import warm

    cache = EnvelopeRedisCache(f"{redis_server.url}/8", {})
    cache.clear()
    try:
        keys = [f"k{i}" for i in range(20)]
        stats = warm(cache, keys=keys, cache_timeout=60)
        assert stats.keys_warmed == 20
        assert all(cache.get(key) is not None for key in keys)
        assert not RedisAdapter(cache).usable()
    finally:
        cache.clear()
        close_redis(cache)


@pytest.mark.django_db
def test_a_serializer_returning_bytearray_warms_pages_and_keys(redis_server: RedisServer) -> None:
    """hiredis' packer refuses a ``bytearray`` argument; the command is then packed by redis-py,
    which turns it into bytes, and the page is warmed."""
    default = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
               "LOCATION": f"{redis_server.url}/9",
               "OPTIONS": {"serializer": "tests.test_pages_redis.BytearraySerializer"}}  # fmt: skip
    with page_cache(default):
        caches["default"].clear()
        assert render() == "OK"
        assert hit("/shaped/plain/")
        adapter = caches["default"].__dict__[pages._REDIS_PATH]
        assert adapter.write({"data:1": {"a": 1}}, 60, 0.0) == {}
        assert caches["default"].get("data:1") == {"a": 1}
        caches["default"].clear()
        close_redis(caches["default"])


@pytest.mark.slow  # starts a redis-server of its own
@pytest.mark.django_db
@pytest.mark.parametrize(
    "backend", ["django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache"]
)
def test_with_replicas_a_render_is_checked_where_requests_read(
    redis_server: RedisServer, own_redis: RedisServer, backend: str
) -> None:
    """``LOCATION`` of a primary and a "replica" that does not replicate: Django's ``RedisCache``
    and django-redis read from the replica, so the render must be read back there (not taken
    from the primary's reply): not warmed, and indeed the next real request misses."""
    default = {"BACKEND": backend,
               "LOCATION": f"{redis_server.url}/3,{own_redis.url}/3"}  # fmt: skip
    primary = redis.Redis.from_url(f"{redis_server.url}/3")
    try:
        with page_cache(default):
            outcome = render()
            assert outcome != "OK"
            assert "the next anonymous GET would run the view" in outcome, outcome
            assert not hit("/shaped/plain/")
            close_redis(caches["default"])
    finally:
        primary.flushdb()
        primary.close()


class EnvelopeDjangoRedis(DjangoRedisCache):  # type: ignore[misc]  # django-redis is untyped
    """django-redis with values in an envelope, and a value outside one read as a miss."""

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return super().set(key, ("env1", value), *args, **kwargs)

    def set_many(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        return super().set_many({k: ("env1", v) for k, v in data.items()}, *args, **kwargs)

    def get(self, key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
        value = super().get(key, None, *args, **kwargs)
        return value[1] if isinstance(value, tuple) and value[:1] == ("env1",) else default

    def get_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        found = super().get_many(keys, *args, **kwargs)
        return {k: v[1] for k, v in found.items() if isinstance(v, tuple) and v[:1] == ("env1",)}


class WritesOffDjangoRedis(DjangoRedisCache):  # type: ignore[misc]  # django-redis is untyped
    """django-redis with writes switched off."""

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        return None


class ReadsOffClient(DefaultClient):  # type: ignore[misc]  # django-redis is untyped
    """A django-redis client whose reads are switched off: every get misses."""

    def get(self, key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
        return default

    def get_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        return {}


class OwnGetClient(DefaultClient):  # type: ignore[misc]  # django-redis is untyped
    """A django-redis client with a ``get`` of its own (and DefaultClient's ``get_many``)."""

    def get(self, key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
        return super().get(key, default, *args, **kwargs)


def test_a_django_redis_client_with_its_own_get_keeps_its_own_methods(
    redis_server: RedisServer,
) -> None:
    options = {"CLIENT_CLASS": "tests.test_pages_redis.OwnGetClient"}
    cache = DjangoRedisCache(f"{redis_server.url}/10", {"OPTIONS": options})
    assert not fast_path(cache)
    close_redis(cache)


@pytest.mark.parametrize(
    ("backend", "options", "readable"),
    [
        ("tests.test_pages_redis.EnvelopeDjangoRedis", {}, True),
        ("tests.test_pages_redis.WritesOffDjangoRedis", {}, False),
        (
            "django_redis.cache.RedisCache",
            {"CLIENT_CLASS": "tests.test_pages_redis.ReadsOffClient"},
            False,
        ),
    ],
)
def test_django_redis_with_its_own_methods_keeps_its_own_set_many(
    redis_server: RedisServer, backend: str, options: dict[str, Any], readable: bool
) -> None:
    """A django-redis cache subclass, or client class, that writes or reads its own way: the
    engine writes and reads back through its own methods, so a key counts as warmed exactly
    when a real ``get`` finds it."""
    from django.utils.module_loading import import_string

    from tests.test_redis_writes import warm

    cache = import_string(backend)(f"{redis_server.url}/10", {"OPTIONS": options})
    cache.clear()
    try:
        assert not fast_path(cache)
        keys = [f"k{i}" for i in range(20)]
        stats = warm(cache, keys=keys, cache_timeout=60)
        found = sum(cache.get(key) is not None for key in keys)
        assert found == (20 if readable else 0)
        assert stats.keys_warmed == found, stats.errors[:2]
    finally:
        cache.clear()
        close_redis(cache)


@pytest.mark.django_db
def test_a_page_on_an_envelope_django_redis_is_warmed_through_its_own_methods(
    redis_server: RedisServer,
) -> None:
    default = {"BACKEND": "tests.test_pages_redis.EnvelopeDjangoRedis",
               "LOCATION": f"{redis_server.url}/11"}  # fmt: skip
    with page_cache(default):
        caches["default"].clear()
        before = evalsha_calls(redis_server)
        assert render() == "OK"
        assert evalsha_calls(redis_server) == before
        assert hit("/shaped/plain/")
        caches["default"].clear()
        close_redis(caches["default"])


@pytest.mark.parametrize("backend", ["django", "django-redis"])
def test_a_small_connection_pool_keeps_set_many(redis_server: RedisServer, backend: str) -> None:
    """A write pool of 2 connections (``max_connections``) cannot lend the batches in flight
    theirs: the cache's own ``set_many``, one at a time, and every key is warmed."""
    from tests.test_redis_writes import warm

    # A database no other test uses: django-redis shares one pool per URL across the process.
    location = f"{redis_server.url}/{13 if backend == 'django' else 14}"
    if backend == "django":
        cache: Any = RedisCache(location, {"OPTIONS": {"max_connections": 2}})
    else:
        cache = DjangoRedisCache(
            location, {"OPTIONS": {"CONNECTION_POOL_KWARGS": {"max_connections": 2}}}
        )
    try:
        assert not fast_path(cache)
        keys = [f"k:{i}" for i in range(1000)]
        stats = warm(cache, keys=keys, cache_timeout=120)
        assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (1000, 0, None)
        assert cache.get("k:999") is not None
    finally:
        cache.clear()
        close_redis(cache)


def test_a_disk_error_is_not_taken_for_a_refused_script() -> None:
    """``MISCONF`` (a failing background save blocks writes for a while) says "disabled", but
    the server does not refuse scripts: the adapter must not switch to pipelines for good."""
    from redis.exceptions import ResponseError

    misconf = ResponseError(
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
        "to disk. Commands that may modify the data set are disabled, because this instance is "
        "configured to report errors during writes if RDB snapshotting fails "
        "(stop-writes-on-bgsave-error option)."
    )
    assert not _is_refused_command(misconf)
    assert _is_refused_command(ResponseError("This Redis command is not allowed from script"))
