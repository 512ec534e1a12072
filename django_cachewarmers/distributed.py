"""Warming on workers: fan one warm out over worker processes, record it as one run.

The engine-neutral part (``run_fanned_out``: the running mark, chunking, adding the chunks'
results into one run, the read-back after the last chunk; ``warm_one_chunk``: what a worker does
with one chunk) is shared by Celery (``fan_out`` here) and Django's Tasks framework
(``django_cachewarmers.task_fanout``).

``fan_out(name)`` resolves the warmer's keys once, splits them into chunks, sends the chunks as
one Celery group of ``django_cachewarmers.tasks.warm_chunk`` tasks, waits for them (up to a
timeout) and records a single ``WarmingRun`` (trigger ``celery``) whose numbers are the sums of
the chunks. ``warm_chunk`` (run by a worker) warms one chunk with the warmer the worker builds
from its own settings.

Guarantees:

- Once per cluster: the fan-out holds the warmer's running mark (``Claims.acquire_running``) in
  the warmer's cache while it is in flight, so two fan-outs, or a fan-out and a scheduled run, of
  one warmer never overlap. A second one fails at once with ``WarmerBusy``.
- At-least-once chunks, each key counted once: the chunk task is ``acks_late`` with
  ``reject_on_worker_lost``, so a chunk whose worker dies is delivered again. Keys are
  de-duplicated before chunking, so each key is in exactly one chunk, and the fan-out takes one
  result per chunk however often the chunk ran. Warming a key twice writes the same value twice.
- Read back after the run's last write: once every chunk has returned, the fan-out (in the
  process that asked) reads the keys the chunks wrote back through the warmer's cache, with the
  same policy as a run in one process (``core.collector.read_back``: every key up to
  ``VERIFY_ALL_UP_TO``, a random sample above), so that what a later chunk's writes culled counts.
  Keys that do not read back are failed keys with the likely cause; the run's ``keys_verified`` /
  ``keys_lost`` say what was checked.
- A cache that cannot be reached when the fan-out starts gives a recorded failed run (every key
  failed, ``run_error`` saying the cache is unreachable), not an exception.

Nothing here imports Celery until a fan-out (or ``resolve_app``) is actually used.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from django_cachewarmers import claims
from django_cachewarmers.celery_app import (
    CHUNK_TASK,
    CeleryUnavailable,
    has_no_result_backend,
    is_eager,
    resolve_app,
)
from django_cachewarmers.claims import Claims
from django_cachewarmers.conf import conf
from django_cachewarmers.core.collector import read_back
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.loaders import stored_key
from django_cachewarmers.core.providers import unique_keys
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.registry import UnknownWarmer, get_entry
from django_cachewarmers.runner import RUNNING_MARK_MARGIN_S, Trigger, record_and_signal, run_warm

__all__ = [
    "CHUNK_FACTOR",
    "MIN_TIMEOUT_S",
    "Send",
    "UnsendableKeys",
    "WarmerBusy",
    "check_sizes",
    "default_chunk_size",
    "default_timeout",
    "fan_out",
    "run_fanned_out",
    "warm_one_chunk",
]

logger = logging.getLogger("django_cachewarmers")

#: Default chunk size: the warmer's ``batch_size`` times this.
CHUNK_FACTOR = 10
#: Default wait: the longer of this and ``TIMEOUT_FACTOR`` x the warmer's ``warmup_timeout``.
MIN_TIMEOUT_S = 600.0
TIMEOUT_FACTOR = 2.0

#: Key types that survive a JSON round trip unchanged (tuples come back as lists, so they don't).
_JSON_KEY_TYPES = (str, int, float, bool, type(None))


class WarmerBusy(RuntimeError):
    """Another run of the warmer (a fan-out or a scheduled run) holds its running mark."""


class UnsendableKeys(TypeError):
    """A key cannot be sent to a worker as JSON."""


# -- defaults ----------------------------------------------------------------------------------


def default_chunk_size(batch_size: int) -> int:
    """Keys per chunk when none is given: ``CHUNK_FACTOR`` batches."""
    return max(1, batch_size * CHUNK_FACTOR)


def default_timeout(warmup_timeout_s: float) -> float:
    """Seconds to wait for the chunks when no timeout is given."""
    return max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * warmup_timeout_s)


def check_keys(name: str, keys: Iterable[Any], engine: str = "Celery") -> None:
    """Raise ``UnsendableKeys`` if a key would not come back from JSON as the same key."""
    for key in keys:
        if not isinstance(key, _JSON_KEY_TYPES) or (
            isinstance(key, float) and not math.isfinite(key)
        ):
            raise UnsendableKeys(
                f"cache warmer {name!r}: key {key!r} ({type(key).__name__}) cannot be sent to "
                f"{engine} workers: keys must be JSON-serializable as themselves (str, int, finite "
                f"float, bool or None). Use string keys, or warm this warmer without {engine}."
            )


# -- the fan-out (in the process that asks) ----------------------------------------------------

#: How a fan-out hands its chunks to an engine: ``send(chunks, run_id, wait_s, on_result)`` sends
#: every chunk, calls ``on_result(index, value)`` for each chunk's return value (a failed task's
#: exception as the value) as it comes back within ``wait_s`` seconds, and returns, for chunks
#: that did not come back, the reason to give (chunks not named get a generic one). An exception
#: it raises fails the chunks not back yet, with the exception as the run's ``run_error``.
Send = Callable[[list[list[Any]], str, float, Callable[[int, Any], None]], dict[int, str]]


def check_sizes(chunk_size: int | None, timeout: float | None) -> None:
    """Raise ``ValueError`` for a chunk size below 1 or a timeout that is not > 0 and finite."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size: must be an integer >= 1, got {chunk_size!r}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout: must be a finite number of seconds > 0, got {timeout!r}")


