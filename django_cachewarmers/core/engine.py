"""The warming engine: fills a cache from a key provider and a value loader."""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from django_cachewarmers.core.backends import adapter_for
from django_cachewarmers.core.collector import WAKE_EVERY, Collector, exception_text
from django_cachewarmers.core.config import DEFAULT_TIMEOUT, WarmingConfig
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.loaders import BatchValueLoader, ValueLoader
from django_cachewarmers.core.pool import IDLE_TIMEOUT_S, Run, WorkerPool, backoff_delay
from django_cachewarmers.core.providers import KeyProvider, unique_keys
from django_cachewarmers.core.schedule import next_slot, wait_until
from django_cachewarmers.core.stats import WarmingStats

logger = logging.getLogger("django_cachewarmers")


@runtime_checkable
class SupportsSetMany(Protocol):
    """A Django-style cache: anything with ``set_many`` (and ``set`` for single keys)."""

    def set_many(self, data: dict[Any, Any], *args: Any, **kwargs: Any) -> Any: ...

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any: ...


Cache = SupportsSetMany | MutableMapping[Any, Any]

_MISSING = object()


def jittered(timeout: float, jitter: float) -> float:
    """``timeout`` stretched by a random share of up to ``jitter`` (0.1: up to 10% longer)."""
    return timeout * (1.0 + random.uniform(0.0, jitter))


def not_cacheable(exc: BaseException) -> str:
    """A failed key's reason when its value could not be stored."""
    return f"value not cacheable: {exception_text(exc)}"


_instances: weakref.WeakSet[CacheWarmer] = weakref.WeakSet()


@after_fork_in_child
def _reset_all_after_fork() -> None:
    for warmer in list(_instances):
        warmer._reset_after_fork()


