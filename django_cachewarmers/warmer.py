"""The warming engine: fills a cache from a key provider and a value loader."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from django_cachewarmers.config import CACHE_DEFAULT, WarmingConfig
from django_cachewarmers.loaders import NO_STORE, BatchValueLoader, ValueLoader
from django_cachewarmers.providers import KeyProvider
from django_cachewarmers.stats import WarmingStats
from django_cachewarmers.writers import (
    RedisWriter,
    is_django_redis_cache,
    jittered,
    not_cacheable,
)

logger = logging.getLogger("django_cachewarmers")

#: A worker signals the collector after this many results (and when it runs out of keys) ...
_WAKE_EVERY = 1000
#: ... and the collector looks for results at least this often anyway.
_POLL_S = 0.05


@runtime_checkable
class SupportsSetMany(Protocol):
    """A Django-style cache: anything with ``set_many`` (and ``set`` for single keys)."""

    def set_many(self, data: dict[Any, Any], *args: Any, **kwargs: Any) -> Any: ...

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any: ...


Cache = SupportsSetMany | MutableMapping[Any, Any]


#: Django's portable-key rule (``memcache_key_warnings``): the cache warns on every backend, and
#: Memcached refuses, a key longer than this or with whitespace or control characters. Django counts
#: characters; memcached itself counts BYTES (of the UTF-8 key), so on a memcached backend a key
#: of 163 Cyrillic characters (326 bytes) is refused although Django does not warn about it.
MAX_CACHE_KEY_LENGTH = 250
_BAD_KEY_CHARACTER = re.compile(r"[\x00-\x20\x7f]")


def full_key_problem(full: str, *, count_bytes: bool = False) -> str | None:
    """Why a Django cache would reject or warn about a made key (prefix and version included).

    ``count_bytes``: the backend limits the key's UTF-8 bytes, not its characters (memcached:
    see ``key_limit_counts_bytes``).
    """
    if len(full) > MAX_CACHE_KEY_LENGTH:
        return (
            f"{len(full)} characters with the cache's prefix and version; "
            f"at most {MAX_CACHE_KEY_LENGTH} are portable (Memcached refuses longer keys)"
        )
    if count_bytes:
        size = len(full.encode("utf-8"))
        if size > MAX_CACHE_KEY_LENGTH:
            return (
                f"{size} bytes in UTF-8 with the cache's prefix and version; "
                f"memcached refuses keys over {MAX_CACHE_KEY_LENGTH} bytes"
            )
    bad = _BAD_KEY_CHARACTER.search(full)
    if bad is not None:
        return f"it contains {bad.group()!r}: whitespace and control characters are not portable"
    return None


def _backend_module(cache: object) -> str:
    """The ``django.core.cache.backends`` module a cache's class comes from ("" if none)."""
    prefix = "django.core.cache.backends."
    for cls in type(cache).__mro__:
        if cls.__module__.startswith(prefix):
            return cls.__module__.removeprefix(prefix)
    return ""


def key_limit_counts_bytes(cache: object) -> bool:
    """True for Django's memcached backends, whose server limits a key to 250 UTF-8 bytes."""
    return _backend_module(cache) == "memcached"


#: The backends that cull (drop entries at random) once they hold ``MAX_ENTRIES`` entries.
_CULLING_BACKENDS = frozenset({"locmem", "db", "filebased"})


def cache_max_entries(cache: object) -> int | None:
    """How many entries ``cache`` holds before it culls, or None when it has no such limit.

    Django's LocMemCache, DatabaseCache and FileBasedCache (and subclasses) take it from
    ``OPTIONS["MAX_ENTRIES"]`` (default 300) and, once full, drop a share of their entries
    (``1 / CULL_FREQUENCY``) at each write. Redis and memcached evict by memory instead: None.
    """
    if _backend_module(cache) not in _CULLING_BACKENDS:
        return None
    limit = getattr(cache, "_max_entries", None)
    return limit if isinstance(limit, int) else None


