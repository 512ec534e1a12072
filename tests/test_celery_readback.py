"""A Celery fan-out reads the run's keys back after its last chunk, and survives a cache outage.

Eager Celery (``task_always_eager``, as a project's test settings have it): the chunks run one
after the other in this process, so a later chunk's writes can cull what an earlier chunk wrote
and verified. The figures the run reports (stats, ``--json``, exit code, ``WarmingRun``) must be
true of what a read through the cache finds afterwards.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tests.redis_server import RedisServer, close_redis

pytest.importorskip("celery")

KEYS = [f"lz:{i}" for i in range(25)]


def keys() -> list[str]:
    return list(KEYS)


def batch(ks: list[str]) -> dict[str, str]:
    return {k: f"value of {k}" for k in ks}


LAZY = {
    "keys": "tests.test_celery_readback.keys",
    "batch_loader": "tests.test_celery_readback.batch",
    "strategy": "lazy",
    "batch_size": 2,
}
SMALL = {"MAX_ENTRIES": 10}
CACHES_UNDER_TEST = {
    "locmem": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "readback-small",
        "OPTIONS": SMALL,
    },
    "database": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "cachewarmers_readback_cache",
        "OPTIONS": SMALL,
    },
}


def _app(name: str) -> Any:
    """A Celery app set up as Celery's Django guide shows, read from the current settings."""
    from celery import Celery

    app = Celery(name, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["locmem", "database"])
def test_celery_run_reports_what_reads_back_after_the_last_chunk(backend: str) -> None:
    from django_cachewarmers.models import WarmingRun

    settings = {
        "CACHES": {"default": CACHES_UNDER_TEST["locmem"], "small": CACHES_UNDER_TEST[backend]},
        "CACHE_WARMERS": {"lz": {**LAZY, "cache": "small"}},
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://",
    }
    with override_settings(**settings):
        if backend == "database":
            call_command("createcachetable", stdout=io.StringIO())
        cache = caches["small"]
        cache.clear()
        out = io.StringIO()
        # 25 keys in chunks of 5 into a cache that keeps at most 10 entries.
        with pytest.raises(CommandError) as raised:
            call_command(
                "warm_cache",
                "lz",
                "--celery",
                "--chunk-size",
                "5",
                "--json",
                celery_app=_app("readback"),
                stdout=out,
                stderr=io.StringIO(),
            )
        readable = len(cache.get_many(KEYS))
        cache.clear()
    assert raised.value.returncode == 1
    report = json.loads(out.getvalue())["lz"]
    assert 0 < readable < 25
    # Every key the run wrote was read back (chunk-time losses included), and the figures are
    # the ones a read finds afterwards.
    assert report["keys_verified"] == 25
    assert (report["keys_warmed"], report["keys_failed"]) == (readable, 25 - readable)
    assert report["keys_lost"] == 25 - readable
    assert any("not in the cache when read back" in e for e in report["errors"])
    run = WarmingRun.objects.get(warmer="lz")
    assert (run.trigger, run.keys_warmed, run.keys_failed) == ("celery", readable, 25 - readable)


@pytest.mark.django_db
def test_celery_run_that_fits_verifies_every_key() -> None:
    settings = {
        "CACHE_WARMERS": {"lz": LAZY},
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://",
    }
    with override_settings(**settings):
        caches["default"].clear()
        out = io.StringIO()
        call_command(
            "warm_cache",
            "lz",
            "--celery",
            "--chunk-size",
            "5",
            "--json",
            celery_app=_app("fits"),
            stdout=out,
            stderr=io.StringIO(),
        )
        caches["default"].clear()
    report = json.loads(out.getvalue())["lz"]
    assert (report["keys_warmed"], report["keys_failed"]) == (25, 0)
    assert (report["keys_verified"], report["keys_lost"]) == (25, 0)


def test_named_failures_name_each_failed_key_unambiguously() -> None:
    from django_cachewarmers.core.stats import WarmingStats
    from django_cachewarmers.distributed import _named_failures

    stats = WarmingStats()
    stats.add_error("a", "boom: it broke")
    stats.add_error("a: b", "no")
    stats.add_error(7, "x")
    # "a: b: no" could be key "a" or key "a: b": named by no one (the fan-out then caps the
    # chunk's losses at what it counted warmed instead of guessing).
    assert _named_failures(["a", "a: b", "c", 7], stats.errors) == {"a", 7}


