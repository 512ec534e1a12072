"""The one place a configured warmer is run: claim (when asked), warm, record, signal.

The management command, the scheduler, startup warming, the admin and the public ``warm()`` API all
call ``run_warm``; a Celery fan-out (``django_cachewarmers.distributed``) shares its
``record_and_signal``: there is no second copy of "warm and record".
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.dispatch import Signal
from django.utils import timezone

from django_cachewarmers.claims import Claims, startup_is_covered
from django_cachewarmers.conf import conf
from django_cachewarmers.core.config import DEFAULT_TIMEOUT
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.threads import ThreadPerName
from django_cachewarmers.models import Trigger as TriggerChoice
from django_cachewarmers.registry import UnknownWarmer, get_entry
from django_cachewarmers.signals import warming_finished, warming_started
from django_cachewarmers.spec import WarmerSpec

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


@dataclass(frozen=True)
class Elsewhere:
    """A run carried out by other processes (task workers) instead of this one.

    ``run(keys, trigger, hold_mark)`` fans the keys out (``hold_mark``: whether it must take the
    warmer's running mark itself; False when ``run_warm`` already holds it) and returns the
    recorded run's stats, or None when the chunks record their own runs. ``wait_s``: the longest
    it may take, in seconds; the running mark is held that long plus ``RUNNING_MARK_MARGIN_S``.
    """

    run: Callable[[list[Hashable] | None, str, bool], WarmingStats | None]
    wait_s: float


def run_warm(
    name: str,
    *,
    keys: Iterable[Hashable] | None = None,
    trigger: Trigger = "api",
    claim: ClaimKind | None = None,
    progress: Callable[[int, int], object] | None = None,
    elsewhere: Elsewhere | None = None,
) -> WarmingStats | None:
    """Warm the configured warmer ``name`` and record the run; returns its stats.

    With ``claim`` ("startup" or "schedule") the run first takes its once-per-cluster claim in the
    warmer's cache and returns None, without warming, when another process has it. A startup run
    is also skipped when the last complete run's entries outlive this process's first refresh
    (``claims.startup_is_covered``); every complete run of all the warmer's keys records its start
    for that. Runs of one
    warmer in one process are serialized. Raises ``UnknownWarmer`` or ``ImproperlyConfigured``
    for a warmer that is not declared or not valid.

    With ``elsewhere`` (a warmer whose ``via`` is "tasks" or "celery"), the run is fanned out to
    workers under the same claims instead of warming here; it returns None when the chunks
    record their own runs.
    """
    spec, warmer = get_entry(name)
    with _lock_for(name):
        claims = Claims(warmer.cache, name)
        holds_running_mark = False
        if claim is not None:
            try:
                if claim == "startup":
                    now = time.time()
                    last_run = _last_refresh(claims, spec, now)
                    if _startup_is_covered(spec, warmer, last_run, now):
                        assert last_run is not None  # narrowed for mypy
                        logger.info(
                            "cache warmer %s: startup run skipped: the run that started %.1f s "
                            "ago warmed every key, and its entries outlive this process's first "
                            "refresh",
                            name,
                            now - last_run,
                        )
                        return None
                    won = claims.claim_startup(last_run, conf.STARTUP_WINDOW, now=now)
                else:
                    won = claims.claim_slot(spec.refresh_interval)
                if won:
                    longest = spec.config.warmup_timeout_s
                    if elsewhere is not None:  # the workers' run, waited for here
                        longest = elsewhere.wait_s
                    ttl = longest + RUNNING_MARK_MARGIN_S
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
            started = time.time()
            if elsewhere is not None:
                requested = None if keys is None else list(keys)
                sent = elsewhere.run(requested, trigger, not holds_running_mark)
                if sent is None:  # the chunks record their own runs
                    return None
                stats = sent
            else:
                stats = _warm_and_record(name, warmer, keys, trigger, progress)
            if keys is None and stats.ok:
                _record_run_started(claims, spec, warmer, started)
            return stats
        finally:
            if holds_running_mark:
                try:
                    claims.release_running()
                except Exception:
                    logger.debug("cache warmer %s: could not release its running mark", name)


def entry_ttl(spec: WarmerSpec, warmer: CacheWarmer) -> float | None:
    """The TTL in seconds a run of ``spec`` writes with (after the TTL grace); None: never.

    An omitted ``timeout`` is the cache's own ``default_timeout`` (Django's ``BaseCache``).
    """
    timeout = spec.config.cache_timeout
    if timeout is DEFAULT_TIMEOUT:
        timeout = getattr(warmer.cache, "default_timeout", None)
    return None if timeout is None else float(timeout)


def _last_refresh(claims: Claims, spec: WarmerSpec, now: float) -> float | None:
    """When the newest refresh that wrote (or is writing) every key started; None if unknown.

    The last complete run, or the current slot's run while it is in flight: a live process of
    this cluster (a sibling started a moment before this one) that took the slot after its own
    startup warm is refreshing now. Read in this order so a run finishing between the reads is
    still seen: it records its start before it drops its running mark.
    """
    slot_at = claims.slot_claimed_at(spec.refresh_interval, now) if spec.is_scheduled else None
    in_flight = slot_at is not None and claims.running_holder() is not None
    last_run = claims.last_run_started()
    if in_flight and slot_at is not None:
        return slot_at if last_run is None else max(last_run, slot_at)
    return last_run


def _startup_is_covered(
    spec: WarmerSpec, warmer: CacheWarmer, last_run: float | None, now: float
) -> bool:
    return startup_is_covered(
        last_run,
        now=now,
        ttl=entry_ttl(spec, warmer),
        warmup_timeout=spec.config.warmup_timeout_s,
        refresh_interval=spec.refresh_interval if spec.is_scheduled else None,
        margin=conf.STARTUP_WINDOW,
    )


def _record_run_started(
    claims: Claims, spec: WarmerSpec, warmer: CacheWarmer, started: float
) -> None:
    """Note a complete run's start for the startup warms of processes started later."""
    try:
        claims.record_run_started(started, entry_ttl(spec, warmer))
    except Exception:
        logger.debug("cache warmer %s: could not record its last run", spec.name, exc_info=True)


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


def run_logged(
    name: str,
    trigger: Trigger,
    claim: ClaimKind | None = None,
    elsewhere: Elsewhere | None = None,
) -> None:
    """``run_warm`` on a thread of its own: a failure is logged, never raised, and the thread's
    database connections are closed at the end (nothing else would ever close them)."""
    try:
        run_warm(name, trigger=trigger, claim=claim, elsewhere=elsewhere)
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
