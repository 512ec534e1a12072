"""Warming into a real Redis (the suite's own server): the pipelined write path."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from django_cachewarmers.backends.redis import RedisAdapter
from django_cachewarmers.core.backends import BackendAdapter, adapter_for
from django_cachewarmers.core.collector import WRITES_IN_FLIGHT
from tests.redis_server import RedisServer, close_redis

KEYS = [f"item:{i}" for i in range(250)]


def warm(cache: Any, keys: list[str] = KEYS, loader: Any = None, **config: Any) -> Any:
    config.setdefault("batch_size", 100)
    return CacheWarmer(
        cache,
        StaticKeyProvider(keys),
        CallableValueLoader(loader or (lambda k: {"key": k, "n": len(k)})),
        WarmingConfig(**config),
    ).warm()


def ttl(cache: Any, key: str) -> int:
    client = cache._cache.get_client(None)
    return int(client.ttl(cache.make_key(key)))


def test_the_redis_backend_is_recognised(redis_cache: Any) -> None:
    assert isinstance(adapter_for(redis_cache), RedisAdapter)
    assert type(adapter_for({})) is BackendAdapter


def test_values_written_by_the_pipeline_read_back_through_django(redis_cache: Any) -> None:
    stats = warm(redis_cache, cache_timeout=600)
    assert (stats.keys_warmed, stats.keys_failed) == (250, 0)
    assert redis_cache.get("item:7") == {"key": "item:7", "n": 6}
    assert redis_cache.get_many(["item:0", "item:249"]) == {
        "item:0": {"key": "item:0", "n": 6},
        "item:249": {"key": "item:249", "n": 8},
    }
    assert 595 <= ttl(redis_cache, "item:7") <= 600


def test_ttl_jitter_is_drawn_per_batch_and_within_bounds(redis_cache: Any) -> None:
    stats = CacheWarmer(
        redis_cache,
        StaticKeyProvider(KEYS),
        BatchValueLoader(lambda keys: {k: k for k in keys}),
        WarmingConfig(batch_size=10, max_workers=1, cache_timeout=1000, timeout_jitter=0.1),
    ).warm()
    assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
    ttls = [ttl(redis_cache, key) for key in KEYS]
    assert all(990 <= t <= 1100 for t in ttls)
    per_batch = [set(ttls[i : i + 10]) for i in range(0, 250, 10)]
    # One TTL per batch (a second may tick between two reads of it) ...
    assert all(max(batch) - min(batch) <= 1 for batch in per_batch)
    # ... drawn anew for each batch: 25 batches spread over up to 100 s.
    assert len({min(batch) for batch in per_batch}) > 5


def test_never_expire_and_the_caches_default(redis_cache: Any) -> None:
    warm(redis_cache, keys=["forever"], cache_timeout=None)
    assert ttl(redis_cache, "forever") == -1  # no expiry
    warm(redis_cache, keys=["default"])  # DEFAULT_TIMEOUT: the cache's own TIMEOUT (300 s)
    assert 295 <= ttl(redis_cache, "default") <= 300


def test_an_unpicklable_value_fails_only_its_key(redis_cache: Any) -> None:
    redis_cache.set("item:5", "good old value")

    def load(key: str) -> Any:
        return threading.Lock() if key == "item:5" else key

    stats = warm(redis_cache, loader=load)
    assert (stats.keys_warmed, stats.keys_failed) == (249, 1)
    assert stats.errors[0].startswith("item:5: value not cacheable: TypeError")
    assert redis_cache.get("item:5") == "good old value"
    assert redis_cache.get("item:6") == "item:6"


def test_one_script_call_per_batch(redis_cache: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.commands.core import Script

    from django_cachewarmers.backends.redis import RedisWriter

    calls: list[int] = []
    original = Script.__call__
    send = RedisWriter._send

    def spy(self: Any, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        calls.append(len(keys))
        return original(self, keys=keys, args=args, client=client)

    def spy_send(self: Any, client: Any, command: tuple[Any, ...], *args: Any) -> Any:
        calls.append(command[2] if command[0] == "EVALSHA" else -1)
        return send(self, client, command, *args)

    # Watch the class: the scripts still run on the real server, which counts them too.
    monkeypatch.setattr(Script, "__call__", spy)
    monkeypatch.setattr(RedisWriter, "_send", spy_send)
    server = redis_cache._cache.get_client(None, write=True)
    before = server.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    stats = warm(redis_cache, cache_timeout=60)
    assert stats.keys_warmed == 250
    assert calls == [100, 100, 50]
    assert server.info("commandstats")["cmdstat_evalsha"]["calls"] - before == 3


def test_a_server_that_refuses_scripts_gets_a_pipeline(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.cache.backends.redis import RedisCache

    admin = RedisCache(f"{redis_server.url}/4", {})
    client = admin._cache.get_client(None, write=True)
    client.acl_setuser(
        "noscript",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        categories=["+@all", "-@scripting"],
    )
    try:
        host_port = redis_server.url.removeprefix("redis://")
        cache = RedisCache(f"redis://noscript:pw@{host_port}/4", {})
        with caplog.at_level(logging.INFO, logger="django_cachewarmers"):
            stats = warm(cache, cache_timeout=60)
            again = warm(cache, cache_timeout=60)
        assert stats.keys_warmed == again.keys_warmed == 250
        assert cache.get("item:249") == {"key": "item:249", "n": 8}
        refusals = [r for r in caplog.records if "refused the warming script" in r.getMessage()]
        assert len(refusals) == 2  # once per warmer, not once per batch
        cache.clear()
        close_redis(cache)
    finally:
        client.acl_deluser("noscript")
        close_redis(admin)


def test_the_cache_proxy_takes_the_redis_fast_path(redis_server: RedisServer) -> None:
    # ``from django.core.cache import cache`` is Django's ConnectionProxy to caches["default"];
    # it must get the Redis adapter (per thread), not the generic set_many.
    from django.core.cache import cache, caches
    from django.test import override_settings

    from django_cachewarmers.backends.proxy import ProxyAdapter

    redis_caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{redis_server.url}/3",
        }
    }
    with override_settings(CACHES=redis_caches):
        try:
            warmer = CacheWarmer(
                cache,
                StaticKeyProvider(KEYS),
                CallableValueLoader(lambda k: {"key": k}),
                WarmingConfig(batch_size=100, cache_timeout=600, max_workers=2),
            )
            proxy = warmer.backend
            assert isinstance(proxy, ProxyAdapter)
            adapter = proxy.current()
            assert isinstance(adapter, RedisAdapter)
            assert adapter.cache is caches["default"]
            assert adapter._client is None
            stats = warmer.warm()
            assert (stats.keys_warmed, stats.keys_failed) == (250, 0)
            # The batches went through the Redis adapter (its client exists once it has written).
            assert proxy.current() is adapter
            client: Any = adapter._client  # (mypy narrowed it to None above)
            assert client is not None
            real = caches["default"]
            assert real.get("item:9") == {"key": "item:9"}
            assert 595 <= ttl(real, "item:9") <= 600

            # Another thread resolves the proxy to its own caches["default"] and adapter.
            seen: list[Any] = []
            thread = threading.Thread(
                target=lambda: seen.append((proxy.current(), caches["default"]))
            )
            thread.start()
            thread.join()
            other_adapter, other_cache = seen[0]
            assert isinstance(other_adapter, RedisAdapter)
            assert other_adapter is not adapter
            assert other_adapter.cache is other_cache is not real
            close_redis(other_cache)
        finally:
            caches["default"].clear()
            close_redis(caches["default"])


@pytest.mark.parametrize(
    "parser", ["redis.connection._RESP2Parser", "redis.connection._HiredisParser"]
)
def test_the_fast_path_with_either_reply_parser(redis_server: RedisServer, parser: str) -> None:
    """Django's OPTIONS reach redis-py's pool: ``parser_class`` picks redis-py's own parser or
    hiredis's. Same commands, same entries, whichever parses the replies."""
    from django.core.cache.backends.redis import RedisCache

    pytest.importorskip("hiredis")  # in the test extra; both parsers must be tried
    cache = RedisCache(f"{redis_server.url}/5", {"OPTIONS": {"parser_class": parser}})
    try:
        stats = warm(cache, cache_timeout=600)
        assert (stats.keys_warmed, stats.keys_verified) == (250, 250)
        client = cache._cache.get_client(None)
        connection = client.connection_pool.get_connection()
        try:
            used = type(connection._parser).__name__
            # redis-py's own parser for the protocol it speaks (RESP3 is redis-py 8's default).
            expected = (
                {"_HiredisParser"} if "Hiredis" in parser else {"_RESP2Parser", "_RESP3Parser"}
            )
            assert used in expected
        finally:
            client.connection_pool.release(connection)
        assert cache.get("item:3") == {"key": "item:3", "n": 6}
        assert 595 <= ttl(cache, "item:3") <= 600
        none = warm(cache, keys=["forever"], cache_timeout=None)  # one MSET
        assert none.keys_verified == 1
        assert ttl(cache, "forever") == -1
    finally:
        cache.clear()
        close_redis(cache)


