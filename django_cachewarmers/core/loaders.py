"""Value loaders: how a warmer computes the value for a key."""

from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final


class _StoredByLoader:
    """The type of ``STORED_BY_LOADER``."""

    _instance: _StoredByLoader | None = None

    def __new__(cls) -> _StoredByLoader:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "STORED_BY_LOADER"

    def __reduce__(self) -> str:
        return "STORED_BY_LOADER"


#: A loader returns this when loading the key stored it in the cache by itself
#: (``pages.render_page`` makes ``cache_page`` store the response): nothing more is written, and
#: the key counts as warmed once it reads back: the loader's ``check_stored(keys)`` hook says
#: the entry is held, when the loader or its function defines one; else it reads back under
#: ``loader.stored_key(key)`` (that hook) or the key itself.
STORED_BY_LOADER: Final = _StoredByLoader()


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


def stored_key(loader: ValueLoader, key: Hashable) -> Hashable | None:
    """The key under which ``loader``'s ``STORED_BY_LOADER`` entry for ``key`` is read back.

    ``stored_key(key)`` of the loader, or of its function (``CallableValueLoader.func``), when
    either defines that hook: another key of the same cache, or None when the entry cannot be
    looked up there (not read back). Without the hook: ``key`` itself.
    """
    hook = loader_hook(loader, "stored_key")
    return hook(key) if hook is not None else key


def loader_hook(loader: ValueLoader, name: str) -> Callable[..., Any] | None:
    """The loader's (or its function's, ``CallableValueLoader.func``) optional hook ``name``
    (``stored_key``, ``check_stored``), or None when neither defines it."""
    hook = getattr(loader, name, None) or getattr(getattr(loader, "func", None), name, None)
    return hook if callable(hook) else None
