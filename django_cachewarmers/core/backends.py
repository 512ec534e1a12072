"""What the engine knows about a cache beyond ``set_many``: one ``BackendAdapter`` per backend.

The engine writes any cache through ``set_many`` and reads it back through ``get_many``. A backend
that can do better (one script call per batch instead of a transaction), or that has rules of its
own (key length, an entry limit that culls, a cache that stores nothing), gets an adapter,
registered for its class with ``register``: ``adapter_for(cache)`` picks the one registered for
the nearest class in the cache's MRO. This module knows no backend: the Django layer
(``django_cachewarmers.backends``) registers Django's, through a hook it adds with
``add_registrar`` that runs on the first lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["BackendAdapter", "adapter_for", "add_registrar", "register"]


class BackendAdapter:
    """The generic adapter: no key rules, no entry limit, writes through ``set_many``.

    Subclasses override what their backend does differently. An adapter belongs to one cache
    object and may keep state for it (a client, a compiled script); it is used by one warmer.
    """

    #: True for a cache in this process's memory (a read costs about a dict lookup): nothing
    #: gains from sharing one read between concurrent readers (``core.readthrough``).
    in_process = False

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def key_problem(self, full_key: str) -> str | None:
        """Why the backend would refuse or warn about ``full_key`` (prefix and version
        included), or None when the key is fine."""
        return None

    def max_entries(self) -> int | None:
        """How many entries the cache holds before it culls some, or None (no such limit)."""
        return None

    def stores_nothing(self) -> bool:
        """True for a cache that accepts every write and keeps nothing (a no-op backend)."""
        return False

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> dict[Hashable, str] | None:
        """Write one batch faster than ``set_many``; return the keys that failed, with the reason,
        or None to have the engine use ``set_many``.

        ``timeout`` is ``WarmingConfig.cache_timeout`` (seconds, None, or ``DEFAULT_TIMEOUT``);
        ``full_keys`` the keys as the cache made them, when known. Raises what the client raises
        when the cache cannot be reached.
        """
        return None

    def start_write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> Callable[[], dict[Hashable, str] | None] | None:
        """Send one batch and return a function that waits for the cache's answer and returns
        what ``write`` returns (the keys that failed, with the reason; or None, and the engine
        writes the batch with ``set_many``); None when nothing was sent (the engine uses
        ``set_many``). Between the two calls the caller prepares the next batch while the cache
        stores this one. Raises, now or from the function, what ``write`` raises.

        The default writes now (``write``) and gives its answer back later; a backend that can
        send a batch without waiting for the answer (``backends.redis``) overrides it.
        """
        failed = self.write(values, timeout, jitter, full_keys)
        if failed is None:
            return None
        return lambda: failed

    def make_keys(self, keys: list[str]) -> list[str]:
        """``keys`` as the cache makes them (prefix, version, key function), in order: the
        cache's ``make_key`` of each one. Raises what ``make_key`` raises."""
        make_key = self.cache.make_key
        return [make_key(key) for key in keys]

    def key_problems(self, full_keys: list[str]) -> dict[int, str]:
        """``key_problem`` of many made keys at once: the index of each refused one, with the
        reason (empty when every key is fine)."""
        problems: dict[int, str] = {}
        for index, full_key in enumerate(full_keys):
            problem = self.key_problem(full_key)
            if problem is not None:
                problems[index] = problem
        return problems

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """Read ``full_keys`` back as the cache's ``get_many`` would, but with each key's own
        answer: the raw replies (None for a miss) and the cache's deserializer that decodes one
        reply as ``cache.get`` would. None to have the engine read back through ``get_many``.
        Raises what the client raises when the cache cannot be reached."""
        return None


_lock = threading.Lock()
_adapters: dict[type, Callable[[Any], BackendAdapter]] = {}
_registrars: list[Callable[[], bool]] = []


def register(cache_class: type, adapter: Callable[[Any], BackendAdapter]) -> None:
    """Use ``adapter(cache)`` for caches of ``cache_class`` and its subclasses (unless a subclass
    has an adapter of its own). Registering a class again replaces its adapter."""
    with _lock:
        _adapters[cache_class] = adapter


def add_registrar(registrar: Callable[[], bool]) -> None:
    """Call ``registrar()`` before the next lookup, and before every later one until it returns
    True (it registers adapters once the backends it knows can exist in this process)."""
    with _lock:
        if registrar not in _registrars:
            _registrars.append(registrar)


def adapter_for(cache: object) -> BackendAdapter:
    """A new adapter for ``cache``: the one registered for the nearest class of its MRO, else
    the generic ``BackendAdapter``."""
    if _registrars:
        with _lock:
            pending = list(_registrars)
        for registrar in pending:
            if registrar():
                with _lock:
                    if registrar in _registrars:
                        _registrars.remove(registrar)
    for cls in type(cache).__mro__:
        factory = _adapters.get(cls)
        if factory is not None:
            return factory(cache)
    return BackendAdapter(cache)
