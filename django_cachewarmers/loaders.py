"""Value loaders: how a warmer computes the value for a key."""

from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final


class _NoStore:
    """The type of ``NO_STORE``."""

    _instance: _NoStore | None = None

    def __new__(cls) -> _NoStore:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_STORE"

    def __reduce__(self) -> str:
        return "NO_STORE"


#: A loader returns this when loading the key warmed the cache by itself (``render_page`` makes
#: ``cache_page`` store the response): the key counts as warmed and nothing more is written.
NO_STORE: Final = _NoStore()


class ValueLoader(abc.ABC):
    """Computes the value to cache for one key; subclass and implement ``load``."""

    @abc.abstractmethod
    def load(self, key: Hashable) -> Any:
        """Return the value for ``key``; raise to report a failure."""


class CallableValueLoader(ValueLoader):
    """Loads each key by calling ``func(key)``."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        if not callable(func):
            raise TypeError(f"CallableValueLoader needs a callable, got {func!r}")
        self.func = func

    def load(self, key: Hashable) -> Any:
        """Call the function for one key."""
        return self.func(key)

    def __repr__(self) -> str:
        return f"CallableValueLoader({getattr(self.func, '__qualname__', self.func)!r})"


class BatchValueLoader(ValueLoader):
    """Loads many keys in one call: ``batch_func(list_of_keys) -> {key: value}``.

    ``load(key)`` answers from the values of recent batches when it can (at most ``remember``
    of them are kept, least recently loaded dropped first), else asks ``batch_func([key])``.
    """

    def __init__(
        self, batch_func: Callable[[list[Any]], Mapping[Any, Any]], *, remember: int = 1000
    ) -> None:
        if not callable(batch_func):
            raise TypeError(f"BatchValueLoader needs a callable, got {batch_func!r}")
        if remember < 0:
            raise ValueError(f"remember: must not be negative, got {remember}")
        self.batch_func = batch_func
        self.remember = remember
        self._memory: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def load_batch(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        """Load a batch; keys missing from the result are the batch function's failures."""
        result = self.batch_func(list(keys))
        if not isinstance(result, Mapping):
            raise TypeError(
                f"batch loader must return a mapping of key to value, got {type(result).__name__}"
            )
        values = dict(result)
        if self.remember:
            with self._lock:
                memory = self._memory
                for key, value in values.items():
                    memory[key] = value
                    memory.move_to_end(key)
                while len(memory) > self.remember:
                    memory.popitem(last=False)
        return values

    def load(self, key: Hashable) -> Any:
        """One key: from a recent batch if remembered, else a batch of one."""
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        values = self.load_batch([key])
        if key not in values:
            raise KeyError(f"batch loader returned no value for {key!r}")
        return values[key]

    def forget(self) -> None:
        """Drop every remembered value."""
        with self._lock:
            self._memory.clear()

    def __repr__(self) -> str:
        return f"BatchValueLoader({getattr(self.batch_func, '__qualname__', self.batch_func)!r})"


def render_page(url: str) -> _NoStore:
    """A loader for page URLs (``"loader": "django_cachewarmers.loaders.render_page"``).

    Renders ``url`` through the project's own request handler (full middleware stack, no network)
    as an anonymous visitor, so that ``cache_page`` views and the per-site cache store the response
    under exactly the key a real request looks up. Returns ``NO_STORE`` only when a second anonymous
    GET right after the render is answered by Django's page cache; else raises
    ``pages.PageNotWarmed`` saying why (not 2xx, no page cache, a response the page cache does not
    store, or did not keep): a failed key. A site under a sub-path gets ``SCRIPT_NAME`` split off
    the URL's path (``pages.split_script_name``). After the run's last write, its ``check_stored``
    hook (``pages.check_stored``) checks, without running views, that the page cache that served
    each page still holds it.
    """
    from django_cachewarmers.pages import render  # the Django layer; the core imports no Django

    render(url)
    return NO_STORE


def _page_entry_not_under_url(url: str) -> None:
    """The page is cached under the cache middleware's own key, not under ``url``: the warmer's
    read-back cannot look it up by the URL (see ``CacheWarmer`` read-back, ``stored_key``)."""


def _pages_still_cached(urls: list[str]) -> dict[str, str | None]:
    """The read-back for pages: is each still held by the page cache that served it?
    (``pages.check_stored``; no view runs)."""
    from django_cachewarmers.pages import check_stored

    return check_stored(urls)  # type: ignore[return-value]


render_page.stored_key = _page_entry_not_under_url  # type: ignore[attr-defined]
render_page.check_stored = _pages_still_cached  # type: ignore[attr-defined]