#: Read-back verification checks every written key of a run up to this many; above it, a random
#: sample of this many (docs/guarantees.md, "Read-back verification").
VERIFY_ALL_UP_TO = 10_000
#: Keys per read-back round trip (one get_many call): what is cheapest per key while a
#: reply (get_many returns the values) stays small.
VERIFY_CHUNK = 1000
_MISSING = object()


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, "equal jitter".

    The delay lies in ``[d/2, d]`` with ``d = min(cap, base * 2**(attempt-1))``, so successive
    delays never shrink while concurrent retries still spread out.
    """
    ceiling: float = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


#: The longest single wait: longer ones overflow a thread's timeout (threading.TIMEOUT_MAX).
_MAX_WAIT_S = 3600.0


def wait_until(event: threading.Event, at: float, clock: Callable[[], float]) -> bool:
    """Wait until ``clock()`` reaches ``at`` (even infinity) or ``event`` is set; True if set.

    A long wait is waited out in bounded steps, so no interval overflows a thread's timeout.
    """
    while True:
        remaining = at - clock()
        if remaining <= 0:
            return event.is_set()
        if event.wait(min(remaining, _MAX_WAIT_S)):
            return True


class _Run:
    """One in-flight warm: its cancellation flag, its result channel and its outcome."""

    def __init__(
        self,
        request: tuple[Hashable, ...] | None,
        progress: Callable[[int, int], object] | None = None,
    ) -> None:
        self.request = request
        self.progress = progress
        self.cancelled = threading.Event()
        self.cancel_reason = "cancelled"
        self.done = threading.Event()
        # Workers append results here (deque appends are atomic); the collector pops them. A result
        # appended before a loader hangs is still collected when the deadline cuts the run short.
        self.results: deque[tuple[Any, ...]] = deque()
        # Tells the collector to look at ``results`` now rather than at its next poll.
        self.wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self.stats: WarmingStats | None = None
        self.error: BaseException | None = None

    def cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()
            self.wake.put(True)

    def outcome(self) -> WarmingStats:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


class _WorkerPool:
    """Daemon worker threads for one warmer, never more than ``max_workers`` alive at once.

    A loader that hangs keeps its thread; since the cap counts it, scheduled runs cannot pile up
    threads behind it, and a finished run takes back the tasks no thread got to (``discard``), so
    they cannot pile up either. Idle threads exit after ``idle_timeout`` seconds, calling
    ``on_thread_exit`` (the Django layer closes the thread's database connections there).
    """

    def __init__(
        self,
        name: str,
        max_workers: int,
        idle_timeout: float = 5.0,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.on_thread_exit = on_thread_exit
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[tuple[object, Callable[[], None]]] = deque()
        self._alive = 0
        self._idle = 0
        self._spawned = 0

    @property
    def alive(self) -> int:
        """Worker threads currently alive (busy or idle)."""
        return self._alive

    @property
    def queued(self) -> int:
        """Tasks waiting for a thread."""
        return len(self._tasks)

    def submit_many(self, owner: object, tasks: Sequence[Callable[[], None]]) -> None:
        """Queue ``tasks`` (on behalf of ``owner``, a run) and start threads for them if needed."""
        with self._cond:
            self._tasks.extend((owner, task) for task in tasks)
            wanted = len(self._tasks) - self._idle
            spawn = max(0, min(self.max_workers - self._alive, wanted))
            self._alive += spawn
            names = [f"cachewarmer[{self.name}]-{self._spawned + i + 1}" for i in range(spawn)]
            self._spawned += spawn
            self._cond.notify(len(tasks))
        for name in names:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def discard(self, owner: object) -> int:
        """Drop the queued tasks of ``owner``; returns how many."""
        with self._cond:
            before = len(self._tasks)
            self._tasks = deque(item for item in self._tasks if item[0] is not owner)
            return before - len(self._tasks)

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._tasks:
                        self._idle += 1
                        woken = self._cond.wait(self.idle_timeout)
                        self._idle -= 1
                        if not woken and not self._tasks:
                            self._alive -= 1
                            return
                    _, task = self._tasks.popleft()
                task()
        finally:
            if self.on_thread_exit is not None:
                try:
                    self.on_thread_exit()
                except Exception:
                    logger.exception("cache warmer %s: thread exit hook failed", self.name)


_instances: weakref.WeakSet[CacheWarmer] = weakref.WeakSet()


def _reset_all_after_fork() -> None:
    for warmer in list(_instances):
        warmer._reset_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reset_all_after_fork)


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
        # Django's RedisCache gets one script call per batch instead of set_many (writers.py).
        self._redis_writer = RedisWriter(cache) if is_django_redis_cache(cache) else None
        #: Level of the one summary line logged when a run has failed keys.
        self.failure_log_level = logging.WARNING
        #: Optional: given this run's key count, the WARNING to log (or None) when the cache
        #: holds fewer entries than are written into it. None: compare this warmer's own key
        #: count with ``cache_max_entries(cache)``. The Django layer sets one that counts every
        #: warmer writing into the same cache (``registry.max_entries_warning``).
        self.max_entries_check: Callable[[int], str | None] | None = None
        self._on_thread_exit = on_thread_exit
        self._before_load = before_load
        self._init_state()
        _instances.add(self)

    def _init_state(self) -> None:
        self._state_lock = threading.Lock()
        self._current: _Run | None = None
        self._stats = WarmingStats()
        self._scheduler: threading.Thread | None = None
        self._scheduler_stop: threading.Event | None = None
        self._pool = _WorkerPool(
            self.name, self.config.max_workers, on_thread_exit=self._on_thread_exit
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

    @property
    def batch_mode(self) -> bool:
        """True when values are loaded in batches (the loader is a ``BatchValueLoader``)."""
        return isinstance(self.value_loader, BatchValueLoader)

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
                    run = _Run(request, progress)
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
        return self._execute(_Run((key,))).keys_warmed == 1

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
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # overran: skip the missed slots rather than run back to back
                next_at = now + interval - ((now - next_at) % interval)

    # -- one run ----------------------------------------------------------------------------

    def _execute(self, run: _Run) -> WarmingStats:
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
                _Collector(self, run, stats, deadline).collect(keys)
            return stats
        finally:
            stats.total_time_ms = (time.monotonic() - started) * 1000.0
            stats.last_warming = datetime.now(timezone.utc)
            self._log_summary(stats)

    @staticmethod
    def _unique_keys(requested: Iterable[Any], stats: WarmingStats) -> list[Hashable]:
        unique: dict[Hashable, None] = {}
        for key in requested:
            try:
                unique[key] = None
            except TypeError:
                stats.keys_failed += 1
                stats.add_error(key, f"key is not hashable ({type(key).__name__})")
        return list(unique)

    def _warn_max_entries(self, count: int) -> None:
        check = self.max_entries_check
        if check is not None:
            # The Django layer counts every warmer writing into the same cache (registry.py).
            try:
                message = check(count)
            except Exception:
                logger.debug("cache warmer %s: max_entries_check failed", self.name, exc_info=True)
            else:
                if message is not None:
                    logger.warning("cache warmer %s: %s", self.name, message)
                return
        limit = cache_max_entries(self.cache)
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
        self, run: _Run, deadline: float, label: object, func: Callable[[], Any], error: Exception
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

    def _drain_task(self, run: _Run, deadline: float, todo: deque[Hashable]) -> Callable[[], None]:
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
                    if done % _WAKE_EVERY == 0:
                        run.wake.put(True)
            finally:
                run.wake.put(True)

        return task

    def _batch_task(
        self, run: _Run, deadline: float, batch: list[Hashable], loader: BatchValueLoader
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

    def _backend_timeout(self, cache: Any) -> float | None:
        """The entry TTL in seconds as the cache counts it (None: never expire)."""
        timeout = self.config.cache_timeout
        if timeout is CACHE_DEFAULT:
            backend_timeout: float | None = cache.get_backend_timeout()
            return backend_timeout
        return None if timeout is None else float(timeout)

    def _timeout_kwargs(self) -> dict[str, Any]:
        timeout = self.config.cache_timeout
        if timeout is CACHE_DEFAULT:
            return {}
        if timeout is not None and timeout > 0 and self.config.timeout_jitter > 0:
            timeout = jittered(timeout, self.config.timeout_jitter)
            return {"timeout": int(timeout) if timeout >= 1 else timeout}
        return {"timeout": timeout}

    def _explicit_ttl_zero(self) -> bool:
        """True when entries would be written with TTL 0, which Django treats as "don't cache"."""
        timeout = self.config.cache_timeout
        if timeout is CACHE_DEFAULT:
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
            _describe(batch_error),
        )
        return self._write_one_by_one(cache, values)

    def _write_batch(
        self,
        cache: SupportsSetMany,
        values: dict[Hashable, Any],
        full_keys: Mapping[Hashable, str] | None,
    ) -> dict[Hashable, str]:
        if self._redis_writer is not None:
            failed = self._redis_writer.write(
                values, self._backend_timeout(cache), self.config.timeout_jitter, full_keys
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

    def _cache_reads(self) -> bool:
        """Whether the cache answers a read of a key nobody wrote (without raising).

        The read-back's outage test: unlike ``_cache_answers`` it writes nothing, so it cannot
        cull a full LocMem, database or file cache while its keys are being read back.
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

    def _read_back(self, keys: Sequence[Hashable]) -> dict[Hashable, str | None]:
        """The ``keys`` a real read through the cache would not get a value for right now.

        A real read: the cache's own ``get_many`` (one round trip per call, values deserialized
        as a view's ``cache.get`` would), on every backend; on Django's RedisCache the ``MGET``
        that ``get_many`` sends, each reply decoded by the cache's own deserializer
        (``RedisWriter.read``), so that one bad value fails alone without a second round trip.
        Returns each such key with a reason of its own, or None when it is simply not there (the
        caller names the likely cause).
        A value read back as None counts as missing: ``cache.get(key)`` returns None for a miss,
        and memcached returns None for a value it cannot decode. When the batch read raises, the
        keys are read one by one and only a key whose own read raises fails with that error
        (a value that pickles but does not unpickle); a mapping: ``in``. Raises only when the
        cache itself stops answering (``_cache_reads``).
        """
        cache = self.cache
        if not isinstance(cache, SupportsSetMany):
            return {key: None for key in keys if key not in cache}
        if self._redis_writer is not None:
            make_key = cache.make_key  # type: ignore[attr-defined]
            read = self._redis_writer.read([make_key(key) for key in keys])
            if read is not None:
                return self._decode(keys, *read)
        get_many = getattr(cache, "get_many", None)
        if get_many is not None:
            try:
                found = get_many(list(keys))
            except Exception as exc:
                batch_error: BaseException = exc
            else:
                return {key: _read_as_none(found, key) for key in keys if found.get(key) is None}
        else:
            batch_error = RuntimeError("no get_many")
        get = getattr(cache, "get", None)
        if get is None:
            return {}  # a write-only cache: nothing to read back through
        if get_many is not None and not self._cache_reads():
            raise batch_error  # an outage: stop now rather than wait out one timeout per key
        lost: dict[Hashable, str | None] = {}
        for key in keys:
            try:
                value = get(key, _MISSING)
            except Exception as exc:
                if not self._cache_reads():
                    raise
                lost[key] = (
                    f"cached, but reading it back raises {_describe(exc)}: a view reading it "
                    "would fail"
                )
                continue
            if value is _MISSING:
                lost[key] = None
            elif value is None:
                lost[key] = _READS_AS_NONE
        return lost

    @staticmethod
    def _decode(
        keys: Sequence[Hashable], replies: list[Any], loads: Callable[[Any], Any]
    ) -> dict[Hashable, str | None]:
        """The read-back of Django's RedisCache: each raw reply decoded with the cache's own
        deserializer, as ``cache.get`` decodes it; a reply that does not decode fails its key."""
        lost: dict[Hashable, str | None] = {}
        for key, data in zip(keys, replies, strict=True):
            if data is None:
                lost[key] = None
                continue
            try:
                value = loads(data)
            except Exception as exc:
                lost[key] = (
                    f"cached, but reading it back raises {_describe(exc)}: a view reading it "
                    "would fail"
                )
                continue
            if value is None:
                lost[key] = _READS_AS_NONE
        return lost

    def _loss_cause(self, written: int) -> str:
        """The likely reason written keys did not read back (computed once per run)."""
        cache = self.cache
        module = _backend_module(cache)
        if module == "dummy":
            return "the cache is a no-op (DummyCache): it stores nothing"
        if self._explicit_ttl_zero():
            return "TTL 0: timeout 0 means don't cache (None means never expire)"
        limit = cache_max_entries(cache)
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


class _Collector:
    """Runs one warm: hands out work, gathers results, writes batches, keeps the deadline."""

    def __init__(
        self, warmer: CacheWarmer, run: _Run, stats: WarmingStats, deadline: float
    ) -> None:
        self.warmer = warmer
        self.run = run
        self.stats = stats
        self.deadline = deadline
        self.pending: dict[Hashable, Any] = {}
        self.finished: set[Hashable] = set()
        self.received = 0
        self.collect_keys: list[Hashable] = []
        self.todo: deque[Hashable] = deque()
        self.write_failed = False
        #: Keys this run wrote (or the loader stored itself), for the read-back verification.
        self.written: list[Hashable] = []
        self.alias: dict[Hashable, Hashable] = {}  # read-back key -> warmer key (``stored_key``)
        #: Keys the loader stored itself and checks with its ``check_stored`` hook.
        self.checked_by_loader: list[Hashable] = []
        self.check_stored = self._loader_hook("check_stored")
        self.count_bytes = key_limit_counts_bytes(warmer.cache)

    def collect(self, keys: list[Hashable]) -> None:
        self.collect_keys = keys
        warmer, run = self.warmer, self.run
        config = warmer.config
        loader = warmer.value_loader
        if isinstance(loader, BatchValueLoader):
            size = config.batch_size
            tasks = [
                warmer._batch_task(run, self.deadline, keys[i : i + size], loader)
                for i in range(0, len(keys), size)
            ]
        else:
            todo = deque(keys)
            self.todo = todo
            tasks = [
                warmer._drain_task(run, self.deadline, todo)
                for _ in range(min(config.max_workers, len(keys)))
            ]
        warmer._pool.submit_many(run, tasks)
        expected = len(keys)
        while self.received < expected and not run.cancelled.is_set():
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                run.cancel(f"timed out after {config.warmup_timeout_s:g}s")
                break
            with contextlib.suppress(queue.Empty):
                run.wake.get(timeout=min(remaining, _POLL_S))
            self._take_results()
        self._take_results()  # what finished before a cut-off counts, a hung worker's too
        self._flush()
        self._verify()  # after the run's last write: culling caused by later batches counts
        self._report_progress(expected)
        # Nothing of this run may outlive it: tasks no thread took, and keys a hung worker holds.
        warmer._pool.discard(run)
        self.todo.clear()
        if len(self.finished) < expected:
            run.cancel(run.cancel_reason)  # stop workers still busy with this run
            for key in keys:
                if key not in self.finished:
                    self._fail(key, f"not warmed: {run.cancel_reason}")

    def _take_results(self) -> None:
        results = self.run.results
        if not results:
            return
        while results:
            self._handle(results.popleft())
        self._report_progress(len(self.collect_keys))

    def _report_progress(self, total: int) -> None:
        progress = self.run.progress
        if progress is None:
            return
        try:
            progress(min(self.received, total), total)
        except Exception:
            logger.exception("cache warmer %s: progress callback failed", self.warmer.name)

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind, subject, ok, payload = item
        if kind == "key":
            self.received += 1
            if ok:
                self.pending[subject] = payload
                if len(self.pending) >= self.warmer.config.batch_size:
                    self._flush()
            else:
                self._fail(subject, _describe(payload))
            return
        batch: list[Hashable] = subject
        self.received += len(batch)
        if not ok:
            message = f"batch load failed: {_describe(payload)}"
            for key in batch:
                self._fail(key, message)
            return
        values: dict[Hashable, Any] = payload
        for key in batch:
            if key in values:
                self.pending[key] = values[key]
            else:
                self._fail(key, "batch loader returned no value for this key")
        self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        values, self.pending = self.pending, {}
        for key in [k for k, v in values.items() if v is NO_STORE or v is None]:
            if values.pop(key) is None:
                # Nothing written: the good value cached before stays (a None would read as a miss).
                self._fail(key, _LOADED_NONE)
            else:  # the loader warmed it itself: nothing to write, but verified too
                self._stored_by_loader(key)
        full_keys: dict[Hashable, str] | None = None
        make_key = getattr(self.warmer.cache, "make_key", None)
        if make_key is not None:  # a Django cache; a plain mapping takes any hashable key
            full_keys = {}
            for key in list(values):
                if isinstance(key, str):
                    full = full_keys[key] = make_key(key)  # made once, for the check and the write
                    problem = full_key_problem(full, count_bytes=self.count_bytes)
                else:
                    problem = f"keys of a Django cache must be strings, got {type(key).__name__}"
                if problem is not None:
                    del values[key]
                    self._fail(key, f"invalid cache key: {problem}")
        if not values:
            return
        if self.write_failed:
            for key in values:
                self._fail(key, "not written: the cache was unavailable earlier in this run")
            return
        if self.warmer._explicit_ttl_zero():
            # Django reads TTL 0 as "don't cache" and DELETES the key: keep the good old value.
            for key in values:
                self._fail(key, f"not written: {_TTL_ZERO}")
            self.stats.run_error = f"nothing was cached: {_TTL_ZERO}"
            return
        try:
            refused = self.warmer._write(values, full_keys)
        except Exception as exc:
            self.write_failed = True
            reason = f"cache write failed: {type(exc).__name__}: {exc}"
            self.stats.run_error = f"the cache was unavailable ({reason})"
            # One clear line per run for an outage, not a traceback and not a line per key.
            logger.error("cache warmer %s: %s; stopping this run", self.warmer.name, reason)
            logger.debug("cache warmer %s: cache write failure", self.warmer.name, exc_info=True)
            for key in values:
                self._fail(key, reason)
            self.run.cancel("the cache was unavailable")
            return
        for key in values:
            if key in refused:
                self._fail(key, refused[key])
            else:
                self._written(key)

    def _loader_hook(self, name: str) -> Callable[..., Any] | None:
        """The loader's (or its function's) optional ``name`` hook (``stored_key``,
        ``check_stored``), or None."""
        loader = self.warmer.value_loader
        hook = getattr(loader, name, None) or getattr(getattr(loader, "func", None), name, None)
        return hook if callable(hook) else None

    def _stored_by_loader(self, key: Hashable) -> None:
        """A ``NO_STORE`` key: the loader stored the entry itself. The read-back asks the loader's
        ``check_stored(keys)`` hook when it has one (``render_page``: is the page cache that served
        the page still holding it?). Else it reads back under the key the loader says it stored
        (by default the warmer's key; a loader, or its function, may define ``stored_key(key)``
        returning another key of the same cache, or None when the entry cannot be looked up)."""
        if self.check_stored is not None:
            self.finished.add(key)
            self.stats.keys_warmed += 1
            self.checked_by_loader.append(key)
            return
        hook = self._loader_hook("stored_key")
        target = hook(key) if hook is not None else key
        make_key = getattr(self.warmer.cache, "make_key", None)
        # A key this cache cannot address (too long, not a string) was stored elsewhere.
        if (
            make_key is not None
            and target is not None
            and (
                not isinstance(target, str)
                or full_key_problem(make_key(target), count_bytes=self.count_bytes)
            )
        ):
            target = None
        if target is None:
            self.finished.add(key)
            self.stats.keys_warmed += 1
            return
        self._written(target)
        if target != key:  # a failed read-back must name the warmer's key
            self.alias[target] = key

    def _written(self, key: Hashable) -> None:
        self.finished.add(key)
        self.stats.keys_warmed += 1
        self.written.append(key)

    def _ask_loader(self, keys: list[Hashable]) -> dict[Hashable, str | None]:
        """The loader's ``check_stored`` answer for ``keys``: the ones not held, with a reason."""
        assert self.check_stored is not None
        try:
            answer = self.check_stored(list(keys))
        except Exception as exc:
            logger.debug("cache warmer %s: check_stored failed", self.warmer.name, exc_info=True)
            reason = f"the loader's check_stored raised {_describe(exc)}"
            return dict.fromkeys(keys, reason)
        lost: dict[Hashable, str | None] = {}
        for key in keys:
            if key not in answer:
                lost[key] = "the loader's check_stored gave no answer for this key"
            elif answer[key] is not None:
                lost[key] = str(answer[key])
        return lost

    def _verify(self) -> None:
        """Read the written keys back; the ones a real read would miss become failed keys.

        Every key up to ``VERIFY_ALL_UP_TO``, a random sample of that many above it, in round
        trips of ``VERIFY_CHUNK`` keys (``CacheWarmer._read_back``: a real ``get_many``). Keys a
        loader stored itself are asked of its ``check_stored`` hook instead. When nothing reads
        back, every written key fails and the run gets a ``run_error``.
        """
        written = self.written + self.checked_by_loader
        if not written:
            return
        stats, warmer = self.stats, self.warmer
        sample = (
            written
            if len(written) <= VERIFY_ALL_UP_TO
            else random.sample(written, VERIFY_ALL_UP_TO)
        )
        by_loader = set(self.checked_by_loader)
        ours = [key for key in sample if key not in by_loader] if by_loader else sample
        theirs = [key for key in sample if key in by_loader] if by_loader else []
        chunk = VERIFY_CHUNK
        lost: dict[Hashable, str | None] = {}
        error: str | None = None
        for start in range(0, len(ours), chunk):
            part = ours[start : start + chunk]
            try:
                lost.update(warmer._read_back(part))
            except Exception as exc:
                error = f"the read-back failed: {_describe(exc)}"
                logger.debug("cache warmer %s: read-back failed", warmer.name, exc_info=True)
                lost.update(dict.fromkeys(ours[start:]))
                break
        for start in range(0, len(theirs), chunk):
            lost.update(self._ask_loader(theirs[start : start + chunk]))
        stats.keys_verified += len(sample)
        if not lost:
            return
        lost_in_sample = len(lost)
        stats.keys_lost += lost_in_sample
        first_own = next((r for r in lost.values() if r is not None), None)
        needs_cause = error is not None or any(r is None for r in lost.values())
        cause = error or (warmer._loss_cause(len(written)) if needs_cause else first_own or "")
        reason = f"not in the cache when read back: {cause}"
        if lost_in_sample == len(sample):
            # Nothing reads back: no written key can be counted warmed, sampled or not.
            if stats.run_error is None:  # an outage seen while writing keeps its own message
                stats.run_error = f"nothing read back: {cause}"
            lost.update({key: lost.get(key) for key in written})
        if len(sample) < len(written) and len(lost) < len(written):
            # First, so that the bounded error list always keeps it.
            estimate = round(len(lost) * len(written) / len(sample))
            stats.add_error_text(
                f"read-back sample: {len(lost)} of {len(sample)} checked keys were lost, so about "
                f"{estimate} of the {len(written)} written keys are not cached"
            )
        for key, own in lost.items():
            stats.keys_warmed -= 1
            stats.keys_failed += 1
            if error is not None:
                stats.add_error(self.alias.get(key, key), reason)
            else:
                stats.add_error(self.alias.get(key, key), reason if own is None else own)
        if not self.write_failed:  # an outage already had its one line
            logger.warning(
                "cache warmer %s: %d of %d keys read back were not in the cache: %s",
                warmer.name,
                lost_in_sample,
                len(sample),
                cause if needs_cause else first_own,
            )

    def _fail(self, key: Hashable, message: str) -> None:
        if key in self.finished:
            return
        self.finished.add(key)
        self.stats.keys_failed += 1
        self.stats.add_error(key, message)


_TTL_ZERO = "timeout 0 means don't cache (None means never expire)"
_LOADED_NONE = "the loader returned None, which cache.get() cannot tell from a miss"
_READS_AS_NONE = (
    "it reads back as None, which cache.get() cannot tell from a miss (a value the cache "
    "cannot decode, e.g. memcached)"
)


def _read_as_none(found: Mapping[Hashable, Any], key: Hashable) -> str | None:
    """A read-back reason: the key is in ``get_many``'s reply with the value None, or absent."""
    return _READS_AS_NONE if key in found else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
