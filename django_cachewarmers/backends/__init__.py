"""What the engine knows about Django's cache backends, one module per backend family.

``register()`` registers an adapter (``django_cachewarmers.core.backends``) for each of Django's
cache backends: ``base`` (every Django cache: the portable-key rule; LocMem, database and file
caches: their ``MAX_ENTRIES``; DummyCache stores nothing), ``locmem`` (a batch under one lock),
``memcached`` (keys counted in bytes), ``redis`` (one script call per batch), ``django_redis``
(the same, in django-redis's own format, when that package is installed), ``database`` (one
upsert per batch on SQLite and PostgreSQL), ``proxy`` (``django.core.cache.cache``: the adapter
of the cache it stands for). Importing ``django_cachewarmers`` arranges for it to run at the
engine's first lookup; ``AppConfig.ready()`` runs it too.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.redis import RedisCache
from django.utils.connection import ConnectionProxy

from django_cachewarmers.backends.base import (
    CullingCacheAdapter,
    DjangoCacheAdapter,
    DummyCacheAdapter,
)
from django_cachewarmers.backends.database import DatabaseCacheAdapter
from django_cachewarmers.backends.locmem import LocMemCacheAdapter
from django_cachewarmers.backends.memcached import MemcachedAdapter
from django_cachewarmers.backends.proxy import ProxyAdapter
from django_cachewarmers.backends.redis import RedisAdapter
from django_cachewarmers.core import backends as core_backends

__all__ = ["is_per_process", "max_entries", "register"]


def register() -> bool:
    """Register the adapters of Django's cache backends with the engine (idempotent); True."""
    core_backends.register(BaseCache, DjangoCacheAdapter)
    core_backends.register(FileBasedCache, CullingCacheAdapter)
    core_backends.register(LocMemCache, LocMemCacheAdapter)
    core_backends.register(DatabaseCache, DatabaseCacheAdapter)
    core_backends.register(DummyCache, DummyCacheAdapter)
    core_backends.register(BaseMemcachedCache, MemcachedAdapter)
    core_backends.register(RedisCache, RedisAdapter)
    try:
        from django_redis.cache import RedisCache as DjangoRedisCache
    except ImportError:  # django-redis is optional
        pass
    else:
        from django_cachewarmers.backends.django_redis import DjangoRedisAdapter

        core_backends.register(DjangoRedisCache, DjangoRedisAdapter)
    # ``from django.core.cache import cache``: the adapter of the cache it stands for, per thread.
    core_backends.register(ConnectionProxy, ProxyAdapter)
    return True


def max_entries(cache: Any) -> int | None:
    """How many entries ``cache`` holds before it culls (LocMem, database and file caches:
    ``OPTIONS["MAX_ENTRIES"]``, default 300), or None for a cache that evicts by memory instead
    (Redis, Memcached) or is not a Django cache."""
    return core_backends.adapter_for(cache).max_entries()


def is_per_process(cache: Any) -> bool:
    """Whether each process has its own copy of ``cache`` (Django's LocMemCache)."""
    return isinstance(cache, LocMemCache)
