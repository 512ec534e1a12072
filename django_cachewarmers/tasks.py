"""Celery tasks, found by a project's ``app.autodiscover_tasks()`` with no extra configuration.

- ``warm_warmer(name, claim="schedule")``: warms a whole warmer on the worker that runs it (for
  Celery beat: see ``django_cachewarmers.beat.beat_schedule``). With ``claim="schedule"`` it takes
  the warmer's slot claim and running mark, so two beat ticks, two beat processes, or beat and a
  scheduler thread never warm the same warmer twice in one interval or at the same time.
- ``warm_chunk(name, keys, run_id, index)``: warms one chunk of a fan-out
  (``warm_cache NAME --celery`` or ``warm(name, via="celery")``). ``acks_late`` with
  ``reject_on_worker_lost``: a chunk whose worker dies is delivered again; running a chunk twice
  is harmless, and the fan-out counts one result per chunk.

Arguments and results are JSON. The worker looks the warmer up in its own ``CACHE_WARMERS``.
Importing this module imports Celery: nothing in django_cachewarmers imports it otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from django_cachewarmers.celery_app import CHUNK_TASK, WARMER_TASK
from django_cachewarmers.distributed import warm_one_chunk
from django_cachewarmers.runner import run_warm

__all__ = ["warm_chunk", "warm_warmer"]

logger = logging.getLogger("django_cachewarmers")


@shared_task(name=WARMER_TASK, ignore_result=False)  # type: ignore[untyped-decorator]
def warm_warmer(name: str, claim: str | None = "schedule") -> dict[str, Any] | None:
    """Warm the configured warmer ``name`` here; its stats, or None if another process had it.

    ``claim``: "schedule" (the default, for beat), "startup", or None to always run.
    """
    kinds: dict[str | None, str | None] = {
        "schedule": "schedule",
        "startup": "startup",
        None: None,
    }
    if claim not in kinds:
        raise ValueError(f"claim: must be 'schedule', 'startup' or None, got {claim!r}")
    stats = run_warm(name, trigger="celery", claim=kinds[claim])
    return None if stats is None else stats.to_dict()


@shared_task(  # type: ignore[untyped-decorator]
    name=CHUNK_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=False,
)
def warm_chunk(name: str, keys: list[Any], run_id: str = "", index: int = 0) -> dict[str, Any]:
    """Warm one chunk of a fan-out (``distributed.fan_out``) with this process's warmer ``name``;
    JSON-ready stats.

    Never raises for a bad warmer: the chunk's keys are reported failed, with the reason, so the
    fan-out records it. Idempotent: running a chunk again writes the same values again.
    """
    return warm_one_chunk(name, keys, run_id, index)
