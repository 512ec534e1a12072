"""How the engine writes one cache and reads it back (on the run's calling thread)."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol, TypeGuard, cast, runtime_checkable

from django_cachewarmers.core.backends import BackendAdapter
from django_cachewarmers.core.config import DEFAULT_TIMEOUT, WarmingConfig
from django_cachewarmers.core.stats import exception_text

logger = logging.getLogger("django_cachewarmers")


@runtime_checkable
class SupportsSetMany(Protocol):
    """A Django-style cache: anything with ``set_many`` (and ``set`` for single keys)."""

    def set_many(self, data: dict[Any, Any], *args: Any, **kwargs: Any) -> Any: ...

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any: ...


Cache = SupportsSetMany | MutableMapping[Any, Any]


def is_django_cache(cache: object) -> TypeGuard[SupportsSetMany]:
    """True for a Django-style cache (``set_many`` and ``set``), proxies included.

    Looked up with ``getattr``, not ``isinstance(cache, SupportsSetMany)``: since Python 3.12 a
    runtime protocol check reads attributes statically (``inspect.getattr_static``), so it
    refuses Django's ``ConnectionProxy`` (``from django.core.cache import cache``), whose
    methods come from ``__getattr__``.
    """
    return callable(getattr(cache, "set_many", None)) and callable(getattr(cache, "set", None))


_MISSING = object()


def jittered(timeout: float, jitter: float) -> float:
    """``timeout`` stretched by a random share of up to ``jitter`` (0.1: up to 10% longer)."""
    return timeout * (1.0 + random.uniform(0.0, jitter))


def not_cacheable(exc: BaseException) -> str:
    """A failed key's reason when its value could not be stored."""
    return f"value not cacheable: {exception_text(exc)}"


