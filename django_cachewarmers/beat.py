"""Celery beat entries for the scheduled and adaptive warmers, instead of the scheduler thread.

In settings (with ``CACHE_WARMERS_AUTOSTART = False`` so no server process runs its own thread)::

    from django_cachewarmers.beat import beat_schedule

    CELERY_BEAT_SCHEDULE = {**beat_schedule(CACHE_WARMERS), ...}

Each entry runs ``django_cachewarmers.tasks.warm_warmer`` every ``refresh_interval`` seconds. That
task takes the warmer's slot claim, so two beat ticks, or two beat processes by mistake, warm a
warmer once per interval. This module reads only the ``strategy`` and ``refresh_interval`` fields,
imports none of the warmers' callables and never imports Celery, so it is safe in settings.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django_cachewarmers.celery_app import WARMER_TASK
from django_cachewarmers.core.config import REFRESH_INTERVAL_RANGE, WarmingConfig, WarmingStrategy

__all__ = ["DEFAULT_PREFIX", "beat_schedule"]

DEFAULT_PREFIX = "cachewarmers-"
_SCHEDULED = (WarmingStrategy.SCHEDULED.value, WarmingStrategy.ADAPTIVE.value)


def beat_schedule(
    warmers: Mapping[Any, Any] | None = None,
    *,
    names: Iterable[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
    options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Beat schedule entries for the scheduled and adaptive warmers, in declaration order.

    ``warmers`` is a ``CACHE_WARMERS`` dict (default: ``settings.CACHE_WARMERS``, read when
    called). ``names`` limits the entries to those warmers. ``options`` (e.g. ``{"queue":
    "warming"}``) is added to every entry as its ``options``. A warmer whose strategy or interval
    is invalid gets no entry: the system checks report it.
    """
    declared: object = warmers
    if declared is None:
        from django_cachewarmers.conf import conf

        declared = conf.CACHE_WARMERS
    if not isinstance(declared, Mapping):
        return {}
    wanted = None if names is None else set(names)
    entries: dict[str, dict[str, Any]] = {}
    for name, raw in declared.items():
        if not isinstance(name, str) or not isinstance(raw, Mapping):
            continue
        if wanted is not None and name not in wanted:
            continue
        if raw.get("strategy", WarmingStrategy.EAGER.value) not in _SCHEDULED:
            continue
        interval = _interval(raw.get("refresh_interval", WarmingConfig.refresh_interval_s))
        if interval is None:
            continue
        entry: dict[str, Any] = {"task": WARMER_TASK, "schedule": interval, "args": [name]}
        if options:
            entry["options"] = dict(options)
        entries[f"{prefix}{name}"] = entry
    return entries


def _interval(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    smallest, largest = REFRESH_INTERVAL_RANGE  # as the system checks accept it
    return float(value) if smallest <= value <= largest else None