def fan_out(
    name: str,
    *,
    keys: Iterable[Hashable] | None = None,
    chunk_size: int | None = None,
    timeout: float | None = None,
    trigger: Trigger = "celery",
    progress: Callable[[int, int], object] | None = None,
    app: Any = None,
    hold_mark: bool = True,
) -> WarmingStats:
    """Warm the configured warmer ``name`` on Celery workers and record one run; its stats.

    ``keys`` (default: the warmer's own keys, resolved here once) are de-duplicated and split
    into chunks of ``chunk_size`` (default: ``batch_size`` x 10) keys, sent as one group. This
    waits up to ``timeout`` seconds (default: the longer of 600 s and 2 x ``warmup_timeout``); a
    chunk that has not returned by then counts its keys as failed. ``progress(done, total)`` is
    called with key counts as chunks return.

    With ``task_always_eager`` the chunks run one after the other in this process, during the
    send, and need no broker nor result backend (the timeout does not apply then).

    Raises ``UnknownWarmer`` / ``ImproperlyConfigured`` for a bad warmer, ``CeleryUnavailable``
    without Celery or a Celery app (or, unless eager, without a result backend), ``WarmerBusy``
    when another run of the warmer is in flight, ``UnsendableKeys`` for a key JSON cannot carry,
    and ``ValueError`` for a bad chunk size or timeout. Nothing is sent and nothing recorded in
    those cases. ``hold_mark=False``: the caller holds the warmer's running mark already (a
    scheduled run of a warmer with ``"via": "celery"``).
    """
    check_sizes(chunk_size, timeout)
    spec, warmer = get_entry(name)
    celery_app = resolve_app(app)
    if is_eager(celery_app):
        # Eager mode runs each chunk here, inside apply_async, and hands its result back in the
        # EagerResult: no broker and no result backend are involved. The chunk task is sent by
        # name, so make sure it is registered (a project's autodiscover_tasks() registers it in
        # workers, and in other processes only when something imports it). By name, as
        # autodiscover_tasks() does: the tasks module sits above this one (it imports it).
        importlib.import_module(CHUNK_TASK.rsplit(".", 1)[0])
    elif has_no_result_backend(celery_app):
        raise CeleryUnavailable(
            "the Celery app has no result backend, so the chunks' results cannot come back: "
            "set CELERY_RESULT_BACKEND (e.g. 'redis://...'), or task_always_eager for tests."
        )
    size = chunk_size or default_chunk_size(spec.config.batch_size)
    wait_s = timeout if timeout is not None else default_timeout(spec.config.warmup_timeout_s)
    stats = run_fanned_out(
        name,
        warmer,
        keys=keys,
        send=_celery_send(celery_app, name),
        engine="Celery",
        size=size,
        wait_s=wait_s,
        trigger=trigger,
        progress=progress,
        hold_mark=hold_mark,
    )
    assert stats is not None  # collected runs are always recorded
    return stats


