"""The warming engine: fills a cache from a key provider and a value loader."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any

from django_cachewarmers.core.backends import adapter_for
from django_cachewarmers.core.cache_io import Cache, CacheIO, is_django_cache
from django_cachewarmers.core.collector import Collector
from django_cachewarmers.core.config import WarmingConfig
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.loaders import ValueLoader
from django_cachewarmers.core.pool import IDLE_TIMEOUT_S, Run, WorkerPool
from django_cachewarmers.core.providers import KeyProvider, unique_keys
from django_cachewarmers.core.schedule import next_slot, wait_until
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.work import Work

logger = logging.getLogger("django_cachewarmers")


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
        if not (is_django_cache(cache) or isinstance(cache, MutableMapping)):
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
        #: How this warmer writes its cache and reads it back.
        self.io = CacheIO(cache, self.config, self.backend, self.name)
        #: Level of the one summary line logged when a run has failed keys.
        self.failure_log_level = logging.WARNING
        #: Optional: given this run's key count, the WARNING to log (or None) when the cache
        #: holds fewer entries than are written into it. None: compare this warmer's own key
        #: count with the backend's ``max_entries()``. The Django layer sets one that counts every
        #: warmer writing into the same cache (``registry.max_entries_warning``).
        self.max_entries_check: Callable[[int], str | None] | None = None
        #: Optional: given a batch about to be written (``{key: value}``), extra entries to write
        #: in the same write (``{key: value}``), e.g. each key's write time for ``get`` with
        #: ``fresh_for`` (``core.readthrough.write_times``). They are not keys of the run: not
        #: counted, not read back, and a failure of theirs fails no key.
        self.companions: Callable[[Mapping[Hashable, Any]], dict[Hashable, Any]] | None = None
        #: Optional: called with the keys of each run of the whole key set (not with those of a
        #: run of requested keys), before they are loaded; what it raises is logged. The Django
        #: layer sets one that attributes reads to this warmer (``reads``).
        self.keys_listener: Callable[[list[Hashable]], None] | None = None
        self._on_thread_exit = on_thread_exit
        self._idle_timeout = idle_timeout
        self._before_load = before_load
        self._work = Work(self)
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
            if run.request is None and self.keys_listener is not None:
                try:
                    self.keys_listener(keys)
                except Exception:
                    logger.exception("cache warmer %s: keys listener failed", self.name)
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
        check = self.max_entries_check
        if check is not None:
            try:
                message = check(count)
            except Exception:
                logger.debug("cache warmer %s: max_entries_check failed", self.name, exc_info=True)
            else:
                if message is not None:
                    logger.warning("cache warmer %s: %s", self.name, message)
                return
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
