"""``django_cachewarmers.get`` / ``aget``: read-through with single-flight, stale-while-revalidate
and stale-if-error, on a real LocMemCache and the suite's own redis-server.

Entries are made stale by writing an old write time into their companion key (what an entry
written long ago holds), never by sleeping; no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers import readpath, readstats, registry
from django_cachewarmers.core.readthrough import NoValue, ReadThrough
from tests.processes import wait_until
from tests.readpath_loaders import SOURCE, Source
from tests.redis_server import RedisServer, free_port

LOADERS = "tests.readpath_loaders"


def warmer(cache: str, **fields: Any) -> dict[str, Any]:
    return {
        "keys": f"{LOADERS}.product_keys",
        "loader": f"{LOADERS}.load",
        "cache": cache,
        "strategy": "lazy",
        "timeout": 300,
        "max_retries": 0,
        **fields,
    }


def warmers(cache: str) -> dict[str, Any]:
    return {
        "products": warmer(cache),
        "fresh": warmer(cache, fresh_for=60),
        "batch": {
            **warmer(cache),
            "loader": None,
            "batch_loader": f"{LOADERS}.load_batch",
        },
    }


@pytest.fixture
def source() -> Iterator[Source]:
    SOURCE.reset()
    readstats.reset()
    yield SOURCE
    SOURCE.release.set()  # no loader thread outlives the test
    for found in list(readpath._readers.values()):
        found.refresher.wait_idle(10)
    SOURCE.reset()


@pytest.fixture
def locmem(source: Source) -> Iterator[Any]:
    location = f"reads-{uuid.uuid4().hex[:8]}"
    caches_setting = {
        **settings.CACHES,
        "reads": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": location},
    }
    with override_settings(CACHES=caches_setting, CACHE_WARMERS=warmers("reads")):
        yield caches["reads"]
        caches["reads"].clear()


@pytest.fixture
def redis(source: Source, redis_server: RedisServer) -> Iterator[Any]:
    caches_setting = {
        **settings.CACHES,
        "reads": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{redis_server.url}/5",
            "KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        },
    }
    with override_settings(CACHES=caches_setting, CACHE_WARMERS=warmers("reads")):
        yield caches["reads"]
        caches["reads"].clear()  # the suite's own server, its own database


def reader(name: str) -> ReadThrough:
    return readpath.reader(name)


def make_stale(cache: Any, name: str, key: str) -> None:
    """Give ``key``'s entry the write time of an entry written an hour ago."""
    cache.set(reader(name).names.companion(key), time.time() - 3600, 300)


def counts(name: str) -> dict[str, int]:
    return readstats.counts(name).totals()


# -- a plain read-through ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["products", "fresh", "batch"])
@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_a_miss_is_loaded_written_and_then_hit(
    name: str, backend: str, request: pytest.FixtureRequest, source: Source
) -> None:
    cache = request.getfixturevalue(backend)
    assert django_cachewarmers.get(name, "product:7") == "value of product:7"
    assert source.loads == ["product:7"]
    # The value itself is stored under the key: a plain cache.get reads it.
    assert cache.get("product:7") == "value of product:7"
    assert django_cachewarmers.get(name, "product:7") == "value of product:7"
    assert source.loads == ["product:7"]  # the second read was a hit
    assert counts(name) == {
        "hits": 1,
        "misses": 1,
        "stale": 0,
        "refreshes": 0,
        "refresh_failures": 0,
    }
    companion = reader(name).names.companion("product:7")
    if name == "fresh":  # the write time beside it, only for warmers with fresh_for
        assert isinstance(cache.get(companion), float)
    else:
        assert cache.get(companion) is None


def test_get_reads_values_written_by_user_code(locmem: Any, source: Source) -> None:
    locmem.set("product:1", {"name": "lamp"})
    assert django_cachewarmers.get("products", "product:1") == {"name": "lamp"}
    assert source.loads == []


def test_the_miss_is_written_with_the_warmers_ttl(locmem: Any, source: Source) -> None:
    django_cachewarmers.get("products", "product:3")
    full = locmem.make_key("product:3")
    expires = locmem._expire_info[full]
    assert 290 < expires - time.time() <= 300  # timeout 300 of the warmer, not the cache's


def test_warmed_entries_are_fresh_and_companions_are_not_counted(
    locmem: Any, source: Source
) -> None:
    stats = django_cachewarmers.warm("fresh")
    assert stats is not None
    # Two keys written and read back; their companions are neither counted nor read back.
    assert (stats.keys_warmed, stats.keys_failed, stats.keys_verified) == (2, 0, 2)
    assert isinstance(locmem.get(reader("fresh").names.companion("product:1")), float)
    source.loads.clear()
    assert django_cachewarmers.get("fresh", "product:1") == "value of product:1"
    assert source.loads == []  # fresh since the warm wrote it: no refresh
    assert counts("fresh")["hits"] == 1
    assert not reader("fresh").refresher.pending("product:1")