def run_fanned_out(
    name: str,
    warmer: CacheWarmer,
    *,
    keys: Iterable[Hashable] | None,
    send: Send,
    engine: str,
    size: int,
    wait_s: float,
    trigger: Trigger,
    progress: Callable[[int, int], object] | None = None,
    hold_mark: bool = True,
    collect: bool = True,
) -> WarmingStats | None:
    """Fan the keys of warmer ``name`` out through ``send`` (any engine) and record one run.

    The engine-neutral part of a fan-out, shared by Celery (``fan_out``) and Django's Tasks
    framework (``task_fanout``): takes the warmer's running mark (unless the caller holds it:
    ``hold_mark=False``), resolves and de-duplicates the keys, checks they survive JSON, splits
    them into chunks of ``size`` keys, and (``collect=True``) adds the chunks' results into one
    recorded run, read back after the last chunk; its stats. With ``collect=False`` the chunks
    record their own runs: this only sends them and returns None (a run is recorded here only
    when the keys cannot be resolved, or the cache or the engine fails).

    Raises ``WarmerBusy`` when another run holds the running mark and ``UnsendableKeys`` for a
    key JSON cannot carry (nothing sent, nothing recorded).
    """
    requested = None if keys is None else list(keys)
    marks = Claims(warmer.cache, name)
    if hold_mark:
        try:
            acquired = marks.acquire_running(wait_s + RUNNING_MARK_MARGIN_S)
        except Exception as exc:
            # The running mark lives in the warmer's cache: if it cannot be taken because the
            # cache is down (or, with django-redis IGNORE_EXCEPTIONS, stores nothing), nothing
            # can be warmed either. Record a failed run, as a run in this process does.
            return _unreachable_run(name, warmer, trigger, requested, exc, engine)
        if not acquired:
            holder = marks.running_holder()
            raise WarmerBusy(
                f"cache warmer {name!r} is already being warmed (its running mark is held by "
                f"{holder or 'another process'}); nothing was sent. Run it again once that run "
                "has finished."
            )
    try:
        try:
            resolved = list(warmer.key_provider.get_keys()) if requested is None else requested
        except Exception as exc:
            logger.exception("cache warmer %s: key provider failed", name)
            error = f"key provider failed: {type(exc).__name__}: {exc}"
            return record_and_signal(name, warmer, trigger, requested, lambda: _failed_run(error))
        unique = _unique(resolved)
        check_keys(name, unique, engine)
        if not collect:
            return _send_only(name, warmer, trigger, requested, unique, size, send, engine)
        return record_and_signal(
            name,
            warmer,
            trigger,
            requested,
            lambda: _send_and_collect(name, warmer, unique, size, wait_s, progress, send, engine),
        )
    finally:
        if hold_mark:
            try:
                marks.release_running()
            except Exception:
                logger.debug("cache warmer %s: could not release its running mark", name)


def _send_only(
    name: str,
    warmer: CacheWarmer,
    trigger: Trigger,
    requested: list[Hashable] | None,
    keys: list[Any],
    size: int,
    send: Send,
    engine: str,
) -> WarmingStats | None:
    """Send the chunks, whose tasks record their own runs; a failed run if sending failed."""
    chunks = _chunks(keys, size)
    run_id = uuid.uuid4().hex
    try:
        if chunks:
            send(chunks, run_id, 0.0, lambda index, value: None)
    except Exception as exc:
        logger.error(
            "cache warmer %s: %s fan-out failed: %s: %s", name, engine, type(exc).__name__, exc
        )
        reason = f"{engine} fan-out failed: {type(exc).__name__}: {exc}"

        def failed() -> WarmingStats:
            stats = WarmingStats(run_error=reason, keys_failed=len(keys))
            for key in keys:
                stats.add_error(key, f"not warmed: {reason}")
            stats.finished_at = _utcnow()
            return stats

        return record_and_signal(name, warmer, trigger, requested, failed)
    logger.info(
        "cache warmer %s: sent %d keys in %d chunks to %s (run %s); each chunk records its own run",
        name,
        len(keys),
        len(chunks),
        engine,
        run_id,
    )
    return None


