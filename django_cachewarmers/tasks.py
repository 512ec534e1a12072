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

from typing import Any

from celery import shared_task

from django_cachewarmers import distributed

__all__ = ["warm_chunk", "warm_warmer"]


@shared_task(name=distributed.WARMER_TASK, ignore_result=False)  # type: ignore[untyped-decorator]
def warm_warmer(name: str, claim: str | None = "schedule") -> dict[str, Any] | None:
    """Warm the configured warmer ``name`` here; its stats, or None if another process had it.

    ``claim``: "schedule" (the default, for beat), "startup", or None to always run.
    """
    from django_cachewarmers.runner import ClaimKind, run_warm

    kinds: dict[str | None, ClaimKind | None] = {
        "schedule": "schedule",
        "startup": "startup",
        None: None,
    }
    if claim not in kinds:
        raise ValueError(f"claim: must be 'schedule', 'startup' or None, got {claim!r}")
    stats = run_warm(name, trigger="celery", claim=kinds[claim])
    return None if stats is None else stats.to_dict()


@shared_task(  # type: ignore[untyped-decorator]
    name=distributed.CHUNK_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=False,
)
def warm_chunk(name: str, keys: list[Any], run_id: str = "", index: int = 0) -> dict[str, Any]:
    """Warm one chunk of a fan-out's keys; JSON-ready stats (see ``distributed.warm_chunk``)."""
    return distributed.warm_chunk(name, keys, run_id, index)