# -- single-flight ----------------------------------------------------------------------------


def read_in_threads(name: str, key: str, count: int) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = []

    def read() -> None:
        try:
            results.append(django_cachewarmers.get(name, key))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=read) for _ in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_concurrent_misses_in_one_process_load_once(
    backend: str, request: pytest.FixtureRequest, source: Source
) -> None:
    request.getfixturevalue(backend)
    source.hold()
    found = reader("products")
    results, threads = read_in_threads("products", "product:9", 20)
    wait_until(lambda: found._flight.waiters("product:9") == 19, 30, "19 waiting readers")
    source.release.set()
    for thread in threads:
        thread.join(30)
    assert results == ["value of product:9"] * 20
    assert source.loads == ["product:9"]
    assert counts("products")["misses"] == 20


def test_a_failed_load_raises_the_same_exception_to_every_waiter(
    locmem: Any, source: Source
) -> None:
    source.hold()
    source.error = ConnectionError("database down")
    found = reader("products")
    results, threads = read_in_threads("products", "product:9", 10)
    wait_until(lambda: found._flight.waiters("product:9") == 9, 30, "9 waiting readers")
    source.release.set()
    for thread in threads:
        thread.join(30)
    assert len(results) == 10
    assert all(result is results[0] for result in results)
    assert isinstance(results[0], ConnectionError)
    assert source.loads == ["product:9"]


