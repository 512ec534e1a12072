"""Django's memcached backends: the server limits a key to 250 UTF-8 BYTES.

Django counts characters, so a key of 163 Cyrillic characters (326 bytes) gets no warning from
Django, and memcached refuses it.
"""

from __future__ import annotations

from django_cachewarmers.backends.base import MAX_CACHE_KEY_LENGTH, DjangoCacheAdapter


class MemcachedAdapter(DjangoCacheAdapter):
    """Django's ``PyMemcacheCache`` and ``PyLibMCCache`` (``BaseMemcachedCache``)."""

    def key_problem(self, full_key: str) -> str | None:
        """Django's portable-key rule, and memcached's limit in bytes."""
        problem = super().key_problem(full_key)
        if problem is not None:
            return problem
        size = len(full_key.encode("utf-8"))
        if size > MAX_CACHE_KEY_LENGTH:
            return (
                f"{size} bytes in UTF-8 with the cache's prefix and version; "
                f"memcached refuses keys over {MAX_CACHE_KEY_LENGTH} bytes"
            )
        return None
