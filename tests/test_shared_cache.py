"""Warmers sharing one culling cache: the MAX_ENTRIES WARNING counts everything the app writes.

Real LocMemCache and DatabaseCache (MAX_ENTRIES 300, Django's default), warmers declared in
CACHE_WARMERS and run through ``django_cachewarmers.warm`` as a project runs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers import registry

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "shared-300"}
DATABASE = {
    "BACKEND": "django.core.cache.backends.db.DatabaseCache",
    "LOCATION": "cachewarmers_test_cache",
}

A_KEYS = [f"a:{i}" for i in range(200)]


def a_keys() -> list[str]:
    """Warmer a's keys, from a callable: their count is known only once a has run."""
    return A_KEYS


def b_keys() -> list[str]:
    return [f"b:{i}" for i in range(200)]


def load(key: str) -> str:
    return f"value of {key}"


def warmers(a_keys_path: str = "tests.test_shared_cache.a_keys") -> dict[str, Any]:
    common = {"loader": "tests.test_shared_cache.load", "strategy": "lazy", "max_retries": 0}
    return {
        "a": {"keys": a_keys_path, **common},
        "b": {"keys": [f"b:{i}" for i in range(200)], **common},
    }


@pytest.fixture(params=["locmem", "database"])
def shared(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Django's default cache: 300 entries at most (its default MAX_ENTRIES)."""
    if request.param == "database":
        request.getfixturevalue("transactional_db")
    definition = LOCMEM if request.param == "locmem" else DATABASE
    with override_settings(
        CACHES={**settings.CACHES, "default": definition}, CACHE_WARMERS=warmers()
    ):
        caches["default"].clear()
        yield caches["default"]
        caches["default"].clear()


def held(cache: Any, keys: list[str]) -> int:
    return sum(1 for key in keys if cache.get(key) == load(key))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.django_db(transaction=True)
def test_the_warning_counts_every_warmer_writing_into_the_cache(
    shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The tester's case: a and b, 200 keys each, into a cache of 300 entries.
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        stats_a = django_cachewarmers.warm("a")
    assert stats_a is not None
    assert stats_a.keys_warmed == 200
    # b's count is known before b ever ran (a fixed list): a's run already warns.
    assert any("write 400 entries (a: 200 keys; b: 200 keys)" in w for w in warnings(caplog))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        stats_b = django_cachewarmers.warm("b")
    assert stats_b is not None
    shared_warning = [w for w in warnings(caplog) if "MAX_ENTRIES=300" in w]
    assert shared_warning == [
        "cache warmer b: the warmers writing into cache 'default' write 400 entries "
        "(a: 200 keys; b: 200 keys), but that cache "
        f"({type(shared).__name__}) holds at most MAX_ENTRIES=300 entries and culls a share of "
        "them whenever it is full: not all of them can stay cached; raise "
        "OPTIONS['MAX_ENTRIES'] of that cache or give the warmers caches of their own"
    ]
    # b's own read-back is the truth about b's keys: what it counts warmed is what a read finds.
    b_keys = [f"b:{i}" for i in range(200)]
    assert stats_b.keys_warmed == held(shared, b_keys)
    assert stats_b.keys_failed == 200 - stats_b.keys_warmed == stats_b.keys_lost
    assert held(shared, A_KEYS) < 200  # a's keys were culled by b's writes


@pytest.mark.django_db(transaction=True)
def test_another_warmers_count_comes_from_its_last_recorded_run(
    shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    declared = warmers()
    declared["b"]["keys"] = "tests.test_shared_cache.b_keys"  # b's count unknown until it runs
    with override_settings(CACHE_WARMERS=declared), caplog.at_level(logging.WARNING):
        django_cachewarmers.warm("a")
        assert not warnings(caplog)  # a alone fits, and b never ran
        django_cachewarmers.warm("b")
        assert any("(a: 200 keys; b: 200 keys)" in w for w in warnings(caplog))
    caplog.clear()
    registry.reset()  # as in another process: only a's WarmingRun row knows its count
    caches["default"].clear()
    with caplog.at_level(logging.WARNING, logger="django_cachewarmers"):
        django_cachewarmers.warm("b")
    assert any("write 400 entries (a: 200 keys; b: 200 keys)" in w for w in warnings(caplog))


@pytest.mark.django_db(transaction=True)
def test_warmers_on_caches_of_their_own_get_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    caches_ = {
        **settings.CACHES,
        "default": LOCMEM,
        "other": {**LOCMEM, "LOCATION": "shared-other"},
    }
    declared = warmers()
    declared["b"]["cache"] = "other"
    with (
        override_settings(CACHES=caches_, CACHE_WARMERS=declared),
        caplog.at_level(logging.WARNING, logger="django_cachewarmers"),
    ):
        a, b = django_cachewarmers.warm("a"), django_cachewarmers.warm("b")
        assert a is not None
        assert b is not None
        assert (a.keys_warmed, b.keys_warmed) == (200, 200)
        assert held(caches["default"], A_KEYS) == 200
        caches["default"].clear()
        caches["other"].clear()
    assert not warnings(caplog)


@pytest.mark.django_db(transaction=True)
def test_a_page_takes_two_entries_in_the_page_cache(caplog: pytest.LogCaptureFixture) -> None:
    # 20 pages in a page cache of 30 entries: 40 entries (headers + page each).
    small = {**LOCMEM, "LOCATION": "shared-30", "OPTIONS": {"MAX_ENTRIES": 30}}
    declared = {
        "pages": {
            "keys": [f"http://testserver/shaped/p{i}/" for i in range(20)],
            "loader": "django_cachewarmers.loaders.render_page",
            "strategy": "lazy",
        }
    }
    per_site = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *settings.MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    with (
        override_settings(
            CACHES={**settings.CACHES, "default": small},
            CACHE_WARMERS=declared,
            MIDDLEWARE=per_site,
        ),
        caplog.at_level(logging.WARNING, logger="django_cachewarmers"),
    ):
        caches["default"].clear()
        django_cachewarmers.warm("pages")
        caches["default"].clear()
    assert any(
        "40 entries to write into cache 'default' (pages: 20 pages x 2 entries)" in w
        and "MAX_ENTRIES=30" in w
        for w in warnings(caplog)
    ), warnings(caplog)