def test_a_cold_miss_that_fails_raises_and_writes_nothing(
    locmem: Any, source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    source.error = ValueError("no such product")
    with (
        caplog.at_level(logging.WARNING, logger="django_cachewarmers"),
        pytest.raises(ValueError, match="no such product"),
    ):
        django_cachewarmers.get("fresh", "product:404")
    names = reader("fresh").names
    assert locmem.get("product:404") is None
    assert locmem.get(names.companion("product:404")) is None
    assert locmem.get(names.name("load", "product:404")) is None  # the lock was released
    assert any("product:404" in r.getMessage() for r in caplog.records)
    source.error = None  # the next read loads again
    assert django_cachewarmers.get("fresh", "product:404") == "value of product:404"


def test_a_loader_returning_none_is_a_failure_as_in_a_warm(locmem: Any, source: Source) -> None:
    source.values["product:0"] = None
    with pytest.raises(NoValue, match="returned None"):
        django_cachewarmers.get("products", "product:0")
    assert "product:0" not in [k.split(":", 2)[-1] for k in locmem._cache]
    assert django_cachewarmers.NoValue is NoValue


def test_a_batch_loader_leaving_the_key_out_is_no_value(locmem: Any, source: Source) -> None:
    definition = {**warmer("reads"), "loader": None, "batch_loader": f"{LOADERS}.load_nothing"}
    with override_settings(CACHE_WARMERS={"empty": definition}):
        with pytest.raises(NoValue, match="no value for 'product:1'"):
            django_cachewarmers.get("empty", "product:1")
        assert locmem.get("product:1") is None


# -- stale-while-revalidate, stale-if-error ---------------------------------------------------


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_a_stale_entry_is_served_at_once_and_refreshed_once(
    backend: str, request: pytest.FixtureRequest, source: Source
) -> None:
    cache = request.getfixturevalue(backend)
    source.values["product:1"] = "old"
    assert django_cachewarmers.get("fresh", "product:1") == "old"
    make_stale(cache, "fresh", "product:1")
    source.values["product:1"] = "new"
    source.hold()  # the refresh cannot finish: a reader waiting for it would never return
    for _ in range(50):
        assert django_cachewarmers.get("fresh", "product:1") == "old"
    assert source.entered.wait(30)
    assert source.loads == ["product:1", "product:1"]  # the miss, then one refresh
    source.release.set()
    wait_until(lambda: cache.get("product:1") == "new", 30, "the refreshed value")
    assert reader("fresh").refresher.wait_idle(30)
    assert django_cachewarmers.get("fresh", "product:1") == "new"
    assert counts("fresh") == {
        "hits": 1,
        "misses": 1,
        "stale": 50,
        "refreshes": 1,
        "refresh_failures": 0,
    }
    assert source.loads == ["product:1", "product:1"]


def test_an_entry_without_a_write_time_counts_as_stale(locmem: Any, source: Source) -> None:
    locmem.set("product:2", "written by user code")
    assert django_cachewarmers.get("fresh", "product:2") == "written by user code"
    assert reader("fresh").refresher.wait_idle(30)
    assert locmem.get("product:2") == "value of product:2"
    assert counts("fresh")["stale"] == 1


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_a_failed_refresh_keeps_the_stale_value(
    backend: str, request: pytest.FixtureRequest, source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    cache = request.getfixturevalue(backend)
    source.values["product:1"] = "old"
    django_cachewarmers.get("fresh", "product:1")
    make_stale(cache, "fresh", "product:1")
    source.error = ConnectionError("database down")
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        assert django_cachewarmers.get("fresh", "product:1") == "old"  # never raised
        assert reader("fresh").refresher.wait_idle(30)
        # Later reads within the retry interval serve the stale value without another attempt.
        for _ in range(5):
            assert django_cachewarmers.get("fresh", "product:1") == "old"
            assert reader("fresh").refresher.wait_idle(30)
    assert cache.get("product:1") == "old"
    assert source.loads == ["product:1", "product:1"]
    assert counts("fresh")["refresh_failures"] == 1
    assert counts("fresh")["stale"] == 6
    failures = [r for r in caplog.records if "refreshing" in r.getMessage()]
    assert len(failures) == 1
    assert "ConnectionError: database down" in failures[0].getMessage()


# -- names, keys ------------------------------------------------------------------------------


def test_an_unknown_warmer_raises_unknown_warmer(locmem: Any) -> None:
    with pytest.raises(django_cachewarmers.UnknownWarmer) as info:
        django_cachewarmers.get("nope", "product:1")
    assert info.value is not None
    assert django_cachewarmers.UnknownWarmer is registry.UnknownWarmer
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("key", ["has space", "x" * 300, 42, ("a", 1), ["unhashable"]])
def test_a_key_a_warm_would_refuse_is_a_value_error_before_the_cache_is_touched(
    key: Any, source: Source
) -> None:
    # A cache nobody listens on: touching it would raise a connection error, not ValueError.
    dead = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
    }
    with (
        override_settings(
            CACHES={**settings.CACHES, "dead": dead}, CACHE_WARMERS={"w": warmer("dead")}
        ),
        pytest.raises(ValueError, match="invalid cache key"),
    ):
        django_cachewarmers.get("w", key)
    assert source.loads == []


def test_get_serves_keys_the_provider_does_not_list(locmem: Any, source: Source) -> None:
    assert "product:999" not in ["product:1", "product:2"]
    assert django_cachewarmers.get("products", "product:999") == "value of product:999"


def test_a_page_warmer_is_refused(locmem: Any) -> None:
    pages = {
        "keys": ["http://testserver/"],
        "loader": "django_cachewarmers.pages.render_page",
        "strategy": "lazy",
    }
    with (
        override_settings(CACHE_WARMERS={"pages": pages}),
        pytest.raises(ValueError, match="render_page"),
    ):
        django_cachewarmers.get("pages", "http://testserver/")


def test_a_dead_cache_is_read_around(source: Source, caplog: pytest.LogCaptureFixture) -> None:
    dead = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 0.2},
    }
    with (
        override_settings(
            CACHES={**settings.CACHES, "dead": dead}, CACHE_WARMERS={"w": warmer("dead")}
        ),
        caplog.at_level(logging.WARNING, logger="django_cachewarmers"),
    ):
        assert django_cachewarmers.get("w", "product:1") == "value of product:1"
    assert source.loads == ["product:1"]
    assert any("reading the cache failed" in r.getMessage() for r in caplog.records)


# -- async ------------------------------------------------------------------------------------


def test_aget_reads_and_loads_once_for_concurrent_callers(locmem: Any, source: Source) -> None:
    source.hold()

    async def main() -> list[Any]:
        calls = [
            asyncio.ensure_future(django_cachewarmers.aget("products", "product:5"))
            for _ in range(50)
        ]
        # The loop keeps running while the load is held: this coroutine releases it. Were the
        # loop blocked by the load, the release would never come (the loader gives up after 30 s
        # and every call would raise).
        while not source.entered.is_set():
            await asyncio.sleep(0.001)
        source.release.set()
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main()) == ["value of product:5"] * 50
    assert source.loads == ["product:5"]
    assert asyncio.run(django_cachewarmers.aget("products", "product:5")) == "value of product:5"
    assert source.loads == ["product:5"]