class CacheWarmer:
    """Fills a cache with the values of a provider's keys, in parallel, with retries and a deadline.

    ``cache`` is a Django cache (anything with ``set_many``) or a plain mutable mapping. With a
    ``BatchValueLoader`` keys are loaded ``batch_size`` at a time; with any other loader one key at
    a time, on up to ``max_workers`` threads. Values are written with one ``set_many`` per batch.
    A key that fails never touches the value already cached for it.

    ``on_thread_exit`` is called by each worker thread as it exits; ``before_load`` by a worker
    thread before each task of a run (a batch, or a worker's share of the keys), before each retry
    and before the next key after a failed one. The Django layer passes Django's
    ``close_old_connections`` there, so a dropped database connection is replaced, as Django does
    at each request.
    """

    def __init__(
        self,
        cache: Cache,
        key_provider: KeyProvider,
        value_loader: ValueLoader,
        config: WarmingConfig | None = None,
        *,
        name: str | None = None,
        on_thread_exit: Callable[[], None] | None = None,
        before_load: Callable[[], None] | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        if not isinstance(cache, (SupportsSetMany, MutableMapping)):
            raise TypeError(
                "cache must be a Django cache (with set_many) or a mutable mapping, "
                f"got {type(cache).__name__}"
            )
        if not isinstance(key_provider, KeyProvider):
            raise TypeError(f"key_provider must be a KeyProvider, got {key_provider!r}")
        if not isinstance(value_loader, ValueLoader):
            raise TypeError(f"value_loader must be a ValueLoader, got {value_loader!r}")
        self.cache = cache
        self.key_provider = key_provider
        self.value_loader = value_loader
        self.config = config if config is not None else WarmingConfig()
        self.name = name or f"warmer-{id(self):x}"
        #: What this cache's backend does beyond ``set_many`` (core.backends): e.g. Django's
        #: RedisCache gets one script call per batch, memcached its byte-counted key limit.
        self.backend = adapter_for(cache)
        #: Level of the one summary line logged when a run has failed keys.
        self.failure_log_level = logging.WARNING
        self._on_thread_exit = on_thread_exit
        self._idle_timeout = idle_timeout
        self._before_load = before_load
        self._init_state()
        _instances.add(self)

    def _init_state(self) -> None:
        self._state_lock = threading.Lock()
        self._current: Run | None = None
        self._stats = WarmingStats()
        self._scheduler: threading.Thread | None = None
        self._scheduler_stop: threading.Event | None = None
        self._pool = WorkerPool(
            self.name,
            self.config.max_workers,
            idle_timeout=self._idle_timeout,
            on_thread_exit=self._on_thread_exit,
        )

    def _reset_after_fork(self) -> None:
        # No thread of the parent exists in a forked child, and its locks may be held forever:
        # start from a clean state (the child's stats start empty too).
        self._init_state()

    def __repr__(self) -> str:
        return f"<CacheWarmer {self.name!r} {self.config.strategy.value}>"

    # -- public API -------------------------------------------------------------------------

    @property
    def stats(self) -> WarmingStats:
        """The stats of the last finished ``warm()``."""
        return self._stats

    @property
    def is_warming(self) -> bool:
        """True while a ``warm()`` is in flight."""
        return self._current is not None

    def warm(
        self,
        keys: Iterable[Hashable] | None = None,
        *,
        progress: Callable[[int, int], object] | None = None,
    ) -> WarmingStats:
        """Warm ``keys`` (default: the provider's keys) and return the run's stats.

        Concurrent calls are serialized: a call made while a run for the same keys is in flight
        waits for that run and returns its stats instead of starting another; a call for other
        keys waits for the run in flight to finish, then runs. ``progress(done, total)`` is called
        as keys finish (only by the call that started the run).
        """
        request = None if keys is None else tuple(keys)
        while True:
            with self._state_lock:
                current = self._current
                if current is None:
                    run = Run(request, progress)
                    self._current = run
                    break
            if current.request == request:
                return current.outcome()
            current.done.wait()
        try:
            stats = self._execute(run)
        except BaseException as exc:
            logger.exception("cache warmer %s: warm failed", self.name)
            run.error = exc
            raise
        else:
            run.stats = stats
            self._stats = stats
            return stats
        finally:
            with self._state_lock:
                self._current = None
            run.done.set()

    def warm_async(self, keys: Iterable[Hashable] | None = None) -> Future[WarmingStats]:
        """Start ``warm(keys)`` on a background thread; the future resolves to its stats."""
        future: Future[WarmingStats] = Future()
        request = None if keys is None else list(keys)

        def target() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.warm(request))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=target, name=f"cachewarmer[{self.name}]-async", daemon=True).start()
        return future

    def warm_key(self, key: Hashable) -> bool:
        """Load and cache one key now (retries and deadline apply); True if it was written.

        Runs beside any ``warm()`` in flight and leaves ``stats`` alone.
        """
        return self._execute(Run((key,))).keys_warmed == 1

    def cancel(self, reason: str = "cancelled") -> bool:
        """Stop the run in flight promptly; its unfinished keys count as failed. True if one was."""
        run = self._current
        if run is None:
            return False
        run.cancel(reason)
        return True

    def start_scheduler(
        self,
        run: Callable[[], object] | None = None,
        *,
        interval: float | None = None,
        run_immediately: bool = False,
    ) -> bool:
        """Start one daemon thread that calls ``run`` (default ``warm``) every interval.

        Returns False (and starts nothing) if the scheduler is already running. Runs keep a fixed
        rate: a run that overruns the interval delays the next one, it does not stack them.
        """
        interval = self.config.refresh_interval_s if interval is None else interval
        if interval <= 0:
            raise ValueError(f"interval: must be greater than 0, got {interval}")
        with self._state_lock:
            if self._scheduler is not None and self._scheduler.is_alive():
                return False
            stop = threading.Event()
            thread = threading.Thread(
                target=self._schedule_loop,
                args=(stop, run or self.warm, interval, run_immediately),
                name=f"cachewarmer[{self.name}]-scheduler",
                daemon=True,
            )
            self._scheduler, self._scheduler_stop = thread, stop
        thread.start()
        return True

    def stop_scheduler(self, timeout: float | None = None, *, cancel_running: bool = True) -> None:
        """Stop the scheduler thread at once (no waiting out the interval) and join it.

        With ``cancel_running`` a run in flight is cancelled so the join is prompt too.
        """
        with self._state_lock:
            thread, stop = self._scheduler, self._scheduler_stop
            self._scheduler = self._scheduler_stop = None
        if thread is None or stop is None:
            return
        stop.set()
        if cancel_running:
            self.cancel("scheduler stopped")
        if thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def scheduler_running(self) -> bool:
        """True while the scheduler thread is alive."""
        thread = self._scheduler
        return thread is not None and thread.is_alive()

    # -- scheduling -------------------------------------------------------------------------

    def _schedule_loop(
        self, stop: threading.Event, run: Callable[[], object], interval: float, immediately: bool
    ) -> None:
        next_at = time.monotonic() + (0.0 if immediately else interval)
        while not wait_until(stop, next_at, time.monotonic):
            try:
                run()
            except Exception:
                logger.exception(
                    "cache warmer %s: scheduled run failed; schedule goes on", self.name
                )
            # The next slot of the fixed-rate grid: an overrun skips the missed slots rather than
            # running back to back.
            next_at = next_slot(interval, time.monotonic(), origin=next_at)

    # -- one run ----------------------------------------------------------------------------

    def _execute(self, run: Run) -> WarmingStats:
        config = self.config
        stats = WarmingStats()
        started = time.monotonic()
        deadline = started + config.warmup_timeout_s
        try:
            try:
                requested = (
                    self.key_provider.get_keys() if run.request is None else list(run.request)
                )
            except Exception as exc:
                logger.exception("cache warmer %s: key provider failed", self.name)
                stats.run_error = f"key provider failed: {type(exc).__name__}: {exc}"
                return stats
            keys = self._unique_keys(requested, stats)
            self._warn_max_entries(len(keys))
            if keys:
                Collector(self, run, stats, deadline).collect(keys)
            return stats
        finally:
            stats.total_time_ms = (time.monotonic() - started) * 1000.0
            stats.finished_at = datetime.now(timezone.utc)
            self._log_summary(stats)

    @staticmethod
    def _unique_keys(requested: Iterable[Any], stats: WarmingStats) -> list[Hashable]:
        unique, unhashable = unique_keys(requested)
        for key in unhashable:
            stats.keys_failed += 1
            stats.add_error(key, f"key is not hashable ({type(key).__name__})")
        return unique

    def _warn_max_entries(self, count: int) -> None:
        limit = self.backend.max_entries()
        if limit is not None and count > limit:
            logger.warning(
                "cache warmer %s: %d keys to warm, but its cache (%s) holds at most "
                "MAX_ENTRIES=%d entries and culls a share of them whenever it is full: not all of "
                "them can stay cached; raise OPTIONS['MAX_ENTRIES'] of that cache",
                self.name,
                count,
                type(self.cache).__name__,
                limit,
            )

    def _log_summary(self, stats: WarmingStats) -> None:
        # A cache outage already had its one line ("... stopping this run"): no second one.
        if stats.keys_failed and not (stats.run_error or "").startswith("the cache was"):
            first = f"; first error: {stats.errors[0]}" if stats.errors else ""
            logger.log(
                self.failure_log_level,
                "cache warmer %s: %d of %d keys failed%s",
                self.name,
                stats.keys_failed,
                stats.keys_attempted,
                first,
            )
        logger.info(
            "cache warmer %s: warmed %d keys, %d failed, in %.1f ms",
            self.name,
            stats.keys_warmed,
            stats.keys_failed,
            stats.total_time_ms,
        )

    # -- loading (on worker threads) -------------------------------------------------------

    def _prepare_load(self) -> None:
        """Call the ``before_load`` hook; its failure is logged, the load goes ahead."""
        if self._before_load is None:
            return
        try:
            self._before_load()
        except Exception:
            logger.exception("cache warmer %s: before_load hook failed", self.name)

    def _retry(
        self, run: Run, deadline: float, label: object, func: Callable[[], Any], error: Exception
    ) -> Any:
        """After ``func`` failed with ``error``: retry with backoff; raise the last error."""
        config = self.config
        attempt = 1
        while True:
            if attempt >= config.attempts or run.cancelled.is_set():
                raise error
            delay = backoff_delay(attempt, config.retry_backoff_s, config.retry_backoff_max_s)
            if time.monotonic() + delay >= deadline:
                raise error
            logger.debug(
                "cache warmer %s: retrying %r in %.3fs (attempt %d of %d): %s",
                self.name,
                label,
                delay,
                attempt + 1,
                config.attempts,
                error,
            )
            attempt += 1
            if run.cancelled.wait(delay):
                raise error
            self._prepare_load()  # e.g. replace the database connection that just failed
            try:
                return func()
            except Exception as exc:
                error = exc

    def _drain_task(self, run: Run, deadline: float, todo: deque[Hashable]) -> Callable[[], None]:
        """A worker's share of a per-key run: load keys from ``todo`` until it is empty."""
        load = self.value_loader.load
        append = run.results.append
        cancelled = run.cancelled.is_set

        def task() -> None:
            done = 0
            prepare = True
            try:
                while not cancelled():
                    try:
                        key = todo.popleft()
                    except IndexError:
                        return
                    if prepare:  # at the start, and after a failed key
                        self._prepare_load()
                        prepare = False
                    try:
                        value = load(key)
                    except Exception as exc:
                        try:
                            value = self._retry(
                                run, deadline, key, functools.partial(load, key), exc
                            )
                        except Exception as final:
                            logger.debug("cache warmer %s: loading %r failed", self.name, key)
                            append(("key", key, False, final))
                            prepare = True
                            continue
                    append(("key", key, True, value))
                    done += 1
                    if done % WAKE_EVERY == 0:
                        run.wake.put(True)
            finally:
                run.wake.put(True)

        return task

    def _batch_task(
        self, run: Run, deadline: float, batch: list[Hashable], loader: BatchValueLoader
    ) -> Callable[[], None]:
        def task() -> None:
            if run.cancelled.is_set():
                return
            label = f"batch of {len(batch)}"
            self._prepare_load()
            try:
                try:
                    values = loader.load_batch(batch)
                except Exception as exc:
                    values = self._retry(
                        run, deadline, label, lambda: loader.load_batch(batch), exc
                    )
            except Exception as final:
                logger.debug("cache warmer %s: %s failed", self.name, label)
                run.results.append(("batch", batch, False, final))
            else:
                run.results.append(("batch", batch, True, values))
            run.wake.put(True)

        return task

    # -- writing (on the calling thread) ----------------------------------------------------

    def _timeout_kwargs(self) -> dict[str, Any]:
        timeout = self.config.cache_timeout
        if timeout is DEFAULT_TIMEOUT:
            return {}
        if timeout is not None and timeout > 0 and self.config.timeout_jitter > 0:
            timeout = jittered(timeout, self.config.timeout_jitter)
            return {"timeout": int(timeout) if timeout >= 1 else timeout}
        return {"timeout": timeout}

    def _explicit_ttl_zero(self) -> bool:
        """True when entries would be written with TTL 0, which Django treats as "don't cache"."""
        timeout = self.config.cache_timeout
        if timeout is DEFAULT_TIMEOUT:
            timeout = getattr(self.cache, "default_timeout", None)
        return timeout is not None and timeout <= 0

    def _write(
        self, values: dict[Hashable, Any], full_keys: Mapping[Hashable, str] | None = None
    ) -> dict[Hashable, str]:
        """Write one batch; return the keys that were not stored, with the reason.

        ``full_keys`` are the keys as the cache made them (prefix, version), when already known.
        Whatever exception a batch write raises, its keys are written again one by one, and a key
        whose write raises while the cache still answers a probe (``_cache_answers``) fails alone
        ("value not cacheable"). Raises only when the cache itself no longer answers (unreachable,
        erroring): the caller stops the run.
        """
        cache = self.cache
        if not isinstance(cache, SupportsSetMany):
            cache.update(values)
            return {}
        try:
            return self._write_batch(cache, values, full_keys)
        except Exception as exc:
            batch_error = exc
        # Ask the cache first: when it is down, stop now rather than wait out one timeout per key.
        if not self._cache_answers():
            raise batch_error
        logger.debug(
            "cache warmer %s: a batch write raised %s; writing its keys one by one",
            self.name,
            exception_text(batch_error),
        )
        return self._write_one_by_one(cache, values)

    def _write_batch(
        self,
        cache: SupportsSetMany,
        values: dict[Hashable, Any],
        full_keys: Mapping[Hashable, str] | None,
    ) -> dict[Hashable, str]:
        failed = self.backend.write(
            values, self.config.cache_timeout, self.config.timeout_jitter, full_keys
        )
        if failed is not None:
            return failed
        refused = cache.set_many(values, **self._timeout_kwargs()) or []
        return dict.fromkeys(refused, "the cache refused the value")

    def _write_one_by_one(
        self, cache: SupportsSetMany, values: dict[Hashable, Any]
    ) -> dict[Hashable, str]:
        failed: dict[Hashable, str] = {}
        for key, value in values.items():
            try:
                cache.set(key, value, **self._timeout_kwargs())
            except Exception as exc:
                if not self._cache_answers():
                    raise
                failed[key] = not_cacheable(exc)
        return failed

    def _cache_answers(self) -> bool:
        """Whether the cache stores and returns a tiny value right now (write, read, delete).

        This is what tells a value's fault from an outage: after a write raised, a cache that
        still answers this probe refused that value, not the connection. A cache that swallows
        its errors (django-redis ``IGNORE_EXCEPTIONS``) or stores nothing fails the probe.
        """
        cache = self.cache
        if not isinstance(cache, SupportsSetMany):
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

    # -- read-back verification (on the calling thread, after the run's last write) ---------

    def _missing(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """The ``keys`` a read through the cache would miss right now (one or two round trips).

        The backend adapter's own read when it has one (Django's RedisCache: a multi-key EXISTS);
        else ``get_many`` (what a request reads through); a mapping: ``in``. Raises what the
        cache raises.
        """
        cache = self.cache
        if not isinstance(cache, SupportsSetMany):
            return [key for key in keys if key not in cache]
        make_key = getattr(cache, "make_key", None)
        if make_key is not None:
            absent = self.backend.missing([make_key(key) for key in keys])
            if absent is not None:
                return [keys[i] for i in absent]
        get_many = getattr(cache, "get_many", None)
        if get_many is not None:
            found = get_many(list(keys))
            return [key for key in keys if key not in found]
        get = getattr(cache, "get", None)
        if get is None:
            return []  # a write-only cache: nothing to read back through
        return [key for key in keys if get(key, _MISSING) is _MISSING]

    def _loss_cause(self, written: int) -> str:
        """The likely reason written keys did not read back (computed once per run)."""
        cache = self.cache
        if self.backend.stores_nothing():
            return f"the cache is a no-op ({type(cache).__name__}): it stores nothing"
        if self._explicit_ttl_zero():
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
        if not self._cache_answers():
            return (
                "the cache is unreachable, or silently ignores its errors (e.g. django-redis "
                "IGNORE_EXCEPTIONS), or stores nothing"
            )
        return (
            "evicted or expired before the read-back (a TTL shorter than the run, memory "
            "eviction, or another process deleted it)"
        )