def _chunks(keys: list[Any], size: int) -> list[list[Any]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def _unreachable_run(
    name: str,
    warmer: CacheWarmer,
    trigger: Trigger,
    requested: list[Hashable] | None,
    exc: Exception,
    engine: str = "Celery",
) -> WarmingStats:
    """Record and return the failed run of a fan-out whose warmer's cache cannot be reached."""
    reason = f"the cache is unreachable ({type(exc).__name__}: {exc})"
    # One clear line, as a run in this process logs for an outage; the traceback at DEBUG.
    logger.error("cache warmer %s: %s; nothing was sent to %s", name, reason, engine)
    logger.debug("cache warmer %s: running mark failure", name, exc_info=True)

    def failed() -> WarmingStats:
        started = time.monotonic()
        stats = WarmingStats(run_error=reason)
        try:
            keys = list(warmer.key_provider.get_keys()) if requested is None else requested
        except Exception:
            logger.debug("cache warmer %s: key provider failed too", name, exc_info=True)
            keys = []
        unique, _ = unique_keys(keys)  # an unhashable key cannot be named as failed either
        for key in unique:
            stats.keys_failed += 1
            stats.add_error(key, f"not warmed: {reason}")
        stats.total_time_ms = (time.monotonic() - started) * 1000.0
        stats.finished_at = _utcnow()
        return stats

    return record_and_signal(name, warmer, trigger, requested, failed)


def _failed_run(error: str) -> WarmingStats:
    stats = WarmingStats(run_error=error)
    stats.finished_at = _utcnow()
    return stats


def _unique(keys: Iterable[Any]) -> list[Any]:
    unique, unhashable = unique_keys(keys)
    if unhashable:
        key = unhashable[0]
        raise UnsendableKeys(
            f"key {key!r} is not hashable ({type(key).__name__}), so it cannot be a cache key"
        )
    return unique


def _celery_send(app: Any, name: str) -> Send:
    """The Celery engine: one group of ``warm_chunk`` tasks, joined with a timeout."""

    def send(
        chunks: list[list[Any]],
        run_id: str,
        wait_s: float,
        on_result: Callable[[int, Any], None],
    ) -> dict[int, str]:
        from celery import group
        from celery.exceptions import TimeoutError as CeleryTimeout

        index_of = {_task_id(run_id, i): i for i in range(len(chunks))}
        back: set[int] = set()

        def callback(task_id: str, value: Any) -> None:
            index = index_of.get(task_id)
            if index is not None:
                back.add(index)
                on_result(index, value)

        signatures = [
            app.signature(
                CHUNK_TASK,
                args=(name, chunk, run_id, i),
                options={
                    "task_id": _task_id(run_id, i),
                    "serializer": "json",
                    "ignore_result": False,
                },
            )
            for i, chunk in enumerate(chunks)
        ]
        result = None
        try:
            result = group(signatures, app=app).apply_async()
            join = result.join_native if result.supports_native_join else result.join
            with contextlib.suppress(CeleryTimeout):
                join(timeout=wait_s, propagate=False, callback=callback, interval=0.2)
        finally:
            if result is not None:
                try:
                    result.forget()
                except Exception:
                    logger.debug("cache warmer %s: could not forget the chunk results", name)
        return {
            i: f"chunk {i} did not return within {wait_s:g}s (no worker took it, or its worker "
            "died and the broker has not delivered it again yet)"
            for i in range(len(chunks))
            if i not in back
        }

    return send


def _send_and_collect(
    name: str,
    warmer: CacheWarmer,
    keys: list[Any],
    size: int,
    wait_s: float,
    progress: Callable[[int, int], object] | None,
    send: Send,
    engine: str,
) -> WarmingStats:
    started = time.monotonic()
    stats = WarmingStats()
    run_id = uuid.uuid4().hex
    chunks = _chunks(keys, size)
    total = len(keys)
    done: dict[int, dict[str, Any]] = {}
    logger.info(
        "cache warmer %s: sending %d keys in %d chunks to %s (run %s)",
        name,
        total,
        len(chunks),
        engine,
        run_id,
    )

    def on_result(index: int, value: Any) -> None:
        if not 0 <= index < len(chunks) or index in done:  # one result per chunk
            return
        done[index] = _chunk_result(value, len(chunks[index]))
        _report(progress, sum(len(chunks[i]) for i in done), total, name)

    missing: dict[int, str] = {}
    try:
        if chunks:
            missing = send(chunks, run_id, wait_s, on_result)
        _report(progress, sum(len(chunks[i]) for i in done), total, name)
    except Exception as exc:
        # The engine (broker, result backend, task store) failed: what came back counts.
        logger.error(
            "cache warmer %s: %s fan-out failed: %s: %s", name, engine, type(exc).__name__, exc
        )
        stats.run_error = f"{engine} fan-out failed: {type(exc).__name__}: {exc}"

    if len(done) < len(chunks):
        # Chunks that run after this (a worker took them late) record runs of their own.
        abandon(name, run_id)
    to_verify: list[tuple[int, list[tuple[Any, Any]]]] = []
    for i, chunk in enumerate(chunks):
        outcome = done.get(i)
        if outcome is None:
            reason = (
                stats.run_error
                or missing.get(i)
                or (f"chunk {i} did not return within {wait_s:g}s")
            )
            stats.keys_failed += len(chunk)
            for key in chunk:
                stats.add_error(key, f"not warmed: {reason}")
            continue
        stats.keys_warmed += outcome["keys_warmed"]
        stats.keys_failed += outcome["keys_failed"]
        for error in outcome["errors"]:
            stats.add_error_text(error)
        stats.errors_omitted += outcome["errors_omitted"]
        # What the chunk's own read-back found missing was read back, and lost.
        stats.keys_verified += outcome["keys_lost"]
        stats.keys_lost += outcome["keys_lost"]
        if outcome["run_error"] and stats.run_error is None:
            stats.run_error = f"chunk {i}: {outcome['run_error']}"
        if outcome["keys_warmed"]:
            written = outcome["written"]
            if written is None:  # a worker that does not say: every key of the chunk, capped
                written = [(key, key) for key in chunk]
            to_verify.append((outcome["keys_warmed"], written))
    _verify(name, warmer, stats, to_verify)
    stats.total_time_ms = (time.monotonic() - started) * 1000.0
    stats.finished_at = _utcnow()
    logger.info(
        "cache warmer %s: %s run %s: %d keys warmed, %d failed, in %.1f ms",
        name,
        engine,
        run_id,
        stats.keys_warmed,
        stats.keys_failed,
        stats.total_time_ms,
    )
    return stats


def _verify(
    name: str,
    warmer: CacheWarmer,
    stats: WarmingStats,
    chunks: list[tuple[int, list[tuple[Any, Any]]]],
) -> None:
    """Read the chunks' written keys back through ``warmer.cache``, after the run's last write.

    ``chunks``: per returned chunk, its ``keys_warmed`` and its ``(read-back key, warmer key)``
    pairs. Reads with ``core.collector.read_back``, the read-back of a run in one process, and
    names the cause as it does (``ReadBack.cause``). A key that does not read back moves from
    warmed to failed (never more than its chunk counted warmed); when nothing reads back, every
    written key fails and the run gets a ``run_error``.
    """
    pairs = [(target, key, index) for index, (_, p) in enumerate(chunks) for target, key in p]
    if not pairs:
        return
    found = read_back(warmer.io, pairs, key=lambda pair: pair[0])
    stats.keys_verified += len(found.sample)
    if not found.lost:
        return
    lost_in_sample = len(found.lost)
    # Keys the chunks' own read-backs found lost were written by this run too.
    cause = found.cause(warmer.io, len(pairs) + stats.keys_lost)
    reason = f"not in the cache when read back after the last chunk: {cause}"
    missing = list(found.lost)
    if found.nothing_read_back:
        if stats.run_error is None:
            stats.run_error = f"nothing read back: {cause}"
        missing = pairs
    note = found.sample_note(len(pairs))
    if note is not None:
        stats.add_error_text(note)
    # A chunk that could not name all its failed keys sent them too: never fail more keys of
    # a chunk than it counted warmed.
    room = [warmed for warmed, _ in chunks]
    lost = 0
    for pair in missing:
        _, key, index = pair
        if room[index] == 0:
            continue
        room[index] -= 1
        lost += 1
        stats.keys_warmed -= 1
        stats.keys_failed += 1
        stats.add_error(key, found.own_reason(pair) or reason)
    stats.keys_lost += min(lost, lost_in_sample)
    logger.warning(
        "cache warmer %s: %d of %d keys read back after the last chunk were not in the cache: %s",
        name,
        lost_in_sample,
        len(found.sample),
        cause,
    )


def _task_id(run_id: str, index: int) -> str:
    return f"cachewarmers-{run_id}-{index}"


def _chunk_result(value: Any, size: int) -> dict[str, Any]:
    """A chunk task's return value, checked; a failed task counts its whole chunk as failed."""
    if isinstance(value, dict) and isinstance(value.get("keys_warmed"), int):
        errors = value.get("errors")
        written = value.get("written")
        return {
            "keys_warmed": int(value["keys_warmed"]),
            "keys_failed": int(value.get("keys_failed", 0)),
            "errors": [str(e) for e in errors] if isinstance(errors, list) else [],
            "errors_omitted": int(value.get("errors_omitted", 0)),
            "run_error": value.get("run_error") or None,
            "keys_lost": int(value.get("keys_lost", 0)),
            # [[read-back key, warmer key] or [key], ...]; None from a worker of an older version.
            "written": [(pair[0], pair[-1]) for pair in written]
            if isinstance(written, list)
            else None,
        }
    if isinstance(value, BaseException):
        message = f"the chunk task failed: {type(value).__name__}: {value}"
    else:
        message = f"the chunk task returned {type(value).__name__}, not its stats"
    return {
        "keys_warmed": 0,
        "keys_failed": size,
        "errors": [],
        "errors_omitted": 0,
        "run_error": message,
        "keys_lost": 0,
        "written": [],
    }


def _report(
    progress: Callable[[int, int], object] | None, done: int, total: int, name: str
) -> None:
    if progress is None:
        return
    try:
        progress(done, total)
    except Exception:
        logger.exception("cache warmer %s: progress callback failed", name)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- one chunk (on the worker that runs it) ----------------------------------------------------


#: How long a fan-out's "abandoned" mark lives (seconds): longer than any queue holds a chunk.
ABANDONED_TTL_S = 7 * 24 * 3600


def _abandoned_key(run_id: str) -> str:
    return f"{conf.KEY_PREFIX}:abandoned:{run_id}"


def abandon(name: str, run_id: str) -> None:
    """Mark fan-out ``run_id`` as given up by its coordinator (some chunks had not returned when
    it recorded the run), in the warmer's cache: a chunk that runs after this records a run of
    its own (``warm_one_chunk``), so what it writes is recorded. A cache that fails is logged."""
    try:
        spec, _warmer = get_entry(name)
        caches[spec.cache].set(_abandoned_key(run_id), 1, ABANDONED_TTL_S)
    except Exception as exc:
        logger.warning(
            "cache warmer %s: could not mark run %s as given up (%s: %s): a chunk that runs "
            "later is not recorded",
            name,
            run_id,
            type(exc).__name__,
            exc,
        )


def _abandoned(alias: str, run_id: str) -> bool:
    if not run_id:
        return False
    try:
        return caches[alias].get(_abandoned_key(run_id)) is not None
    except Exception:  # the chunk goes on: its coordinator reads it back
        return False


def warm_one_chunk(
    name: str, keys: list[Any], run_id: str = "", index: int = 0, trigger: Trigger = "celery"
) -> dict[str, Any]:
    """Warm one chunk of a fan-out with this process's warmer ``name``; JSON-ready stats.

    The body of every engine's chunk task (Celery's ``tasks.warm_chunk``, the Tasks framework's
    ``task_chunks.warm_chunk``). Never raises for a bad warmer: the chunk's keys are reported
    failed, with the reason, so the fan-out records it. Idempotent: running a chunk again writes
    the same values again. The result has ``WarmingStats.to_dict()``'s fields plus ``run_id``,
    ``index``, ``worker`` ("host:pid"), ``owner`` and ``written`` (see ``_written_pairs``).

    A chunk of a fan-out whose coordinator gave up waiting (``abandon``) is warmed as a run of
    its own, recorded here with ``trigger`` (the engine's: "celery" or "tasks").
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    written: list[list[Any]] = []
    try:
        spec, warmer = get_entry(name)
    except (UnknownWarmer, ImproperlyConfigured) as exc:
        message = f"not usable on worker {worker}: {exc}"
        stats = WarmingStats(keys_failed=len(keys), run_error=message)
        for key in keys:  # add_error keeps the first MAX_ERRORS and counts the rest
            stats.add_error(key, "not warmed: the warmer is " + message)
    else:
        if _abandoned(spec.cache, run_id):
            # The coordinator gave up waiting and recorded these keys as failed: this late
            # chunk is a run of its own, recorded here, so what it writes shows.
            logger.warning(
                "cache warmer %s: chunk %d of run %s ran after its coordinator gave up: "
                "recorded as a run of its own",
                name,
                index,
                run_id,
            )
            late = run_warm(name, keys=list(keys), trigger=trigger)
            assert late is not None  # only claimed runs can be skipped
            data = late.to_dict()
            data.update(run_id=run_id, index=index, worker=worker, owner=claims.OWNER, written=[])
            return data
        stats = warmer.warm(list(keys))
        logger.debug("cache warmer %s: chunk %d of run %s done on %s", name, index, run_id, worker)
        written = _written_pairs(warmer, keys, stats)
        if _abandoned(spec.cache, run_id):
            # The coordinator gave up while this chunk ran: nobody collects this result, so the
            # chunk's warm is recorded here, as a run of its own.
            logger.warning(
                "cache warmer %s: chunk %d of run %s finished after its coordinator gave up: "
                "recorded as a run of its own",
                name,
                index,
                run_id,
            )
            record_and_signal(name, warmer, trigger, list(keys), lambda: stats)
    data = stats.to_dict()
    data.update(run_id=run_id, index=index, worker=worker, owner=claims.OWNER, written=written)
    return data


def _written_pairs(
    warmer: CacheWarmer, keys: Sequence[Any], stats: WarmingStats
) -> list[list[Any]]:
    """``[read-back key, warmer key]`` (``[key]`` when they are the same) of the chunk's keys it
    did not fail, for the fan-out's read-back after the last chunk.

    The failed keys are the ones its errors name ("key: message"). When more keys failed than
    the bounded error list names, the unnamed ones are sent too, and the fan-out never fails more
    of the chunk's keys than it counted warmed. A loader that stores its own entries
    (``STORED_BY_LOADER``) under another key says which with ``stored_key(key)`` (None: not
    addressable, not read back), as for the read-back of a run in one process
    (``core.loaders.stored_key``).
    """
    failed = _named_failures(keys, stats.errors) if stats.keys_failed else set()
    pairs: list[list[Any]] = []
    for key in keys:
        if key in failed:
            continue
        target = stored_key(warmer.value_loader, key)
        if target is not None:  # [key] when it is read back under itself: half the payload
            pairs.append([key] if target == key else [target, key])
    return pairs


def _named_failures(keys: Sequence[Any], errors: Iterable[str]) -> set[Any]:
    """The ``keys`` that ``errors`` (``WarmingStats.errors`` lines) name unambiguously."""
    prefixes: dict[str, list[Any]] = {}
    for key in keys:
        probe = WarmingStats()  # the exact "key: " prefix add_error writes for this key
        probe.add_error(key, "")
        prefixes.setdefault(probe.errors[0], []).append(key)
    named: set[Any] = set()
    for text in errors:
        matches = []
        at = text.find(": ")
        while at != -1:
            matches.extend(prefixes.get(text[: at + 2], []))
            at = text.find(": ", at + 1)
        if len(matches) == 1:
            named.add(matches[0])
    return named