def test_aget_raises_as_get(locmem: Any, source: Source) -> None:
    source.error = KeyError("gone")
    with pytest.raises(django_cachewarmers.UnknownWarmer):
        asyncio.run(django_cachewarmers.aget("nope", "k"))
    with pytest.raises(ValueError, match="invalid cache key"):
        asyncio.run(django_cachewarmers.aget("products", "bad key"))
    with pytest.raises(KeyError, match="gone"):
        asyncio.run(django_cachewarmers.aget("products", "product:1"))


def test_a_cancelled_aget_does_not_cancel_the_others(locmem: Any, source: Source) -> None:
    source.hold()

    async def main() -> Any:
        first = asyncio.ensure_future(django_cachewarmers.aget("products", "product:6"))
        second = asyncio.ensure_future(django_cachewarmers.aget("products", "product:6"))
        while not source.entered.is_set():
            await asyncio.sleep(0.001)
        first.cancel()
        source.release.set()
        return await second

    assert asyncio.run(main()) == "value of product:6"


# -- counts: the cluster's, on the dashboard and in warm_cache --list --json --------------------


@pytest.mark.django_db
def test_counts_are_listed_by_warm_cache_json(locmem: Any, source: Source) -> None:
    import io
    import json

    django_cachewarmers.get("products", "product:1")
    django_cachewarmers.get("products", "product:1")
    out = io.StringIO()
    call_command("warm_cache", "--list", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert listed["products"]["reads"] == {
        "hits": 1,
        "misses": 1,
        "stale": 0,
        "refreshes": 0,
        "refresh_failures": 0,
    }
    assert listed["fresh"]["fresh_for"] == 60
    assert listed["products"]["fresh_for"] is None


@pytest.mark.django_db
def test_the_dashboard_shows_the_counts(locmem: Any, source: Source) -> None:
    from django_cachewarmers.dashboard import overview

    django_cachewarmers.get("fresh", "product:1")
    rows = {row.name: row for row in overview()}
    assert rows["fresh"].get_reads is not None
    assert rows["fresh"].get_reads["misses"] == 1
    assert "1 miss" in rows["fresh"].reads_display


@pytest.mark.django_db
def test_the_admin_overview_page_shows_the_counts(
    locmem: Any, source: Source, admin_client: Any
) -> None:
    from django.urls import reverse

    django_cachewarmers.get("fresh", "product:1")
    django_cachewarmers.get("fresh", "product:1")
    page = admin_client.get(reverse("admin:django_cachewarmers_warmer_changelist"))
    content = page.content.decode()
    assert page.status_code == 200
    assert "Reads through get()" in content
    assert "1 hit, 1 miss, 0 stale served, 0 refreshes, 0 refreshes failed" in content


def test_counts_of_other_processes_are_merged(redis: Any, source: Source) -> None:
    # Another process's published snapshot, as its publisher thread writes it.
    other = {
        "v": readstats.SNAPSHOT_VERSION,
        "owner": "otherhost:1:abc",
        "at": time.time(),
        "counts": {"products": [5, 2, 1, 1, 0], "bogus": ["x"]},
    }
    with override_settings(CACHE_WARMERS_SNAPSHOT_CACHE="reads"):
        redis.set(readstats.slot_key(3), other, 30)
        django_cachewarmers.get("products", "product:1")
        assert readstats.publish()
        merged = readstats.cluster_counts()
    assert merged["products"] == {
        "hits": 5,
        "misses": 3,
        "stale": 1,
        "refreshes": 1,
        "refresh_failures": 0,
    }
    assert "bogus" not in merged


# -- concurrent reads of one key share one read ------------------------------------------------


@pytest.mark.parametrize(("name", "command"), [("products", "get"), ("fresh", "mget")])
def test_concurrent_reads_of_a_hot_key_share_one_round_trip(
    redis: Any, redis_server: RedisServer, name: str, command: str
) -> None:
    """50 threads read a warm key at once while the server holds every command (CLIENT PAUSE):
    the first thread's read is in flight, the others wait for it, so the server sees one read."""
    import redis as redis_py

    assert django_cachewarmers.get(name, "product:1") == "value of product:1"  # now cached
    reader(name)  # built before the pause
    admin: Any = redis_py.Redis.from_url(f"{redis_server.url}/5")
    values: list[Any] = []
    try:
        admin.config_resetstat()
        admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
        threads = [
            threading.Thread(
                target=lambda: values.append(django_cachewarmers.get(name, "product:1"))
            )
            for _ in range(50)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stats = admin.info("commandstats")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert values == ["value of product:1"] * 50
    assert stats[f"cmdstat_{command}"]["calls"] == 1, stats
    assert counts(name)["hits"] == 50  # the first read was the miss that loaded it


def test_an_in_process_cache_reads_without_sharing(locmem: Any) -> None:
    assert reader("products")._coalesce is False
