"""WarmingRun rows written directly, for the history, queryset and admin tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django_cachewarmers.models import Trigger, WarmingRun


def make_run(warmer: str, started_at: datetime, **fields: Any) -> WarmingRun:
    """A one-second scheduled run that warmed 20 keys, unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "trigger": Trigger.SCHEDULE,
        "started_at": started_at,
        "finished_at": started_at + timedelta(seconds=1),
        "keys_warmed": 20,
        "keys_failed": 0,
        "success_rate": 1.0,
        "total_time_ms": 240.0,
        "hostname": "web-1",
        "pid": 4242,
        **fields,
    }
    run: WarmingRun = WarmingRun.objects.create(warmer=warmer, **values)
    return run
