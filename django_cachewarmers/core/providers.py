"""Key providers: where a warmer's keys come from."""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_cachewarmers.core.tracker import AccessTracker


class KeyProvider(abc.ABC):
    """Supplies the keys a warmer should fill; subclass and implement ``get_keys``."""

    @abc.abstractmethod
    def get_keys(self) -> list[Hashable]:
        """Return the keys to warm now."""


class StaticKeyProvider(KeyProvider):
    """A fixed list of keys."""

    def __init__(self, keys: Iterable[Hashable]) -> None:
        self._keys = list(keys)

    def get_keys(self) -> list[Hashable]:
        """A copy of the configured keys (callers may mutate it)."""
        return list(self._keys)

    def __repr__(self) -> str:
        return f"StaticKeyProvider({len(self._keys)} keys)"


class CallableKeyProvider(KeyProvider):
    """Keys computed by a callable each time the warmer runs."""

    def __init__(self, func: Callable[[], Iterable[Hashable]]) -> None:
        if not callable(func):
            raise TypeError(f"CallableKeyProvider needs a callable, got {func!r}")
        self.func = func

    def get_keys(self) -> list[Hashable]:
        """Call the function and return its keys as a list."""
        return list(self.func())

    def __repr__(self) -> str:
        return f"CallableKeyProvider({getattr(self.func, '__qualname__', self.func)!r})"


#: Defaults of the hot-key providers: the least access count of a hot key, and the most keys a
#: run warms (the ``{"adaptive": {...}}`` settings default to these too).
DEFAULT_THRESHOLD = 5
DEFAULT_LIMIT = 100


class AdaptiveKeyProvider(KeyProvider):
    """The hottest keys an ``AccessTracker`` has seen."""

    def __init__(
        self, tracker: AccessTracker, threshold: int = DEFAULT_THRESHOLD, limit: int = DEFAULT_LIMIT
    ) -> None:
        check_threshold_and_limit(threshold, limit)
        self.tracker = tracker
        self.threshold = threshold
        self.limit = limit

    def get_keys(self) -> list[Hashable]:
        """Keys seen at least ``threshold`` times, hottest first, at most ``limit``."""
        return self.tracker.get_hot_keys(self.threshold, self.limit)

    def top(self, limit: int = 20) -> list[tuple[Hashable, int]]:
        """The hot keys with their counts, hottest first (at most ``limit``), for display."""
        return [(k, n) for k, n in self.tracker.top(limit) if n >= self.threshold]

    def __repr__(self) -> str:
        return f"AdaptiveKeyProvider(threshold={self.threshold}, limit={self.limit})"


def check_threshold_and_limit(threshold: int, limit: int) -> None:
    """Raise ValueError unless ``threshold >= 0`` and ``limit >= 1`` (hot-key providers)."""
    if threshold < 0:
        raise ValueError(f"threshold: must not be negative, got {threshold}")
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")


def unique_keys(keys: Iterable[Any]) -> tuple[list[Hashable], list[Any]]:
    """``keys`` without repeats, in first-seen order, and the keys that are not hashable (which
    no cache can take)."""
    if isinstance(keys, (list, tuple)):
        try:
            return list(dict.fromkeys(keys)), []  # every key hashable: the common case, at once
        except TypeError:
            pass
    unique: dict[Hashable, None] = {}
    unhashable: list[Any] = []
    for key in keys:
        try:
            unique[key] = None
        except TypeError:
            unhashable.append(key)
    return list(unique), unhashable
