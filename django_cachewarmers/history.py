"""Recording warming runs in the database, without ever failing a warm."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import Error, connections, router, transaction
from django.utils import timezone

from django_cachewarmers.conf import conf
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.models import WarmingRun

__all__ = ["last_runs", "record_run"]

logger = logging.getLogger("django_cachewarmers")

#: What an unreachable, unmigrated or unconfigured database raises. ``django.db.Error`` is the
#: base of ``DatabaseError`` (``OperationalError``, ``ProgrammingError``...) and ``InterfaceError``.
_UNAVAILABLE = (Error, ImproperlyConfigured)


def record_run(
    name: str,
    trigger: str,
    started_at: datetime,
    stats: WarmingStats,
    *,
    finished_at: datetime | None = None,
) -> WarmingRun | None:
    """Store one run of the warmer ``name`` and prune its history; None when it can't be stored."""
    alias = router.db_for_write(WarmingRun)
    warmer = _text(name)
    try:
        errors = [_text(error) for error in stats.errors]
        listed = errors[: WarmingStats.MAX_ERRORS]
        # A savepoint, so a failed insert leaves a caller's transaction usable.
        with transaction.atomic(using=alias):
            run: WarmingRun = WarmingRun.objects.using(alias).create(
                warmer=warmer,
                trigger=_text(trigger),
                started_at=started_at,
                finished_at=finished_at if finished_at is not None else timezone.now(),
                keys_warmed=stats.keys_warmed,
                keys_failed=stats.keys_failed,
                success_rate=stats.success_rate,
                total_time_ms=stats.total_time_ms,
                errors=listed,
                errors_omitted=stats.errors_omitted + len(errors) - len(listed),
                run_error=_text(stats.run_error or ""),
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
            )
    except _UNAVAILABLE as exc:
        # The run's result goes into the line: it is the only record of the run left.
        _unavailable(
            alias, exc, f"cache warmer {name}: the run ({_result(stats)}) could not be recorded"
        )
        return None
    except Exception:
        logger.exception(
            "cache warmer %s: the run (%s) could not be recorded", name, _result(stats)
        )
        return None
    try:
        with transaction.atomic(using=alias):
            WarmingRun.objects.using(alias).prune(warmer, max(1, conf.HISTORY_LIMIT))
    except _UNAVAILABLE as exc:
        _unavailable(alias, exc, f"cache warmer {name}: its old runs could not be pruned")
    except Exception:
        logger.exception("cache warmer %s: its old runs could not be pruned", name)
    return run


def last_runs() -> dict[str, WarmingRun]:
    """The most recent recorded run of each warmer, by name; empty when the database fails."""
    alias = router.db_for_read(WarmingRun)
    try:
        with transaction.atomic(using=alias):
            runs: dict[str, WarmingRun] = WarmingRun.objects.using(alias).latest_per_warmer()
            return runs
    except _UNAVAILABLE as exc:
        _unavailable(alias, exc, "cache warmers: the last runs could not be read")
        return {}


def _unavailable(alias: str, exc: BaseException, what: str) -> None:
    """Log one warning line (details at DEBUG) and drop the connection if it broke."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    logger.warning("%s (%s)", what, reason)
    logger.debug("Details of the database failure above:", exc_info=exc)
    try:
        connection = connections[alias]
        # A dead connection would fail every later run in this thread (background threads get no
        # request_started to renew it); inside a caller's transaction it is the caller's to handle.
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
    except Exception:
        logger.debug("Could not check the database connection %r", alias, exc_info=True)


def _result(stats: WarmingStats) -> str:
    """A run's result in a few words, e.g. "5 warmed, 0 failed, 12 ms"."""
    result = f"{stats.keys_warmed} warmed, {stats.keys_failed} failed, {stats.total_time_ms:.0f} ms"
    if stats.run_error:
        result += f", {' '.join(stats.run_error.split())}"
    return result


def _text(value: object) -> str:
    """``value`` as text any database stores: no NUL characters, no lone surrogates."""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "\ufffd").encode("utf-8", "backslashreplace").decode("utf-8")
