"""The engine's backend adapters: Django's cache backends get theirs with no setup by the user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django_redis.cache import RedisCache as DjangoRedisCache

from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
from django_cachewarmers.backends import max_entries
from django_cachewarmers.backends.base import (
    CullingCacheAdapter,
    DjangoCacheAdapter,
    DummyCacheAdapter,
)
from django_cachewarmers.backends.database import DatabaseCacheAdapter
from django_cachewarmers.backends.django_redis import DjangoRedisAdapter
from django_cachewarmers.backends.locmem import LocMemCacheAdapter
from django_cachewarmers.backends.memcached import MemcachedAdapter
from django_cachewarmers.backends.redis import RedisAdapter
from django_cachewarmers.core.backends import BackendAdapter

ROOT = Path(__file__).resolve().parent.parent


class SubclassedRedis(RedisCache):
    """A project's own subclass of Django's RedisCache."""


def warmer_for(cache: Any) -> CacheWarmer:
    return CacheWarmer(cache, StaticKeyProvider([]), CallableValueLoader(str))


@pytest.mark.parametrize(
    ("make", "adapter"),
    [
        # Building a cache object connects to nothing: no server is needed to pick an adapter.
        (lambda tmp: RedisCache("redis://127.0.0.1:1/0", {}), RedisAdapter),
        (lambda tmp: SubclassedRedis("redis://127.0.0.1:1/0", {}), RedisAdapter),
        (lambda tmp: DjangoRedisCache("redis://127.0.0.1:1/0", {}), DjangoRedisAdapter),
        (lambda tmp: PyMemcacheCache("127.0.0.1:1", {}), MemcachedAdapter),
        (lambda tmp: LocMemCache("adapters", {}), LocMemCacheAdapter),
        (lambda tmp: DatabaseCache("adapters", {}), DatabaseCacheAdapter),
        (lambda tmp: FileBasedCache(str(tmp), {}), CullingCacheAdapter),
        (lambda tmp: DummyCache("adapters", {}), DummyCacheAdapter),
        (lambda tmp: {}, BackendAdapter),
    ],
)
def test_each_django_backend_gets_its_adapter(make: Any, adapter: type, tmp_path: Path) -> None:
    assert type(warmer_for(make(tmp_path)).backend) is adapter


def test_a_django_cache_of_its_own_class_gets_the_portable_key_rule() -> None:
    class OwnCache(LocMemCache):
        pass

    backend = warmer_for(OwnCache("own", {})).backend
    assert isinstance(backend, DjangoCacheAdapter)
    assert backend.key_problem("a" * 251) is not None
    assert backend.key_problem("a key") is not None
    assert backend.key_problem("fine") is None


def test_memcached_counts_key_bytes() -> None:
    backend = warmer_for(PyMemcacheCache("127.0.0.1:1", {})).backend
    assert backend.key_problem("ж" * 126) is not None  # 252 bytes, 126 characters
    assert DjangoCacheAdapter(None).key_problem("ж" * 126) is None


def shout_key(key: str, prefix: str, version: int) -> str:
    return f"{prefix}/{version}/{key.upper()}"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"KEY_PREFIX": "site", "VERSION": 3},
        {"KEY_FUNCTION": "tests.test_backends.shout_key", "KEY_PREFIX": "p"},
    ],
)
def test_keys_made_per_batch_are_the_caches_own(params: dict[str, Any]) -> None:
    cache = LocMemCache("made", params)
    keys = ["a", "b:c", "ж" * 3, "x" * 240]
    assert warmer_for(cache).backend.make_keys(keys) == [cache.make_key(key) for key in keys]


def test_a_batch_of_keys_is_checked_as_each_key_alone() -> None:
    backend = warmer_for(LocMemCache("checked", {})).backend
    fine = [f":1:item:{i}" for i in range(50)]
    assert backend.key_problems(fine) == {}
    bad = [*fine[:3], ":1:a key", *fine[3:10], ":1:" + "x" * 250, ":1:tab\there", *fine[10:]]
    problems = backend.key_problems(bad)
    assert problems == {
        index: backend.key_problem(key)
        for index, key in enumerate(bad)
        if backend.key_problem(key) is not None
    }
    assert sorted(problems) == [3, 11, 12]
    # A backend with a rule of its own is asked per key: memcached counts bytes.
    memcached = warmer_for(PyMemcacheCache("127.0.0.1:1", {})).backend
    assert memcached.key_problems([":1:ok", "ж" * 126]) == {1: memcached.key_problem("ж" * 126)}


def test_max_entries_of_culling_backends_only() -> None:
    assert max_entries(LocMemCache("x", {"OPTIONS": {"MAX_ENTRIES": 7}})) == 7
    assert max_entries(RedisCache("redis://127.0.0.1:1/0", {})) is None
    assert max_entries({}) is None


# What a script of a configured project does: import the engine first, make a Django cache, warm.
SCRIPT = """
import django_cachewarmers
from django_cachewarmers import CacheWarmer, CallableValueLoader, StaticKeyProvider
from django.core.cache.backends.redis import RedisCache
from django_redis.cache import RedisCache as DjangoRedisCache

warmer = CacheWarmer(RedisCache("redis://127.0.0.1:1/0", {}), StaticKeyProvider([]),
                     CallableValueLoader(str))
print(type(warmer.backend).__name__)
"""


def test_the_fast_path_is_registered_without_django_setup() -> None:
    # No django.setup(), no AppConfig.ready(): the package registers the adapters itself, at the
    # engine's first lookup, once Django's cache backends are loaded.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "RedisAdapter"
