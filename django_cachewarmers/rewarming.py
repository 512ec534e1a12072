"""Re-warm on change: when a model instance is saved, its cached entries are rewritten in place.

A warmer's ``rewarm_on`` field maps model labels to a callable returning the warmer's keys for an
instance (``{"shop.Product": "shop.warming.product_keys_for"}``). Then, in whichever process
saves (a web worker, a management command, a script, a Celery worker):

1. Django's ``post_save`` / ``post_delete`` of the model (its proxies and multi-table children
   too; connected by ``connect()`` from ``AppConfig.ready()``, again when ``CACHE_WARMERS``
   changes) computes the instance's keys in the saving thread.
2. ``transaction.on_commit``: after the commit (at once outside a transaction; never when it
   rolls back) the keys join this process's queue (``core.coalescing.CoalescingQueue``).
3. The queue's thread collects a warmer's keys for ``rewarm_delay`` seconds from the batch's
   first change, de-duplicated, then flushes them: a deleted instance's keys with the cache's
   ``delete_many``; the others through ``runner.run_warm(name, keys=..., trigger="change")``: the
   warmer's own loader in ``batch_size`` chunks, ``set_many`` over the old values (no delete
   first, so a reader sees the old value, then the new one, never a miss), one ``WarmingRun``.
4. Shutdown: pending keys are flushed at interpreter exit (``atexit``; a Celery prefork child's
   ``worker_process_shutdown``) and on SIGTERM in a process whose SIGTERM would otherwise end it
   at once (a script, a management command), bounded by the warmers' ``warmup_timeout``; what
   could not be written is logged. A server's own SIGTERM handler (gunicorn, runserver, Celery)
   is never replaced: those end the process cleanly, through ``atexit``.

The queue holds at most ``CACHE_WARMERS_REWARM_QUEUE_SIZE`` keys; a change beyond it is logged
and left to the warmer's next scheduled run (or the entry's TTL).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django.apps import apps
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import close_old_connections, connections, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from django_cachewarmers import pages
from django_cachewarmers.conf import DEFAULT_REWARM_QUEUE_SIZE, conf
from django_cachewarmers.core.coalescing import DELETE, WRITE, CoalescingQueue, Op
from django_cachewarmers.core.config import is_int_at_least
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.page_providers import learned_variants
from django_cachewarmers.pagekeys import expand, split_page_key
from django_cachewarmers.pages import renders_pages
from django_cachewarmers.spec import AdaptiveKeys, WarmerSpec
from django_cachewarmers.tracking import PAGES

logger = logging.getLogger("django_cachewarmers")

__all__ = [
    "Source",
    "connect",
    "flush",
    "keys_of",
    "pending",
    "queue",
    "sources_for",
    "wait_until_idle",
]

DISPATCH_UID = "django_cachewarmers.rewarming"
#: Seconds added to the longest ``warmup_timeout`` of the pending warmers when flushing at exit:
#: recording the run and closing connections come after the run's own deadline.
EXIT_MARGIN_S = 5.0


@dataclass(frozen=True)
class Source:
    """One warmer re-warmed on changes of one model (an entry of its ``rewarm_on``)."""

    warmer: str
    model: type[Model]
    keys_for: Callable[[Any], Any]
    delay: float


# --------------------------------------------------------------------------- which models


_lock = threading.Lock()
_connected: set[type[Model]] = set()
_sources: dict[type[Model], tuple[Source, ...]] = {}


def declared_models() -> set[type[Model]]:
    """The installed models named in any warmer's ``rewarm_on`` of the current settings.

    Reads only the labels (no callable is imported): cheap enough for ``AppConfig.ready()``.
    Unknown labels are skipped (check E041 reports them).
    """
    from django_cachewarmers.parsing.rewarm import resolve_model

    declared = conf.CACHE_WARMERS
    models: set[type[Model]] = set()
    if not isinstance(declared, Mapping):
        return models
    for definition in declared.values():
        rewarm_on = definition.get("rewarm_on") if isinstance(definition, Mapping) else None
        if not isinstance(rewarm_on, Mapping):
            continue
        for label in rewarm_on:
            model = resolve_model(label) if isinstance(label, str) else None
            if model is not None:
                models.add(model)
    return models


def _senders(models: set[type[Model]]) -> set[type[Model]]:
    """The models whose saves are saves of ``models``: themselves, their proxies and
    multi-table children (Django sends a signal with the class that was saved as sender)."""
    if not models:
        return set()
    targets = tuple(models)
    return {m for m in apps.get_models() if issubclass(m, targets)}


def connect() -> None:
    """Connect ``post_save`` and ``post_delete`` for the declared models, and only for them (a
    ``post_delete`` receiver turns Django's fast delete off for its model). Idempotent: called by
    ``AppConfig.ready()`` and again when ``CACHE_WARMERS`` (or ``CACHES``) changes."""
    global _connected
    try:
        senders = _senders(declared_models())
    except Exception:
        logger.exception("re-warm on change: could not read the models of rewarm_on")
        return
    with _lock:
        for sender in _connected - senders:
            post_save.disconnect(sender=sender, dispatch_uid=DISPATCH_UID)
            post_delete.disconnect(sender=sender, dispatch_uid=DISPATCH_UID)
        for sender in senders - _connected:
            post_save.connect(_on_save, sender=sender, dispatch_uid=DISPATCH_UID)
            post_delete.connect(_on_delete, sender=sender, dispatch_uid=DISPATCH_UID)
        _connected = senders
        _sources.clear()


def _on_settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHE_WARMERS", "CACHES") and apps.ready:
        connect()


setting_changed.connect(_on_settings_changed, dispatch_uid=DISPATCH_UID)


def sources_for(sender: type[Model]) -> tuple[Source, ...]:
    """The warmers re-warmed when an instance of ``sender`` is saved or deleted (valid warmers of
    the current settings; found once per sender until the settings change)."""
    with _lock:
        found = _sources.get(sender)
    if found is not None:
        return found
    from django_cachewarmers.parsing import get_specs
    from django_cachewarmers.parsing.rewarm import resolve_model

    sources = []
    for spec in get_specs().values():
        for label, keys_for in spec.rewarm_on.items():
            model = resolve_model(label)
            if model is not None and issubclass(sender, model):
                sources.append(Source(spec.name, model, keys_for, spec.rewarm_delay))
    found = tuple(sources)
    with _lock:
        _sources[sender] = found
    return found


def keys_of(source: Source, instance: Model) -> list[Hashable]:
    """The keys ``source.keys_for(instance)`` returns, as a list.

    It may return an iterable of keys, or a single string (one key); None means none. A key
    that is not hashable is logged and left out.
    """
    result = source.keys_for(instance)
    if result is None:
        return []
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        result = [result]
    keys: list[Hashable] = []
    for key in result:
        try:
            hash(key)
        except TypeError:
            logger.error(
                "cache warmer %s: rewarm_on[%r] returned a key that is not hashable: %r",
                source.warmer,
                source.model._meta.label,
                key,
            )
            continue
        keys.append(key)
    return keys


# --------------------------------------------------------------------------- the receivers


def _on_save(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    _changed(sender, instance, using, WRITE)


def _on_delete(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    _changed(sender, instance, using, DELETE)


def _changed(sender: type[Model], instance: Model, using: str, op: Op) -> None:
    # Runs inside the save (or delete): nothing here may fail it.
    try:
        sources = sources_for(sender)
    except Exception:
        logger.exception("re-warm on change: could not find the warmers of %s", sender.__name__)
        return
    for source in sources:
        try:
            keys = keys_of(source, instance)
        except Exception:
            logger.exception(
                "cache warmer %s: rewarm_on[%r] failed for %r: its keys are not re-warmed",
                source.warmer,
                source.model._meta.label,
                instance,
            )
            continue
        if keys:
            transaction.on_commit(
                functools.partial(_enqueue, source.warmer, keys, op, source.delay),
                using=using,
                robust=True,
            )


def _enqueue(name: str, keys: list[Hashable], op: Op, delay: float) -> None:
    _install_exit_hooks()
    queue.add(name, keys, op, delay)


# --------------------------------------------------------------------------- the flush


def _max_keys() -> int:
    size: object = conf.REWARM_QUEUE_SIZE
    return size if is_int_at_least(size, 1) else DEFAULT_REWARM_QUEUE_SIZE  # type: ignore[return-value]


def _on_full(name: str, dropped: int) -> None:
    logger.warning(
        "cache warmer %s: the re-warm queue is full (CACHE_WARMERS_REWARM_QUEUE_SIZE=%d keys "
        "waiting): %d changed keys dropped, and more may be until it drains; they keep their "
        "cached values until the warmer's next run or their TTL",
        name,
        _max_keys(),
        dropped,
    )


def _flush(name: str, ops: dict[Hashable, Op]) -> None:
    """Delete the deleted instances' keys, then rewrite the others through ``run_warm``."""
    from django_cachewarmers.registry import UnknownWarmer, get_entry
    from django_cachewarmers.runner import run_warm

    deleted = [key for key, op in ops.items() if op == DELETE]
    written = [key for key, op in ops.items() if op == WRITE]
    close_old_connections()
    try:
        if deleted:
            _delete(name, deleted)
        if written:
            spec, _warmer = get_entry(name)
            run_warm(name, keys=with_variants(spec, written), trigger="change")
    except (UnknownWarmer, ImproperlyConfigured) as exc:
        logger.error("cache warmer %s: %d changed keys not re-warmed: %s", name, len(ops), exc)


def with_variants(spec: WarmerSpec, keys: list[Hashable]) -> list[Hashable]:
    """A page warmer's keys with each URL in every declared variant (``variants``) and, for an
    adaptive page warmer of the ``pages`` tracker, the hot variants visitors were served
    (``page_providers.learned_variants``), as its runs render them; other warmers' keys as they
    are."""
    if not renders_pages(spec.loader):
        return keys
    learned: dict[str, list[str]] = {}
    if isinstance(spec.keys, AdaptiveKeys) and spec.keys.tracker == PAGES:
        learned = learned_variants(spec.keys.threshold)
    if spec.variants == ((),) and not learned:
        return keys
    urls = list(dict.fromkeys(split_page_key(k)[0] if isinstance(k, str) else k for k in keys))
    extra = [key for url in urls if isinstance(url, str) for key in learned.get(url, ())]
    return list(dict.fromkeys([*keys, *expand(urls, spec.variants), *extra]))


def _delete(name: str, keys: list[Hashable]) -> None:
    """Delete the keys of deleted rows: a data warmer's entries (and their write times, with
    ``fresh_for``), or a page warmer's pages from the page cache (``pages.forget``, each URL in
    every declared variant)."""
    from django_cachewarmers.registry import get_entry

    spec, warmer = get_entry(name)
    try:
        if renders_pages(spec.loader):
            deleted = sum(pages.forget(str(key)) for key in with_variants(spec, keys))
            logger.info(
                "cache warmer %s: %d pages of deleted rows removed from the page cache "
                "(%d entries)",
                name,
                len(keys),
                deleted,
            )
            return
        doomed = list(keys)
        if warmer.companions is not None:
            doomed.extend(warmer.companions(dict.fromkeys(keys)))
        caches[spec.cache].delete_many(doomed)
    except Exception as exc:
        logger.error(
            "cache warmer %s: could not delete the %d keys of deleted rows (%s: %s)",
            name,
            len(keys),
            type(exc).__name__,
            exc,
        )
    else:
        logger.info("cache warmer %s: %d keys of deleted rows deleted", name, len(keys))


#: This process's queue of changed keys (``core.coalescing.CoalescingQueue``).
queue = CoalescingQueue(
    _flush,
    _max_keys,
    on_full=_on_full,
    thread_name="cachewarmer-rewarm",
    after_flush=connections.close_all,  # the thread's own connections: nothing else closes them
)


def pending() -> dict[str, int]:
    """How many changed keys wait to be re-warmed in this process, by warmer."""
    return queue.pending()


def wait_until_idle(timeout: float | None = None) -> bool:
    """Wait until this process has re-warmed every change queued so far (each batch after its
    ``rewarm_delay``); True if it has, False if ``timeout`` seconds passed first."""
    return queue.wait_idle(timeout)


def flush(timeout: float | None = None, reason: str = "asked") -> bool:
    """Re-warm every pending change now, without waiting for ``rewarm_delay``; wait at most
    ``timeout`` seconds (default: the longest ``warmup_timeout`` of the pending warmers, plus
    ``EXIT_MARGIN_S``). True when everything was written; otherwise the keys left are logged."""
    if not queue.busy:
        return True
    waiting = queue.pending()
    if timeout is None:
        timeout = _flush_timeout(waiting)
    logger.info(
        "re-warm on change: flushing %d changed keys now (%s)", sum(waiting.values()), reason
    )
    done = queue.flush_now(timeout)
    if not done:
        _log_left(queue.pending(), reason)
    return done


def _flush_timeout(waiting: Mapping[str, int]) -> float:
    from django_cachewarmers.registry import get_spec

    longest = 0.0
    for name in waiting:
        try:
            longest = max(longest, get_spec(name).config.warmup_timeout_s)
        except Exception:
            longest = max(longest, 60.0)
    return longest + EXIT_MARGIN_S


def _log_left(left: Mapping[str, int], reason: str) -> None:
    named = ", ".join(f"{name}: {count}" for name, count in left.items())
    logger.error(
        "re-warm on change: changed keys could not be written before %s (%s%s); they keep their "
        "old cached values until the warmer's next run or their TTL",
        reason,
        named or "a flush was still in progress",
        "" if not left else " keys",
    )


# --------------------------------------------------------------------------- shutdown

_hooks_installed = False
_sigterm_installed = False


def _install_exit_hooks() -> None:
    """At the first change of this process: flush at exit; and on SIGTERM when that signal
    would otherwise end the process without Python's exit (its handler is the default)."""
    global _hooks_installed, _sigterm_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_flush_at_exit)
    celery_signals = sys.modules.get("celery.signals")
    if celery_signals is not None:
        # A Celery prefork child ends with os._exit(), which skips atexit.
        celery_signals.worker_process_shutdown.connect(
            _flush_at_celery_child_exit, weak=False, dispatch_uid=DISPATCH_UID
        )
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except (ValueError, OSError):  # not the main interpreter, or no SIGTERM here
        pass


