"""Read-through for one warmer: load a missing key once, serve stale while one refresh runs.

``ReadThrough.get(key)`` reads ``key`` from the warmer's cache. On a miss it loads the key with the
warmer's loader and writes it as a warm would (``CacheIO.write``: the same TTL, jitter and backend
fast path), once per key at a time: in this process through a ``SingleFlight``, across processes
through a lock taken with the cache's atomic ``add`` that expires after ``warmup_timeout``
(the others poll for the value until it is gone, then load it themselves). With ``fresh_for``, a
companion key holds each entry's write time (epoch seconds), written in the same ``set_many`` as
the value; an entry older than ``fresh_for`` (or without a write time) is served at once and
refreshed by one background thread in the cluster (a second lock), and a failed refresh keeps the
stale value. The value stays under the key itself, so a plain ``cache.get(key)`` reads it.

Works on any Django-style cache (``get``, ``get_many``, ``add``, ``set``, ``delete``,
``set_many``); nothing here imports Django.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django_cachewarmers.core.backends import BackendAdapter, adapter_for
from django_cachewarmers.core.cache_io import CacheIO
from django_cachewarmers.core.config import WarmingConfig
from django_cachewarmers.core.loaders import STORED_BY_LOADER, BatchValueLoader, ValueLoader
from django_cachewarmers.core.readcounts import (
    BACKLOG_LIMIT,
    HIT,
    MISS,
    REFRESH,
    REFRESH_FAILED,
    STALE,
    ReadCounts,
)
from django_cachewarmers.core.refresher import Refresher
from django_cachewarmers.core.singleflight import SingleFlight
from django_cachewarmers.core.stats import exception_text

__all__ = ["KeyNames", "NoValue", "ReadThrough", "key_problem", "write_times"]

logger = logging.getLogger("django_cachewarmers")

#: A checked key of a warmer without ``fresh_for``.
_PLAIN = ""


class _Aged:
    """A checked key of a warmer with ``fresh_for``: its companion key, and both made keys."""

    __slots__ = ("companion", "full_keys")

    def __init__(self, companion: str, full_keys: list[str]) -> None:
        self.companion = companion
        self.full_keys = full_keys


#: Keys whose rules were checked are remembered (their companion key with them) up to this many.
CHECKED_KEYS = 4096


class NoValue(LookupError):
    """The loader gave no value for a key on a miss: it returned None (which ``cache.get`` cannot
    tell from a miss, so a warm fails such a key too), or a batch loader left the key out of its
    result. Nothing is written."""


def key_problem(cache: Any, backend: BackendAdapter, key: object) -> str | None:
    """Why a warm would refuse ``key`` for ``cache`` (the warm's own rules), or None.

    A Django cache (with ``make_key``) takes strings whose made key (prefix and version) passes the
    backend's ``key_problem``; a plain mapping takes any hashable key.
    """
    try:
        hash(key)
    except TypeError:
        return f"key is not hashable ({type(key).__name__})"
    make_key = getattr(cache, "make_key", None)
    if make_key is None:
        return None
    if not isinstance(key, str):
        return f"keys of a Django cache must be strings, got {type(key).__name__}"
    return backend.key_problem(make_key(key))


class KeyNames:
    """The coordination keys of a cache key, each ``"{prefix}:{kind}:{key}"``: ``written`` (the
    companion holding the entry's write time), ``load`` (the miss lock) and ``refresh`` (the
    refresh lock). Where that name would break the cache's key rules (too long for Memcached), the
    key part is its SHA-256 instead."""

    def __init__(self, prefix: str, fits: Callable[[str], bool]) -> None:
        self.prefix = prefix
        self._fits = fits

    @classmethod
    def for_cache(cls, prefix: str, cache: Any, backend: BackendAdapter) -> KeyNames:
        """The names for ``cache``, checked with its key rules (``key_problem``)."""
        return cls(prefix, lambda name: key_problem(cache, backend, name) is None)

    def name(self, kind: str, key: str) -> str:
        plain = f"{self.prefix}:{kind}:{key}"
        if self._fits(plain):
            return plain
        return f"{self.prefix}:{kind}:#{hashlib.sha256(key.encode()).hexdigest()}"

    def companion(self, key: str) -> str:
        return self.name("written", key)


def write_times(
    names: KeyNames, clock: Callable[[], float] = time.time
) -> Callable[[Mapping[Hashable, Any]], dict[Hashable, Any]]:
    """The engine's ``companions`` hook for a warmer with ``fresh_for``: for a batch about to be
    written, each string key's companion with the write time (``clock()``, epoch seconds)."""

    def companions(values: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        now = clock()
        return {names.companion(key): now for key in values if isinstance(key, str)}

    return companions


def lock_ttl(warmup_timeout: float) -> int:
    """The TTL of a load or refresh lock: ``warmup_timeout`` in whole seconds (at least 1),
    which Redis and Memcached can store as given."""
    return max(1, math.ceil(warmup_timeout))


def poll_interval(elapsed: float) -> float:
    """How long a process waiting for another's load sleeps between reads: 5 ms at first (a load
    is often that short), growing with the wait to at most 100 ms."""
    return min(0.1, 0.005 + elapsed / 10.0)


class ReadThrough:
    """``get(key)`` for one warmer (see the module's docstring).

    ``connect()`` returns a new cache object for the warmer's cache; each thread gets its own
    (some clients, e.g. pymemcache's, are not thread-safe). ``fresh_for``: seconds, or None for
    a plain read-through. ``prefix``: the prefix of the coordination keys. ``before_load()`` is
    called by a background refresh thread before each load, ``on_thread_exit()`` as it exits (the
    Django layer passes its database connection hygiene). ``counts`` records the events.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Any],
        loader: ValueLoader,
        config: WarmingConfig,
        *,
        fresh_for: float | None = None,
        prefix: str = "django_cachewarmers",
        counts: ReadCounts | None = None,
        before_load: Callable[[], None] | None = None,
        on_thread_exit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fresh_for is not None and not fresh_for > 0:
            raise ValueError(f"fresh_for: must be a number of seconds > 0, got {fresh_for!r}")
        self.name = name
        self.loader = loader
        self.config = config
        self.fresh_for = fresh_for
        self._fresh_for = fresh_for or 0.0
        self.counts = counts if counts is not None else ReadCounts()
        self._hits = self.counts.backlog
        self.lock_ttl = lock_ttl(config.warmup_timeout_s)
        #: After a failed refresh, the next one of that key waits this long (and so its log line).
        self.retry_after = max(1, math.ceil(fresh_for or 1))
        self._connect = connect
        self._before_load = before_load
        self._clock = clock
        self._local = threading.local()
        self._flight: SingleFlight[Any] = SingleFlight()
        #: Concurrent reads of one key in this process share one cache read (a hot key read by
        #: many threads at once costs one round trip), except on an in-process cache, where a
        #: read costs less than the sharing.
        self._reads: SingleFlight[Any] = SingleFlight()
        self._checked: dict[Hashable, _Aged | str] = {}
        self._logged: dict[Hashable, float] = {}
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.names = KeyNames.for_cache(prefix, self._thread_cache(), self._local.io.backend)
        self._coalesce = not self._local.io.backend.in_process
        self.refresher = Refresher(
            name, max_threads=min(4, config.max_workers), on_thread_exit=on_thread_exit
        )

    # -- the read ----------------------------------------------------------------------------

    def get(self, key: Any) -> Any:
        """The value of ``key``; loads and writes it on a miss (see the module's docstring).

        Raises ``ValueError`` for a key a warm would refuse (before the cache is touched), the
        loader's exception when a miss cannot be loaded (nothing is written), ``NoValue`` when
        the loader gives None. A failing cache is logged and read around: the value is loaded.
        """
        try:
            entry = self._checked.get(key)
        except TypeError:
            entry = None  # unhashable: _check says so
        if entry is None:
            entry = self._check(key)
        try:
            cache = self._local.cache
        except AttributeError:
            cache = self._thread_cache()
        if isinstance(entry, str):  # no fresh_for
            try:
                if self._coalesce:
                    value = self._reads.do(key, functools.partial(cache.get, key))
                else:
                    value = cache.get(key)
            except Exception as exc:
                return self._read_failed(key, exc)
            if value is not None:
                hits = self._hits  # ReadCounts.record(HIT), inlined: this is every hit's cost
                hits.append(HIT)
                if len(hits) >= BACKLOG_LIMIT:
                    self.counts.flush()
                return value
            return self._miss(key)
        try:
            if self._coalesce:
                value, written = self._reads.do(
                    key, functools.partial(self._read_with_age, cache, key, entry)
                )
            else:
                value, written = self._read_with_age(cache, key, entry)
        except Exception as exc:
            return self._read_failed(key, exc)
        if value is None:
            return self._miss(key)
        if type(written) is float and self._clock() - written < self._fresh_for:
            hits = self._hits
            hits.append(HIT)
            if len(hits) >= BACKLOG_LIMIT:
                self.counts.flush()
            return value
        self.counts.record(STALE)
        self.refresher.submit(key, lambda: self._refresh(key))
        return value

    def _read_with_age(self, cache: Any, key: Any, entry: _Aged) -> tuple[Any, Any]:
        """The value of ``key`` and its write time, in one round trip: the backend adapter's raw
        read where it has one (Django's RedisCache: one MGET, decoded by the cache's own
        deserializer, without ``get_many``'s second making and checking of the keys), else the
        cache's ``get_many``."""
        read = self._local.read
        if read is not None:
            answer = read(entry.full_keys)
            if answer is not None:
                (data, data_written), loads = answer
                return (
                    None if data is None else loads(data),
                    None if data_written is None else loads(data_written),
                )
            self._local.read = None  # this backend has no raw read: get_many from now on
        found = cache.get_many([key, entry.companion])
        return found.get(key), found.get(entry.companion)

    def check_key(self, key: Any) -> None:
        """Raise ``ValueError`` when a warm would refuse ``key`` (``key_problem``)."""
        try:
            if key in self._checked:
                return
        except TypeError:
            pass
        self._check(key)

    def _check(self, key: Any) -> _Aged | str:
        cache = self._thread_cache_or_reference()
        problem = key_problem(cache, self._local.io.backend, key)
        if problem is not None:
            raise ValueError(f"cache warmer {self.name}: invalid cache key {key!r}: {problem}")
        entry: _Aged | str = _PLAIN
        if self.fresh_for is not None:
            companion = self.names.companion(key)
            make_key = getattr(cache, "make_key", None)
            full_keys = [] if make_key is None else [make_key(key), make_key(companion)]
            entry = _Aged(companion, full_keys)
        checked = self._checked
        if len(checked) >= CHECKED_KEYS:
            checked.clear()
        checked[key] = entry
        return entry

    def _thread_cache_or_reference(self) -> Any:
        try:
            return self._local.cache
        except AttributeError:
            return self._thread_cache()

    def _thread_cache(self) -> Any:
        """This thread's cache object (and its ``CacheIO``), made on first use."""
        cache = self._connect()
        io = self._local.io = CacheIO(cache, self.config, adapter_for(cache), self.name)
        has_keys = getattr(cache, "make_key", None) is not None
        self._local.read = io.backend.read if has_keys else None
        self._local.cache = cache
        return cache

    def _read_failed(self, key: Hashable, exc: Exception) -> Any:
        self._log_once(
            ("read", None),
            "cache warmer %s: reading the cache failed (%s); loading instead",
            exception_text(exc),
        )
        return self._miss(key)

    # -- a miss ------------------------------------------------------------------------------

    def _miss(self, key: Hashable) -> Any:
        self.counts.record(MISS)
        return self._flight.do(key, lambda: self._load_on_miss(key), wait=self.lock_ttl)

    def _load_on_miss(self, key: Any) -> Any:
        """One load of ``key`` in the cluster: take the load lock, or wait for its holder."""
        cache = self._thread_cache_or_reference()
        lock = self.names.name("load", key)
        token = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + self.lock_ttl + 1.0
        refused_unlocked = 0
        while True:
            try:
                won = bool(cache.add(lock, token, timeout=self.lock_ttl))
            except Exception as exc:
                self._log_once(
                    ("lock", None),
                    "cache warmer %s: the load lock failed (%s); loading without it",
                    exception_text(exc),
                )
                return self._load_and_write(cache, key)
            if won:
                try:
                    value = self._read(cache, key)  # another process may have just written it
                    return value if value is not None else self._load_and_write(cache, key)
                finally:
                    self._release(cache, lock, token)
            value, locked = self._wait_for(cache, key, lock, deadline)
            if value is not None:
                return value
            if locked or time.monotonic() >= deadline:
                return self._load_and_write(cache, key)  # the lock outlived its holder's load
            refused_unlocked += 1
            if refused_unlocked >= 3:  # add() says no, yet no lock is there: the cache is failing
                return self._load_and_write(cache, key)

    def _wait_for(self, cache: Any, key: Any, lock: str, deadline: float) -> tuple[Any, bool]:
        """Poll until ``key`` has a value (returned), the lock is gone (``(None, False)``) or the
        deadline passed (``(None, True)``)."""
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None, True
            time.sleep(min(poll_interval(now - started), deadline - now))
            try:
                found = cache.get_many([key, lock])
            except Exception:
                return None, False
            value = found.get(key)
            if value is not None:
                return value, False
            if found.get(lock) is None:
                return None, False

    def _read(self, cache: Any, key: Any) -> Any:
        try:
            return cache.get(key)
        except Exception:
            return None

    def _release(self, cache: Any, lock: str, token: str) -> None:
        try:
            if cache.get(lock) == token:  # not a lock another process took after ours expired
                cache.delete(lock)
        except Exception:
            logger.debug("cache warmer %s: releasing %s failed", self.name, lock, exc_info=True)

    def _load(self, key: Any) -> Any:
        """The loader's value for ``key`` (a batch loader: a batch of one, never a remembered
        value); ``NoValue`` for None or a key left out."""
        loader = self.loader
        if isinstance(loader, BatchValueLoader):
            values = loader.load_batch([key])
            if key not in values:
                raise NoValue(
                    f"cache warmer {self.name}: the batch loader returned no value for {key!r}"
                )
            value = values[key]
        else:
            value = loader.load(key)
        if value is None:
            raise NoValue(
                f"cache warmer {self.name}: the loader returned None for {key!r}, which "
                "cache.get() cannot tell from a miss; nothing is cached"
            )
        if value is STORED_BY_LOADER:
            raise NoValue(
                f"cache warmer {self.name}: the loader stored {key!r} itself; get() serves "
                "loaders that return values"
            )
        return value

    def _load_and_write(self, cache: Any, key: Any) -> Any:
        try:
            value = self._load(key)
        except Exception as exc:
            logger.warning(
                "cache warmer %s: loading %r on a miss failed: %s",
                self.name,
                key,
                exception_text(exc),
            )
            raise
        self._write(key, value)
        return value

    def _write(self, key: Any, value: Any) -> bool:
        """Write ``key`` (and its companion) as a warm would; True if the value was stored.
        Never raises: a failed write is logged (once per interval), the caller keeps its value."""
        io: CacheIO = self._local.io
        if io.explicit_ttl_zero():
            return False  # TTL 0 deletes: as a warm, write nothing
        values: dict[Hashable, Any] = {key: value}
        if self.fresh_for is not None:
            values[self.names.companion(key)] = self._clock()
        try:
            refused = io.write(values)
        except Exception as exc:
            self._log_once(
                ("write", None), "cache warmer %s: writing failed: %s", exception_text(exc)
            )
            return False
        if key in refused:
            self._log_once(
                ("refused", key), "cache warmer %s: %r was not written: %s", key, refused[key]
            )
            return False
        return True

    # -- stale-while-revalidate --------------------------------------------------------------

    def _refresh(self, key: Any) -> None:
        """Reload a stale ``key`` (on a background thread), unless another process is at it or
        the last attempt failed less than ``retry_after`` seconds ago (the lock stays that long)."""
        cache = self._thread_cache_or_reference()
        lock = self.names.name("refresh", key)
        token = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        try:
            if not cache.add(lock, token, timeout=self.lock_ttl):
                return
            written = cache.get(self.names.companion(key))
        except Exception:
            logger.debug("cache warmer %s: refresh lock failed", self.name, exc_info=True)
            return
        assert self.fresh_for is not None
        if type(written) is float and self._clock() - written < self.fresh_for:
            self._release(cache, lock, token)  # another process refreshed it meanwhile
            return
        try:
            if self._before_load is not None:
                self._before_load()
            value = self._load(key)
            if not self._write(key, value):
                raise RuntimeError("the refreshed value could not be written")
        except Exception as exc:
            self.counts.record(REFRESH_FAILED)
            self._log_once(
                ("refresh", key),
                "cache warmer %s: refreshing %r failed (%s); serving the stale value until it "
                "expires",
                key,
                exception_text(exc),
            )
            try:  # keep the lock as the retry delay: one attempt per interval in the cluster
                cache.set(lock, token, timeout=self.retry_after)
            except Exception:
                logger.debug("cache warmer %s: refresh backoff failed", self.name, exc_info=True)
            return
        self.counts.record(REFRESH)
        self._release(cache, lock, token)

    def _log_once(self, what: Hashable, message: str, *args: object) -> None:
        """Log ``message % (name, *args)`` at WARNING once per ``what`` and ``retry_after``."""
        now = time.monotonic()
        logged = self._logged
        last = logged.get(what)
        if last is not None and now - last < self.retry_after:
            return
        if len(logged) >= CHECKED_KEYS:
            logged.clear()
        logged[what] = now
        logger.warning(message, self.name, *args)
