"""The task of Django's Tasks framework that warms one chunk of a fan-out.

``warm_chunk`` is a module-level ``@task`` (``django_cachewarmers.task_chunks.warm_chunk``): every
backend stores that path and its workers import it, so nothing needs registering. Its arguments
and result are JSON (warmer name, list of keys, run id, chunk index, whether to record, the
trigger). The worker builds the warmer from its own ``CACHE_WARMERS``.

Importing this module needs Django's Tasks framework (``django.tasks`` on Django >= 6.0, the
``django-tasks`` backport on 5.2) and builds the default task backend, which validates the task;
nothing else in django_cachewarmers imports it (the fan-out finds it by path, as workers do).
"""

from __future__ import annotations

from typing import Any

from django_cachewarmers.distributed import warm_one_chunk
from django_cachewarmers.runner import run_warm
from django_cachewarmers.tasks_framework import task_decorator

__all__ = ["warm_chunk"]

task = task_decorator()


@task  # type: ignore[untyped-decorator]
def warm_chunk(
    name: str,
    keys: list[Any],
    run_id: str = "",
    index: int = 0,
    record: bool = False,
    trigger: str = "tasks",
) -> dict[str, Any]:
    """Warm one chunk of a fan-out (``task_fanout.fan_out_tasks``) with this process's warmer
    ``name``; JSON-ready stats.

    ``record=False`` (a fan-out that collects the results): returns the chunk's stats and the
    keys it wrote, for the fan-out to add up into one run and read back (``warm_one_chunk``);
    never raises for a bad warmer. ``record=True`` (a backend that cannot return results): the
    chunk is a run of its own, recorded here with ``trigger`` (``runner.run_warm``, read-back
    included); raises ``UnknownWarmer`` / ``ImproperlyConfigured`` for a warmer this worker
    cannot build, which the backend records as the task's failure.
    """
    if not record:
        return warm_one_chunk(name, keys, run_id, index, trigger)
    stats = run_warm(name, keys=keys, trigger=trigger)
    assert stats is not None  # only claimed runs can be skipped
    data = stats.to_dict()
    data.update(run_id=run_id, index=index)
    return data