def _flush_at_exit() -> None:
    if not queue.busy:
        return
    if not _threads_can_start():
        # CPython 3.12 forbids new threads once the interpreter is finalizing, atexit included
        # (python/cpython#113964; 3.11 and 3.13 allow them), and a warm runs on worker threads.
        _log_left(
            queue.pending_unlocked(),
            "the process exited (this Python cannot start threads at exit)",
        )
        return
    try:
        flush(reason="the process exits")
    except Exception:
        logger.exception("re-warm on change: flushing at exit failed")


def _threads_can_start() -> bool:
    try:
        probe = threading.Thread(target=lambda: None, name="cachewarmer-rewarm-probe", daemon=True)
        probe.start()
    except RuntimeError:
        return False
    probe.join()
    return True


def _flush_at_celery_child_exit(**kwargs: Any) -> None:
    _flush_at_exit()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM where it would end the process at once: flush, then end it as SIGTERM does.

    Runs in the main thread, between two of its bytecodes, maybe while it holds the queue's lock:
    so it takes no lock (``request_flush``) and only polls, up to the flush's timeout.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    if queue.busy:
        waiting = queue.pending_unlocked()
        deadline = time.monotonic() + _flush_timeout(waiting)
        queue.request_flush()
        logger.info(
            "re-warm on change: SIGTERM: flushing %d changed keys before the process ends",
            sum(waiting.values()),
        )
        done = False
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
            done = not queue.busy
        if not done:
            _log_left(queue.pending_unlocked(), "SIGTERM ended the process")
    os.kill(os.getpid(), signum)


@after_fork_in_child
def _reset_after_fork() -> None:
    # The parent's pending changes are the parent's to flush; its thread does not exist here.
    global _lock
    _lock = threading.Lock()
    queue.reset()
