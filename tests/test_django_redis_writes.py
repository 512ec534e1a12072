"""Warming into the real django-redis package on the suite's own redis-server: its fast path.

Every value is read back through django-redis's own ``get`` (its serializer, compressor and key
function), every TTL through the redis client's ``PTTL`` (django-redis counts in milliseconds).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django_redis.cache import RedisCache as DjangoRedisCache

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from django_cachewarmers.backends.django_redis import DjangoRedisAdapter
from django_cachewarmers.core.backends import adapter_for
from tests.redis_server import RedisServer, SentinelServer

KEYS = [f"item:{i}" for i in range(250)]


def value_of(key: str) -> dict[str, Any]:
    return {"key": key, "n": int(key.split(":")[1])}


def custom_key(key: str, key_prefix: str, version: int) -> str:
    """A project's own KEY_FUNCTION: not Django's "prefix:version:key"."""
    return f"kf/{key_prefix}/v{version}/{key}"


@pytest.fixture
def make_cache(redis_server: RedisServer) -> Iterator[Callable[..., Any]]:
    """Makes django-redis caches on the suite's own server (database 10); empties and closes
    each one after the test."""
    made: list[Any] = []

    def make(location: Any = None, **options: Any) -> Any:
        params = {"OPTIONS": options, **options.pop("params", {})}
        cache = DjangoRedisCache(location or f"{redis_server.url}/10", params)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.clear()  # only ever the suite's own server
        cache.client.do_close_clients()


def warm(cache: Any, keys: list[str] = KEYS, loader: Any = value_of, **config: Any) -> Any:
    return CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        CallableValueLoader(loader),
        WarmingConfig(**{"batch_size": 100, **config}),
        name="django-redis",
    ).warm()


def django_redis_adapter(cache: Any) -> DjangoRedisAdapter:
    adapter = adapter_for(cache)
    assert isinstance(adapter, DjangoRedisAdapter)
    return adapter


def pttl(cache: Any, key: str) -> int:
    return int(cache.client.get_client(write=False).pttl(cache.make_key(key)))


def raw(cache: Any, key: str) -> Any:
    return cache.client.get_client(write=False).get(cache.make_key(key))


def script_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The key counts of the scripts run from now on (on the real server): the batches sent as
    ``EVALSHA`` without waiting for the reply, and any script call through redis-py."""
    from redis.commands.core import Script

    from django_cachewarmers.backends.redis import RedisWriter

    calls: list[int] = []
    original = Script.__call__
    send = RedisWriter._send

    def spy(self: Any, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        calls.append(len(keys))
        return original(self, keys=keys, args=args, client=client)

    def spy_send(self: Any, client: Any, command: tuple[Any, ...], *args: Any) -> Any:
        if command[0] == "EVALSHA":
            calls.append(command[2])
        return send(self, client, command, *args)

    monkeypatch.setattr(Script, "__call__", spy)
    monkeypatch.setattr(RedisWriter, "_send", spy_send)
    return calls


def test_the_default_client_takes_the_fast_path_one_script_call_per_batch(
    make_cache: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache()
    adapter = adapter_for(cache)
    assert isinstance(adapter, DjangoRedisAdapter)
    assert adapter.usable()
    calls = script_calls(monkeypatch)
    stats = warm(cache, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (250, 0, 250)
    assert calls == [100, 100, 50]
    for key in KEYS:
        assert cache.get(key) == value_of(key)
    assert cache.get_many(["item:0", "item:249"]) == {
        "item:0": value_of("item:0"),
        "item:249": value_of("item:249"),
    }
    # django-redis's own set writes PX milliseconds: so do we.
    assert 595_000 <= pttl(cache, "item:7") <= 600_000
    assert cache.ttl("item:7") in (599, 600)


def test_jitter_is_one_ttl_per_batch_in_milliseconds(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()
    stats = CacheWarmer(
        cache,
        StaticKeyProvider(KEYS),
        BatchValueLoader(lambda keys: {k: value_of(k) for k in keys}),
        WarmingConfig(batch_size=10, max_workers=1, cache_timeout=100, timeout_jitter=0.5),
    ).warm()
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    ttls = [pttl(cache, key) for key in KEYS]
    assert all(99_000 <= t <= 150_000 for t in ttls), ttls
    batches = [ttls[i : i + 10] for i in range(0, 250, 10)]
    # One TTL per batch: its keys' PTTLs differ only by the milliseconds between the reads ...
    assert all(max(b) - min(b) < 1_000 for b in batches)
    # ... and each batch draws its own: 25 batches over 50 s, to the millisecond.
    assert len({min(b) // 100 for b in batches}) > 5
    for key in KEYS[::25]:
        assert cache.get(key) == value_of(key)


def test_never_expire_is_one_mset_that_clears_an_old_ttl(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()
    cache.set("item:1", "old", timeout=30)
    assert pttl(cache, "item:1") > 0
    stats = warm(cache, cache_timeout=None)
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    assert pttl(cache, "item:1") == -1
    assert cache.get("item:1") == value_of("item:1")


def test_the_caches_own_timeout_is_the_default(make_cache: Callable[..., Any]) -> None:
    cache = make_cache(params={"TIMEOUT": 500})
    warm(cache, keys=["item:1"])
    assert 495_000 <= pttl(cache, "item:1") <= 500_000


def test_compressor_and_json_serializer_are_honoured(make_cache: Callable[..., Any]) -> None:
    cache = make_cache(
        SERIALIZER="django_redis.serializers.json.JSONSerializer",
        COMPRESSOR="django_redis.compressors.zlib.ZlibCompressor",
        # Compress every value, however small (django-redis's default leaves values < 15 bytes).
        COMPRESS_MIN_LENGTH=1,
    )
    big = {"key": "big", "text": "x" * 5000}

    def load(key: str) -> Any:
        return big if key == "item:3" else value_of(key)

    stats = warm(cache, loader=load, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (250, 0, 250)
    assert cache.get("item:3") == big
    assert cache.get("item:4") == value_of("item:4")
    # Stored as django-redis stores it: JSON, then zlib.
    assert json.loads(zlib.decompress(raw(cache, "item:3"))) == big
    assert len(raw(cache, "item:3")) < 200  # compressed, not 5,000 bytes
    assert json.loads(zlib.decompress(raw(cache, "item:4"))) == value_of("item:4")


def test_a_value_the_serializer_refuses_fails_only_its_key(make_cache: Callable[..., Any]) -> None:
    cache = make_cache(SERIALIZER="django_redis.serializers.json.JSONSerializer")
    cache.set("item:5", "good old value", timeout=600)

    def load(key: str) -> Any:
        return {1, 2} if key == "item:5" else value_of(key)  # a set is not JSON

    stats = warm(cache, loader=load, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_failed) == (249, 1)
    assert stats.errors[0].startswith("item:5: value not cacheable: TypeError")
    assert cache.get("item:5") == "good old value"
    assert cache.get("item:6") == value_of("item:6")


def test_ints_stay_digits_as_django_redis_stores_them(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()
    stats = warm(cache, keys=["n:1", "n:2"], loader=lambda k: int(k[2:]) * 1000, cache_timeout=60)
    assert (stats.keys_warmed, stats.keys_verified) == (2, 2)
    assert raw(cache, "n:2") == b"2000"
    assert cache.get("n:2") == 2000
    assert cache.incr("n:2") == 2001  # a real int on the server, as django-redis's set leaves it


def test_key_function_prefix_and_version_are_honoured(make_cache: Callable[..., Any]) -> None:
    cache = make_cache(
        params={"KEY_FUNCTION": "tests.test_django_redis_writes.custom_key", "KEY_PREFIX": "shop"}
    )
    cache.version = 3
    stats = warm(cache, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    assert cache.client.make_key("item:9") == "kf/shop/v3/item:9"
    assert cache.get("item:9") == value_of("item:9")
    assert raw(cache, "item:9") is not None  # under the key the key function made
    client = cache.client.get_client(write=False)
    assert client.exists("kf/shop/v3/item:9") == 1


def test_herd_client_keeps_its_own_set_many(
    make_cache: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache(CLIENT_CLASS="django_redis.client.HerdClient")
    assert not django_redis_adapter(cache).usable()
    calls = script_calls(monkeypatch)
    stats = warm(cache, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    assert calls == []  # its set_many: values packed with the herd marker
    assert cache.get("item:8") == value_of("item:8")


# django-redis 7.0 passes client=None from its cache to ShardClient.get and from set_many to set,
# which warn about it (an upstream quirk, not this app's: every get and set_many there warns).
@pytest.mark.filterwarnings("ignore:.* on sharded client should not specify client:UserWarning")
def test_shard_client_keeps_its_own_set_many(
    make_cache: Callable[..., Any], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = [f"{redis_server.url}/11", f"{redis_server.url}/12"]
    cache = make_cache(shards, CLIENT_CLASS="django_redis.client.ShardClient")
    assert not django_redis_adapter(cache).usable()
    calls = script_calls(monkeypatch)
    stats = warm(cache, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    assert calls == []
    assert cache.get("item:8") == value_of("item:8")
    per_shard = [cache.client.get_server(cache.make_key(k)) for k in KEYS]
    assert len(set(map(id, per_shard))) == 2  # spread over both shards, as its set_many spreads


def test_a_server_that_refuses_scripts_gets_a_pipeline(
    make_cache: Callable[..., Any], redis_server: RedisServer
) -> None:
    admin = make_cache()
    client = admin.client.get_client(write=True)
    client.acl_setuser(
        "noscript-dr",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        categories=["+@all", "-@scripting"],
    )
    try:
        host_port = redis_server.url.removeprefix("redis://")
        cache = DjangoRedisCache(f"redis://noscript-dr:pw@{host_port}/10", {})
        try:
            warmer = CacheWarmer(
                cache,
                StaticKeyProvider(KEYS),
                CallableValueLoader(value_of),
                WarmingConfig(batch_size=100, cache_timeout=60),
            )
            stats = warmer.warm()
            assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
            assert isinstance(warmer.backend, DjangoRedisAdapter)
            assert warmer.backend.use_script is False  # asked once, then the pipeline
            assert cache.get("item:249") == value_of("item:249")
            assert 55_000 <= pttl(cache, "item:249") <= 60_000
        finally:
            cache.clear()
            cache.client.do_close_clients()
    finally:
        client.acl_deluser("noscript-dr")


@pytest.fixture
def sentinel(redis_server: RedisServer) -> Iterator[SentinelServer]:
    """A Sentinel of the suite's own, monitoring the suite's redis-server."""
    server = SentinelServer(redis_server)
    server.start()
    yield server
    server.cleanup()


@pytest.mark.slow  # starts a Redis Sentinel
def test_a_sentinel_client_takes_the_fast_path(
    sentinel: SentinelServer, make_cache: Callable[..., Any], redis_server: RedisServer
) -> None:
    """django-redis's ``SentinelClient`` (the primary found through a real Sentinel): it only
    connects differently, so a batch is one script call on the primary, and every value reads
    back through django-redis's own ``get`` (from the replica pool, the primary here)."""
    import redis

    cache = make_cache(
        f"redis://{sentinel.service}/10",
        CLIENT_CLASS="django_redis.client.SentinelClient",
        CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
        CONNECTION_POOL_CLASS="redis.sentinel.SentinelConnectionPool",
        SENTINELS=[("127.0.0.1", sentinel.port)],
    )
    adapter = django_redis_adapter(cache)
    assert adapter.usable()
    assert not adapter.reads_where_it_writes()  # a primary pool and a replica pool
    server = redis.Redis.from_url(redis_server.url)
    try:
        before = server.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        stats = warm(cache, cache_timeout=120)
        assert (stats.keys_warmed, stats.keys_failed, stats.run_error) == (250, 0, None)
        assert server.info("commandstats")["cmdstat_evalsha"]["calls"] - before == 3
        assert cache.get("item:249") == value_of("item:249")
        assert 110_000 < pttl(cache, "item:0") <= 120_000
    finally:
        server.close()