class CacheIO:
    """Writes batches to one cache and reads them back: through the backend's adapter when it has
    a faster way, else ``set_many`` / ``get_many`` (a plain mapping: item access)."""

    def __init__(
        self, cache: Cache, config: WarmingConfig, backend: BackendAdapter, name: str
    ) -> None:
        self.cache = cache
        self.config = config
        self.backend = backend
        self.name = name

    def timeout_kwargs(self) -> dict[str, Any]:
        timeout = self.config.cache_timeout
        if timeout is DEFAULT_TIMEOUT:
            return {}
        if timeout is not None and timeout > 0 and self.config.timeout_jitter > 0:
            timeout = jittered(timeout, self.config.timeout_jitter)
            return {"timeout": int(timeout) if timeout >= 1 else timeout}
        return {"timeout": timeout}

    def explicit_ttl_zero(self) -> bool:
        """True when entries would be written with TTL 0, which Django treats as "don't cache"."""
        timeout = self.config.cache_timeout
        if timeout is DEFAULT_TIMEOUT:
            timeout = getattr(self.cache, "default_timeout", None)
        return timeout is not None and timeout <= 0

    def write(
        self, values: dict[Hashable, Any], full_keys: Mapping[Hashable, str] | None = None
    ) -> dict[Hashable, str]:
        """Write one batch; return the keys that were not stored, with the reason.

        ``full_keys`` are the keys as the cache made them (prefix, version), when already known.
        Whatever exception a batch write raises, its keys are written again one by one, and a key
        whose write raises while the cache still answers a probe (``answers``) fails alone
        ("value not cacheable"). Raises only when the cache itself no longer answers (unreachable,
        erroring): the caller stops the run.
        """
        return self.start_write(values, full_keys)()

    def start_write(
        self, values: dict[Hashable, Any], full_keys: Mapping[Hashable, str] | None = None
    ) -> Callable[[], dict[Hashable, str]]:
        """Start writing one batch (``BackendAdapter.start_write``: where the backend can, the
        batch is sent and the cache stores it while the caller prepares the next one); return
        the function that finishes it and returns what ``write`` returns. Raises, now or from
        that function, only what ``write`` raises (the cache no longer answers)."""
        cache = self.cache
        if not is_django_cache(cache):
            cast("MutableMapping[Any, Any]", cache).update(values)
            return dict
        try:
            finish = self.backend.start_write(
                values, self.config.cache_timeout, self.config.timeout_jitter, full_keys
            )
            if finish is None:
                failed = self._set_many(cache, values)
                return lambda: failed
        except Exception as exc:
            failed = self._after_batch_error(cache, values, exc)
            return lambda: failed

        def done() -> dict[Hashable, str]:
            try:
                answer = finish()
                return self._set_many(cache, values) if answer is None else answer
            except Exception as exc:
                return self._after_batch_error(cache, values, exc)

        return done

    def _set_many(self, cache: SupportsSetMany, values: dict[Hashable, Any]) -> dict[Hashable, str]:
        refused = cache.set_many(values, **self.timeout_kwargs()) or []
        return dict.fromkeys(refused, "the cache refused the value")

    def _after_batch_error(
        self, cache: SupportsSetMany, values: dict[Hashable, Any], batch_error: Exception
    ) -> dict[Hashable, str]:
        """After a batch write raised ``batch_error``: raise it when the cache no longer answers,
        else write the keys one by one (``write``)."""
        # Ask the cache first: when it is down, stop now rather than wait out one timeout per key.
        if not self.answers():
            raise batch_error
        logger.debug(
            "cache warmer %s: a batch write raised %s; writing its keys one by one",
            self.name,
            exception_text(batch_error),
        )
        return self._write_one_by_one(cache, values)

    def _write_one_by_one(
        self, cache: SupportsSetMany, values: dict[Hashable, Any]
    ) -> dict[Hashable, str]:
        failed: dict[Hashable, str] = {}
        for key, value in values.items():
            try:
                cache.set(key, value, **self.timeout_kwargs())
            except Exception as exc:
                if not self.answers():
                    raise
                failed[key] = not_cacheable(exc)
        return failed

    def answers(self) -> bool:
        """Whether the cache stores and returns a tiny value right now (write, read, delete).

        This is what tells a value's fault from an outage: after a write raised, a cache that
        still answers this probe refused that value, not the connection. A cache that swallows
        its errors (django-redis ``IGNORE_EXCEPTIONS``) or stores nothing fails the probe.
        """
        cache = self.cache
        if not is_django_cache(cache):
            return True
        # No warmer name in it: the key must be valid on every backend (memcached: no spaces).
        key = f"cachewarmers:probe:{os.getpid()}:{threading.get_ident()}:{id(self):x}"
        token = f"{time.time_ns()}:{random.random()}"
        try:
            cache.set(key, token, timeout=30)
            get = getattr(cache, "get", None)
            answered = get is None or get(key) == token
            delete = getattr(cache, "delete", None)
            if delete is not None:
                delete(key)
        except Exception:
            logger.debug("cache warmer %s: the cache probe failed", self.name, exc_info=True)
            return False
        return bool(answered)

    def reads(self) -> bool:
        """Whether the cache answers a read of a key nobody wrote (without raising).

        The read-back's outage test: unlike ``answers`` it writes nothing, so it cannot cull a
        full LocMem, database or file cache while its keys are being read back.
        """
        get = getattr(self.cache, "get", None)
        if get is None:
            return True
        try:
            get(f"cachewarmers:probe:{os.getpid()}:{threading.get_ident()}:{id(self):x}")
        except Exception:
            logger.debug("cache warmer %s: the read probe failed", self.name, exc_info=True)
            return False
        return True

    def misses(self, keys: Sequence[Hashable]) -> dict[Hashable, str | None]:
        """The ``keys`` a real read through the cache would not get a value for right now.

        A real read: the cache's own ``get_many`` (one round trip per call, values deserialized
        as a view's ``cache.get`` would), on every backend; where the backend adapter reads
        (``BackendAdapter.read``: Redis, the ``MGET`` that ``get_many`` sends; DatabaseCache on
        SQLite and PostgreSQL, the ``SELECT`` it runs), each reply is decoded by the cache's own
        deserializer, so that one bad value fails alone
        without a second round trip. Returns each such key with a reason of its own, or None
        when it is simply not there (the caller names the likely cause, ``loss_cause``).
        A value read back as None counts as missing: ``cache.get(key)`` returns None for a miss,
        and memcached returns None for a value it cannot decode. When the batch read raises, the
        keys are read one by one and only a key whose own read raises fails with that error
        (a value that pickles but does not unpickle); a mapping: ``in``. Raises only when the
        cache itself stops answering (``reads``).
        """
        cache = self.cache
        if not is_django_cache(cache):
            return {key: None for key in keys if key not in cast("MutableMapping[Any, Any]", cache)}
        make_key = getattr(cache, "make_key", None)
        if make_key is not None:
            read = self.backend.read([make_key(key) for key in keys])
            if read is not None:
                return _decode(keys, *read)
        get_many = getattr(cache, "get_many", None)
        batch_error: BaseException
        if get_many is not None:
            try:
                found = get_many(list(keys))
            except Exception as exc:
                batch_error = exc
            else:
                return {key: _read_as_none(found, key) for key in keys if found.get(key) is None}
        else:
            batch_error = RuntimeError("no get_many")
        get = getattr(cache, "get", None)
        if get is None:
            return {}  # a write-only cache: nothing to read back through
        if get_many is not None and not self.reads():
            raise batch_error  # an outage: stop now rather than wait out one timeout per key
        lost: dict[Hashable, str | None] = {}
        for key in keys:
            try:
                value = get(key, _MISSING)
            except Exception as exc:
                if not self.reads():
                    raise
                lost[key] = _unreadable(exc)
                continue
            if value is _MISSING:
                lost[key] = None
            elif value is None:
                lost[key] = READS_AS_NONE
        return lost

    def loss_cause(self, written: int) -> str:
        """The likely reason written keys did not read back (computed once per run)."""
        cache = self.cache
        if self.backend.stores_nothing():
            return f"the cache is a no-op ({type(cache).__name__}): it stores nothing"
        if self.explicit_ttl_zero():
            return "TTL 0: timeout 0 means don't cache (None means never expire)"
        limit = self.backend.max_entries()
        if limit is not None:
            # Before any probe: a probe write into a full culling cache would cull it once more.
            # These backends raise when unreachable (the read-back then fails on its own).
            if written < limit:
                return (
                    f"culled by the cache's MAX_ENTRIES ({limit}) with the other entries it "
                    f"holds (this run wrote {written} keys), or expired before the read-back"
                )
            return (
                f"culled by the cache's MAX_ENTRIES ({limit}): it drops a share of its entries "
                f"whenever it is full (this run wrote {written} keys); raise OPTIONS['MAX_ENTRIES']"
            )
        if not self.answers():
            return (
                "the cache is unreachable, or silently ignores its errors (e.g. django-redis "
                "IGNORE_EXCEPTIONS), or stores nothing"
            )
        return (
            "evicted or expired before the read-back (a TTL shorter than the run, memory "
            "eviction, a restart or flush of the cache server, or another process deleted it)"
        )


#: A read-back reason: the value is there, but ``cache.get`` returns None for it.
READS_AS_NONE = (
    "it reads back as None, which cache.get() cannot tell from a miss (a value the cache "
    "cannot decode, e.g. memcached)"
)


def _unreadable(exc: BaseException) -> str:
    return f"cached, but reading it back raises {exception_text(exc)}: a view reading it would fail"


def _read_as_none(found: Mapping[Hashable, Any], key: Hashable) -> str | None:
    """A read-back reason: the key is in ``get_many``'s reply with the value None, or absent."""
    return READS_AS_NONE if key in found else None


def _decode(
    keys: Sequence[Hashable], replies: list[Any], loads: Callable[[Any], Any]
) -> dict[Hashable, str | None]:
    """The read-back through a backend adapter's ``read``: each raw reply decoded with the
    cache's own deserializer, as ``cache.get`` decodes it; a reply that does not decode fails its
    key."""
    lost: dict[Hashable, str | None] = {}
    for key, data in zip(keys, replies, strict=True):
        if data is None:
            lost[key] = None
            continue
        try:
            value = loads(data)
        except Exception as exc:
            lost[key] = _unreadable(exc)
            continue
        if value is None:
            lost[key] = READS_AS_NONE
    return lost