def test_a_run_writes_each_batch_while_it_gathers_the_next(
    redis_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is sent, then the next one gathered and sent, then the first one's reply read:
    the server stores one batch while the engine prepares the next."""
    from django_cachewarmers.backends.redis import RedisWriter

    events: list[str] = []
    send = RedisWriter._send

    def spy_send(self: Any, client: Any, command: tuple[Any, ...], *args: Any) -> Any:
        number = sum(event.startswith("sent") for event in events) + 1
        events.append(f"sent {number}")
        finish = send(self, client, command, *args)

        def finished() -> Any:
            events.append(f"answered {number}")
            return finish()

        return finished

    monkeypatch.setattr(RedisWriter, "_send", spy_send)
    stats = warm(redis_cache, cache_timeout=60, batch_size=25)  # 10 batches
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (250, 0, 250)
    expected = []
    for number in range(1, 11):
        expected.append(f"sent {number}")
        if number > WRITES_IN_FLIGHT:  # the oldest one is answered once another one is sent
            expected.append(f"answered {number - WRITES_IN_FLIGHT}")
    expected += [f"answered {n}" for n in range(11 - WRITES_IN_FLIGHT, 11)]
    assert events == expected
    assert redis_cache.get("item:249") == {"key": "item:249", "n": 8}


def test_a_server_that_lost_the_script_mid_run_gets_it_again(redis_cache: Any) -> None:
    """The script is loaded once per adapter and batches go out as EVALSHA; a server that
    forgot it (SCRIPT FLUSH, a restart, a failover) answers NOSCRIPT and the batch is sent
    again with the script."""
    warmer = CacheWarmer(
        redis_cache,
        StaticKeyProvider(KEYS),
        CallableValueLoader(lambda k: k),
        WarmingConfig(batch_size=100, cache_timeout=60),
    )
    assert warmer.warm().keys_warmed == 250
    server = redis_cache._cache.get_client(None, write=True)
    redis_cache.clear()
    server.script_flush()
    stats = warmer.warm()
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (250, 0, 250)
    assert [redis_cache.get(key) for key in KEYS] == KEYS
    assert 55 <= ttl(redis_cache, "item:0") <= 60


def test_a_failing_load_fails_only_its_key_while_batches_are_in_flight(redis_cache: Any) -> None:
    redis_cache.set("item:57", "good old value")

    def load(key: str) -> str:
        if key == "item:57":
            raise LookupError("no such item")
        return key

    stats = warm(redis_cache, loader=load, cache_timeout=60)
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (249, 1, 249)
    assert stats.errors == ["item:57: LookupError: no such item"]
    assert redis_cache.get("item:57") == "good old value"
    assert redis_cache.get_many(["item:56", "item:58"]) == {
        "item:56": "item:56",
        "item:58": "item:58",
    }


def test_a_redis_outage_with_a_batch_in_flight_stops_the_run_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away between two batches: the batch whose reply cannot be read and
    every later key fail with the outage, one ERROR line, nothing raised."""
    from django.core.cache.backends.redis import RedisCache

    own = RedisServer()
    own.start()
    try:
        cache = RedisCache(f"{own.url}/0", {})

        def load(key: str) -> str:
            if key == "item:150":
                own.stop()
            return key

        with caplog.at_level(logging.INFO, logger="django_cachewarmers"):
            stats = warm(cache, loader=load, cache_timeout=60, max_workers=1)
        assert stats.keys_warmed + stats.keys_failed == 250
        assert stats.keys_warmed <= 100
        assert stats.run_error is not None
        assert stats.run_error.startswith("the cache was unavailable")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "stopping this run" in errors[0].getMessage()
        close_redis(cache)
    finally:
        own.cleanup()


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_commands_are_packed_as_redis_py_packs_them(parser: str) -> None:
    from redis.connection import Connection, PythonRespSerializer

    from django_cachewarmers.backends.redis import _pack

    connection = Connection()  # type: ignore[no-untyped-call]
    if parser == "python":
        connection._command_packer = PythonRespSerializer(
            connection._buffer_cutoff, connection.encoder.encode
        )
    else:
        pytest.importorskip("hiredis", reason="hiredis is in the test extra")
    for command in [
        ("EVALSHA", "f" * 40, 2, ":1:clé", ":1:b", "PX", 600_000, b"\x80\x05data", 1234),
        ("MSET", ":1:a", b"x" * 10_000, ":1:b", b""),
        ("SET", "k", 1.5),  # not one of ours: packed (or refused) by redis-py itself
    ]:
        ours = b"".join(_pack(connection, command))
        assert ours == b"".join(connection.pack_command(*command))  # type: ignore[no-untyped-call]
