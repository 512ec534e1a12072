"""The one place a configured warmer is run: claim (when asked), warm, record, signal.

The management command, the scheduler, startup warming, the admin and the public ``warm()`` API all
call ``run_warm``; a Celery fan-out (``django_cachewarmers.distributed``) shares its
``record_and_signal``: there is no second copy of "warm and record".
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.dispatch import Signal
from django.utils import timezone

from django_cachewarmers.claims import Claims
from django_cachewarmers.conf import conf
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.threads import ThreadPerName
from django_cachewarmers.models import Trigger as TriggerChoice
from django_cachewarmers.registry import UnknownWarmer, get_entry
from django_cachewarmers.signals import warming_finished, warming_started

logger = logging.getLogger("django_cachewarmers")

#: What started a run: one of ``TRIGGERS`` (the choices of ``WarmingRun.trigger``).
Trigger = str
TRIGGERS: tuple[str, ...] = tuple(TriggerChoice.values)
#: The once-per-cluster claims a run may take: "startup" or "schedule".
ClaimKind = str


def check_trigger(trigger: str) -> None:
    """Raise ``ValueError`` unless ``trigger`` is one of ``TRIGGERS``."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger: must be one of {', '.join(TRIGGERS)}, got {trigger!r}")


#: The running mark outlives a run's deadline by this much before it expires on its own.
RUNNING_MARK_MARGIN_S = 60.0

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _lock_for(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def run_warm(
    name: str,
    *,
    keys: Iterable[Hashable] | None = None,
    trigger: Trigger = "api",
    claim: ClaimKind | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> WarmingStats | None:
    """Warm the configured warmer ``name`` and record the run; returns its stats.

    With ``claim`` ("startup" or "schedule") the run first takes its once-per-cluster claim in the
    warmer's cache and returns None, without warming, when another process has it. Runs of one
    warmer in one process are serialized. Raises ``UnknownWarmer`` or ``ImproperlyConfigured``
    for a warmer that is not declared or not valid.
    """
    spec, warmer = get_entry(name)
    with _lock_for(name):
        claims = Claims(warmer.cache, name)
        holds_running_mark = False
        if claim is not None:
            try:
                won = (
                    claims.claim_startup(conf.STARTUP_WINDOW)
                    if claim == "startup"
                    else claims.claim_slot(spec.refresh_interval)
                )
                if won:
                    ttl = spec.config.warmup_timeout_s + RUNNING_MARK_MARGIN_S
                    won = holds_running_mark = claims.acquire_running(ttl)
            except Exception as exc:
                logger.warning(
                    "cache warmer %s: %s run skipped: its cache is unreachable (%s: %s)",
                    name,
                    claim,
                    type(exc).__name__,
                    exc,
                )
                return None
            if not won:
                logger.info("cache warmer %s: %s run skipped: another process has it", name, claim)
                return None
        try:
            return _warm_and_record(name, warmer, keys, trigger, progress)
        finally:
            if holds_running_mark:
                try:
                    claims.release_running()
                except Exception:
                    logger.debug("cache warmer %s: could not release its running mark", name)


def _warm_and_record(
    name: str,
    warmer: CacheWarmer,
    keys: Iterable[Hashable] | None,
    trigger: Trigger,
    progress: Callable[[int, int], object] | None,
) -> WarmingStats:
    requested = None if keys is None else list(keys)
    return record_and_signal(
        name, warmer, trigger, requested, lambda: warmer.warm(requested, progress=progress)
    )


def defer_until_commit(work: Callable[[], object], label: str) -> bool:
    """Run ``work`` after the open transactions of this thread commit; False if none is open.

    Django's ``transaction.on_commit`` on every database with an open atomic block in this thread:
    ``work`` runs once, after the last of them commits, and never if one rolls back. It runs in
    the thread that commits; an exception it raises is logged by Django (``robust=True``), so it
    never fails the commit. This is how the public entry points (``warm()``) defer: loaders read
    through connections of their own, which cannot see rows the caller has not committed yet.
    """
    from django.db import connections, transaction

    open_ = [c.alias for c in connections.all(initialized_only=True) if c.in_atomic_block]
    if not open_:
        return False
    waiting = set(open_)
    guard = threading.Lock()

    def committed(alias: str) -> None:
        with guard:
            waiting.discard(alias)
            if waiting:
                return
        logger.debug("%s: running the warm deferred until the commit", label)
        work()

    for alias in open_:
        transaction.on_commit(functools.partial(committed, alias), using=alias, robust=True)
    logger.debug("%s: inside a transaction on %s: warming after the commit", label, open_)
    return True


def record_and_signal(
    name: str,
    warmer: CacheWarmer,
    trigger: Trigger,
    keys: list[Hashable] | None,
    work: Callable[[], WarmingStats],
) -> WarmingStats:
    """Signal ``warming_started``, run ``work``, record its stats, signal ``warming_finished``.

    Shared by every way of running a configured warmer: in this process (``run_warm``) and fanned
    out over Celery workers (``django_cachewarmers.distributed``). ``keys`` is what the signal
    reports: the requested keys, or None for the warmer's own keys.
    """
    from django_cachewarmers.history import record_run

    _send(warming_started, warmer, name=name, trigger=trigger, keys=keys)
    started_at = timezone.now()
    stats = work()
    run = record_run(name, trigger, started_at, stats, finished_at=timezone.now())
    _send(warming_finished, warmer, name=name, trigger=trigger, stats=stats, run=run)
    return stats


def _send(signal: Signal, warmer: CacheWarmer, **kwargs: object) -> None:
    for receiver, result in signal.send_robust(sender=CacheWarmer, warmer=warmer, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "cache warmer %s: signal receiver %r raised %s: %s",
                kwargs.get("name"),
                receiver,
                type(result).__name__,
                result,
            )


# --------------------------------------------------------------------------- in the background

_background = ThreadPerName()


def start_in_background(name: str, trigger: Trigger = "admin") -> bool:
    """Start ``run_warm(name, trigger=trigger)`` on a daemon thread and return at once.

    Returns False, starting nothing, while an earlier background warm of ``name`` is still going
    (a double click warms once). Raises ``UnknownWarmer`` or ``ImproperlyConfigured`` at once for
    a warmer that is not declared or not valid.
    """
    get_entry(name)
    return _background.start(
        name, run_logged, name, trigger, thread_name=f"cachewarmer[{name}]-{trigger}"
    )


def run_logged(name: str, trigger: Trigger, claim: ClaimKind | None = None) -> None:
    """``run_warm`` on a thread of its own: a failure is logged, never raised, and the thread's
    database connections are closed at the end (nothing else would ever close them)."""
    try:
        run_warm(name, trigger=trigger, claim=claim)
    except (UnknownWarmer, ImproperlyConfigured) as exc:
        logger.error("cache warmer %s: %s run skipped: %s", name, trigger, exc)
    except Exception:
        logger.exception("cache warmer %s: %s run failed", name, trigger)
    finally:
        connections.close_all()


def is_warming_in_background(name: str) -> bool:
    """Whether a background warm of ``name`` (``start_in_background``) is still going here."""
    return _background.is_alive(name)


def wait_for_background_warms(timeout: float | None = None) -> bool:
    """Wait for the background warms; True when none is left running."""
    return _background.join(timeout)


after_fork_in_child(_background.reset)
