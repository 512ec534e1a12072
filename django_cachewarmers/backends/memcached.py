"""Django's memcached backends: the server limits a key to 250 UTF-8 BYTES.

Django counts characters, so a key of 163 Cyrillic characters (326 bytes) gets no warning from
Django, and memcached refuses it.

After ``os.fork()`` a child holds copies of its parent's sockets to memcached: a child and its
parent writing through them at once would read each other's replies. A warmer made before a fork
(a pre-fork server's master) closes its cache's inherited connections in the child before its
first write or read there; the client opens its own at its next command.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django_cachewarmers.backends.base import MAX_CACHE_KEY_LENGTH, DjangoCacheAdapter
from django_cachewarmers.core.forks import after_fork_in_child

#: How many times this process's line of ancestors has forked (0 in a process never forked).
_fork_generation = 0


@after_fork_in_child
def _count_fork() -> None:
    global _fork_generation
    _fork_generation += 1


class MemcachedAdapter(DjangoCacheAdapter):
    """Django's ``PyMemcacheCache`` and ``PyLibMCCache`` (``BaseMemcachedCache``)."""

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self._generation = _fork_generation

    def _own_connections(self) -> None:
        """In a forked child: close the connections inherited from the parent, once."""
        if self._generation != _fork_generation:
            self._generation = _fork_generation
            self.cache.close()  # pymemcache closes its sockets (this process's copies only)

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> dict[Hashable, str] | None:
        """None: memcached's ``set_many`` is one batched round trip already; after a fork, on
        connections of this process's own."""
        self._own_connections()
        return None

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """None: the cache's ``get_many``, on connections of this process's own."""
        self._own_connections()
        return None

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