# -- the cache down (item 6) -------------------------------------------------------------------


@pytest.fixture
def stopped_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, started and then stopped: its port refuses."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _down_settings(server: RedisServer, flavour: str) -> dict[str, Any]:
    if flavour == "django":
        cache: dict[str, Any] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"{server.url}/0",
        }
    else:
        pytest.importorskip("django_redis")
        cache = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"{server.url}/0",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True},
        }
    return {
        "CACHES": {"default": CACHES_UNDER_TEST["locmem"], "redis": cache},
        "CACHE_WARMERS": {"lz": {**LAZY, "cache": "redis"}},
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("flavour", ["django", "django-redis-ignore-exceptions"])
def test_celery_run_with_the_cache_down_is_a_recorded_failed_run(
    stopped_redis: RedisServer, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    from django_cachewarmers.models import WarmingRun

    with override_settings(**_down_settings(stopped_redis, flavour)):
        try:
            cache = caches["redis"]
            cache.set("cachewarmers-test-probe", 1)
            assert cache.get("cachewarmers-test-probe") == 1  # reachable before the stop
            stopped_redis.stop()
            out, err = io.StringIO(), io.StringIO()
            with (
                caplog.at_level(logging.ERROR, logger="django_cachewarmers"),
                pytest.raises(CommandError) as raised,
            ):
                call_command(
                    "warm_cache",
                    "lz",
                    "--celery",
                    "--json",
                    celery_app=_app("down"),
                    stdout=out,
                    stderr=err,
                )
        finally:
            if flavour == "django":
                close_redis(caches["redis"])
    assert raised.value.returncode == 1
    report = json.loads(out.getvalue())["lz"]
    assert (report["keys_warmed"], report["keys_failed"]) == (0, 25)
    assert "the cache is unreachable" in report["run_error"]
    assert all("not warmed: the cache is unreachable" in e for e in report["errors"])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "the cache is unreachable" in errors[0].getMessage()
    assert errors[0].exc_info is None  # one line, no traceback
    run = WarmingRun.objects.get(warmer="lz")
    assert (run.trigger, run.keys_warmed, run.keys_failed) == ("celery", 0, 25)
    assert "the cache is unreachable" in (run.run_error or "")


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction warms at once
def test_warm_via_celery_with_the_cache_down_returns_the_failed_stats(
    stopped_redis: RedisServer,
) -> None:
    from celery import _state

    import django_cachewarmers.tasks  # noqa: F401  (what a project's autodiscover_tasks does)
    from django_cachewarmers import warm

    with override_settings(**_down_settings(stopped_redis, "django")):
        stopped_redis.stop()
        previous = _state.get_current_app()
        _app("down-api").set_current()  # the project's app, as its celery.py makes it
        try:
            stats = warm("lz", via="celery")
        finally:
            previous.set_current()
            close_redis(caches["redis"])
    assert stats is not None
    assert not stats.ok
    assert (stats.keys_warmed, stats.keys_failed) == (0, 25)
    assert "the cache is unreachable" in (stats.run_error or "")


def store_itself(key: str) -> object:
    """A loader that writes its own entry, under another key (and forgets one of them)."""
    from django_cachewarmers import STORED_BY_LOADER

    if key != "lz:3":
        caches["default"].set(f"stored:{key}", f"value of {key}")
    return STORED_BY_LOADER


store_itself.stored_key = lambda key: f"stored:{key}"  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_celery_run_reads_back_what_a_loader_stored_under_its_own_key() -> None:
    settings = {
        "CACHE_WARMERS": {
            "own": {"keys": KEYS[:10], "loader": "tests.test_celery_readback.store_itself"}
        },
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://",
    }
    with override_settings(**settings):
        caches["default"].clear()
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command(
                "warm_cache",
                "own",
                "--celery",
                "--chunk-size",
                "5",
                "--json",
                celery_app=_app("own"),
                stdout=out,
                stderr=io.StringIO(),
            )
        caches["default"].clear()
    report = json.loads(out.getvalue())["own"]
    # Read back under "stored:<key>": the nine it stored are there, the forgotten one is not.
    assert (report["keys_warmed"], report["keys_failed"]) == (9, 1)
    assert (report["keys_verified"], report["keys_lost"]) == (10, 1)
    assert report["errors"][0].startswith("lz:3: not in the cache when read back")
