"""What every Django cache backend shares: Django's portable-key rule."""

from __future__ import annotations

import re

from django.core.cache.backends.base import BaseCache, default_key_func

from django_cachewarmers.core.backends import BackendAdapter

#: Django's portable-key rule (``memcache_key_warnings``): the cache warns on every backend, and
#: Memcached refuses, a key longer than this or with whitespace or control characters.
MAX_CACHE_KEY_LENGTH = 250
_BAD_KEY_CHARACTER = re.compile(r"[\x00-\x20\x7f]")


class DjangoCacheAdapter(BackendAdapter):
    """Any Django cache (``BaseCache``): keys must be portable, writes go through ``set_many``."""

    def key_problem(self, full_key: str) -> str | None:
        """Why Django would warn about (and Memcached refuse) a made key, or None."""
        if len(full_key) > MAX_CACHE_KEY_LENGTH:
            return (
                f"{len(full_key)} characters with the cache's prefix and version; "
                f"at most {MAX_CACHE_KEY_LENGTH} are portable (Memcached refuses longer keys)"
            )
        bad = _BAD_KEY_CHARACTER.search(full_key)
        if bad is not None:
            return (
                f"it contains {bad.group()!r}: whitespace and control characters are not portable"
            )
        return None

    def make_keys(self, keys: list[str]) -> list[str]:
        """The cache's ``make_key`` of each key; where the cache makes keys as Django's
        ``BaseCache.make_key`` with Django's ``default_key_func`` (``"prefix:version:key"``),
        that format applied to all of them at once (same keys, a third of the time)."""
        cache = self.cache
        if (
            getattr(type(cache), "make_key", None) is BaseCache.make_key
            and getattr(cache, "key_func", None) is default_key_func
        ):
            head = f"{cache.key_prefix}:{cache.version}:"
            return [head + key for key in keys]
        return super().make_keys(keys)

    def key_problems(self, full_keys: list[str]) -> dict[int, str]:
        """``key_problem`` of each key; with Django's rule (not a subclass's own), the keys of a
        batch are checked at once (the longest one, the bad characters of all of them) and one
        by one only when that finds a problem."""
        if (
            type(self).key_problem is DjangoCacheAdapter.key_problem
            and full_keys
            and max(map(len, full_keys)) <= MAX_CACHE_KEY_LENGTH
            and _BAD_KEY_CHARACTER.search("".join(full_keys)) is None
        ):
            return {}
        return super().key_problems(full_keys)


class CullingCacheAdapter(DjangoCacheAdapter):
    """Django's LocMemCache, DatabaseCache and FileBasedCache: they take ``MAX_ENTRIES`` from
    ``OPTIONS`` (default 300) and, once full, drop a share of their entries
    (``1 / CULL_FREQUENCY``) at each write."""

    def max_entries(self) -> int | None:
        """The cache's ``MAX_ENTRIES``."""
        limit = getattr(self.cache, "_max_entries", None)
        return limit if isinstance(limit, int) else None


class DummyCacheAdapter(DjangoCacheAdapter):
    """Django's DummyCache: accepts every write and stores nothing."""

    in_process = True

    def stores_nothing(self) -> bool:
        """Always True."""
        return True
