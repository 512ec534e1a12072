"""``from django.core.cache import cache``: Django's ``ConnectionProxy`` to ``caches["default"]``.

The proxy is not a cache class the engine knows, so on its own it would get the generic
``set_many`` path. Its target is per thread (``caches[alias]`` hands each thread its own cache
object, and Django's RedisCache its own client), so the adapter resolves the proxy in the thread
that calls it, every call, and keeps one adapter per target cache object for that thread: the
same adapter ``caches[alias]`` gets, without pinning one thread's connection for the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django_cachewarmers.backends.base import DjangoCacheAdapter
from django_cachewarmers.core import backends as core_backends
from django_cachewarmers.core.backends import BackendAdapter


class ProxyAdapter(DjangoCacheAdapter):
    """Delegates every call to the adapter of the cache the proxy stands for in this thread."""

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self._local = threading.local()

    def target(self) -> Any:
        """The cache object the proxy stands for in the calling thread (``caches[alias]``)."""
        return self.cache._connections[self.cache._alias]

    def current(self) -> BackendAdapter:
        """The adapter of ``target()``: made once per target object and thread."""
        target = self.target()
        pair = getattr(self._local, "pair", None)
        if pair is None or pair[0] is not target:
            pair = (target, core_backends.adapter_for(target))
            self._local.pair = pair
        adapter: BackendAdapter = pair[1]
        return adapter

    def key_problem(self, full_key: str) -> str | None:
        """The target's adapter's answer (asked per key: the adapter this thread resolved last,
        since a key rule depends on the backend, not on the connection; writes resolve anew)."""
        pair = getattr(self._local, "pair", None)
        adapter = self.current() if pair is None else pair[1]
        return adapter.key_problem(full_key)

    def max_entries(self) -> int | None:
        """The target's adapter's answer."""
        return self.current().max_entries()

    def stores_nothing(self) -> bool:
        """The target's adapter's answer."""
        return self.current().stores_nothing()

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> dict[Hashable, str] | None:
        """The target's adapter's write (``BackendAdapter.write``)."""
        return self.current().write(values, timeout, jitter, full_keys)

    def start_write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> Callable[[], dict[Hashable, str] | None] | None:
        """The target's adapter's ``start_write`` (``BackendAdapter.start_write``)."""
        return self.current().start_write(values, timeout, jitter, full_keys)

    def make_keys(self, keys: list[str]) -> list[str]:
        """The target's adapter's ``make_keys`` (its cache makes the keys the proxy would)."""
        return self.current().make_keys(keys)

    def key_problems(self, full_keys: list[str]) -> dict[int, str]:
        """The target's adapter's ``key_problems``."""
        return self.current().key_problems(full_keys)

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """The target's adapter's read (``BackendAdapter.read``)."""
        return self.current().read(full_keys)
