"""Django's ``LocMemCache``: a batch written under one acquisition of the cache's lock.

``LocMemCache.set_many`` calls ``set`` per key, and each ``set`` makes and validates the key again
(Django's portable-key check, which the warmer has already made: ``DjangoCacheAdapter.key_problem``
on the key as the cache made it), pickles the value and takes the cache's lock. Here the values of
a batch are pickled first (with the cache's ``pickle_protocol``), then stored under one
acquisition of the lock through the cache's own ``_set``, which culls as ``set`` does once
``MAX_ENTRIES`` is reached and records the expiry. Same entries, same culling, same TTL, in the
calling thread: a dict write and a pickle are CPU work that no thread can do faster here.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Mapping
from typing import Any

from django_cachewarmers.backends.base import CullingCacheAdapter
from django_cachewarmers.core.cache_io import jittered, not_cacheable
from django_cachewarmers.core.config import DEFAULT_TIMEOUT


class LocMemCacheAdapter(CullingCacheAdapter):
    """Django's ``LocMemCache``: its ``MAX_ENTRIES``, and a batch under one lock."""

    in_process = True

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> dict[Hashable, str] | None:
        """Store ``values`` as ``LocMemCache.set`` would; return the keys whose value does not
        pickle, or None to have the engine use ``set_many`` (timeout 0: Django's "don't cache").

        ``timeout``: seconds, None (never expire) or ``DEFAULT_TIMEOUT`` (the cache's own); the
        batch's TTL is up to ``jitter`` longer (drawn once per batch, as ``set_many`` gets it).
        """
        cache = self.cache
        if timeout is DEFAULT_TIMEOUT:
            timeout = cache.default_timeout
        assert timeout is None or isinstance(timeout, (int, float))
        if timeout is not None:
            if timeout <= 0:
                return None
            if jitter > 0:
                timeout = jittered(timeout, jitter)
                timeout = int(timeout) if timeout >= 1 else timeout  # as CacheIO.timeout_kwargs
        protocol = cache.pickle_protocol
        failed: dict[Hashable, str] = {}
        try:
            data = [pickle.dumps(value, protocol) for value in values.values()]
            keys = list(values)
        except Exception:
            data, keys = [], []
            for key, value in values.items():
                try:
                    data.append(pickle.dumps(value, protocol))
                except Exception as exc:
                    # Pickling does no I/O: whatever it raises is about this value alone.
                    failed[key] = not_cacheable(exc)
                    continue
                keys.append(key)
        if full_keys is not None:
            names = [full_keys[key] for key in keys]
        else:
            names = [cache.make_key(key) for key in keys]
        store = cache._set
        with cache._lock:
            for name, pickled in zip(names, data, strict=True):
                store(name, pickled, timeout)
        return failed
