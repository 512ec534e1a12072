"""Warming through Django's Tasks framework: fan one warm out as one task per chunk.

``fan_out_tasks(name)`` resolves the warmer's keys once, splits them into chunks and enqueues one
``django_cachewarmers.task_chunks.warm_chunk`` task per chunk on a task backend of ``TASKS``
(default: ``"default"``). What happens next depends on what the backend can do
(``tasks_framework.returns_results``):

- it can return results (``supports_get_result``, e.g. django-tasks-db's ``DatabaseBackend``; or
  ``ImmediateBackend``, which runs each task during ``enqueue()``): the fan-out waits for the
  chunks (bounded by ``timeout``) and records **one** ``WarmingRun`` whose numbers are the sums
  of the chunks, read back after the last chunk. This is ``distributed.run_fanned_out``, the
  same code as a Celery fan-out.
- it cannot: each chunk records its own run on its worker (``record=True``), and the fan-out
  returns None once the chunks are enqueued.

The running mark, de-duplication, JSON checks, the read-back and the failure handling are the
Celery fan-out's (``django_cachewarmers.distributed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from django.utils.module_loading import import_string

from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.distributed import (
    Send,
    check_sizes,
    default_chunk_size,
    default_timeout,
    run_fanned_out,
)
from django_cachewarmers.registry import get_entry
from django_cachewarmers.runner import Trigger
from django_cachewarmers.tasks_framework import (
    CHUNK_TASK,
    TasksUnavailable,
    backend_kind,
    get_backend,
    result_status,
    returns_results,
)

__all__ = ["POLL_INTERVAL_S", "BackendCannotWait", "ChunkTaskFailed", "fan_out_tasks"]

logger = logging.getLogger("django_cachewarmers")

#: Seconds between two looks at the chunks' results while waiting.
POLL_INTERVAL_S = 0.2


class BackendCannotWait(TasksUnavailable):
    """An aggregated wait was asked of a task backend that cannot return results."""


class ChunkTaskFailed(Exception):
    """A chunk task ended FAILED (its exception, as the backend recorded it)."""


def fan_out_tasks(
    name: str,
    *,
    keys: Iterable[Hashable] | None = None,
    chunk_size: int | None = None,
    timeout: float | None = None,
    trigger: Trigger = "tasks",
    progress: Callable[[int, int], object] | None = None,
    backend: str | None = None,
    wait: bool | None = None,
    hold_mark: bool = True,
) -> WarmingStats | None:
    """Warm the configured warmer ``name`` through the task backend ``backend`` (an alias of
    ``TASKS``, default ``"default"``); the recorded run's stats, or None when each chunk records
    its own run.

    ``keys`` (default: the warmer's own keys, resolved here once) are de-duplicated and split into
    chunks of ``chunk_size`` (default: ``batch_size`` x 10) keys, one task each. ``wait``: None
    (the default) collects the results when the backend can return them and else lets each chunk
    record its own run; True requires collecting (``BackendCannotWait`` otherwise); False never
    collects. Collecting waits up to ``timeout`` seconds (default: the longer of 600 s and 2 x
    ``warmup_timeout``); a chunk not finished by then counts its keys as failed, with its state
    (still waiting for a worker, or still running) in the error. ``progress(done, total)`` is
    called with key counts as chunks finish.

    Raises ``UnknownWarmer`` / ``ImproperlyConfigured`` for a bad warmer, ``TasksUnavailable``
    without the Tasks framework or for a task backend that cannot be used, ``BackendCannotWait``,
    ``WarmerBusy`` when another run of the warmer is in flight, ``UnsendableKeys`` for a key JSON
    cannot carry, and ``ValueError`` for a bad chunk size or timeout. Nothing is enqueued and
    nothing recorded in those cases.
    """
    check_sizes(chunk_size, timeout)
    spec, warmer = get_entry(name)
    task_backend = get_backend(backend)
    alias = task_backend.alias
    kind = backend_kind(task_backend)
    can_collect = returns_results(task_backend)
    if wait and not can_collect:
        raise BackendCannotWait(
            f"task backend {alias!r} ({type(task_backend).__name__}) cannot return results "
            "(supports_get_result is False), so nothing can wait for the chunks: leave out "
            "--timeout (each chunk then records its own run), or use a backend that returns "
            "results, e.g. django-tasks-db's DatabaseBackend."
        )
    collect = can_collect if wait is None else wait
    task = _chunk_task(alias)
    size = chunk_size or default_chunk_size(spec.config.batch_size)
    wait_s = timeout if timeout is not None else default_timeout(spec.config.warmup_timeout_s)
    engine = f"task backend {alias!r}"
    if kind == "immediate":
        logger.debug("cache warmer %s: %s runs the chunks in this process", name, engine)
    return run_fanned_out(
        name,
        warmer,
        keys=keys,
        send=_tasks_send(task, name, trigger, record=not collect),
        engine=engine,
        size=size,
        wait_s=wait_s,
        trigger=trigger,
        progress=progress,
        hold_mark=hold_mark,
        collect=collect,
    )


def _chunk_task(alias: str) -> Any:
    """The chunk task, bound to the backend ``alias``; ``TasksUnavailable`` if it cannot be."""
    try:
        task = import_string(CHUNK_TASK)  # by its path, as every backend's workers find it
        return task if task.backend == alias else task.using(backend=alias)
    except TasksUnavailable:
        raise
    except Exception as exc:
        raise TasksUnavailable(
            f"the chunk task cannot run on task backend {alias!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _tasks_send(task: Any, name: str, trigger: Trigger, *, record: bool) -> Send:
    """The Tasks engine: enqueue one task per chunk; unless ``record``, wait for their results."""

    def send(
        chunks: list[list[Any]],
        run_id: str,
        wait_s: float,
        on_result: Callable[[int, Any], None],
    ) -> dict[int, str]:
        # Positional JSON arguments, in the task's signature order.
        results = [
            task.enqueue(name, chunk, run_id, i, record, trigger) for i, chunk in enumerate(chunks)
        ]
        if record:
            return {}
        return _wait(results, wait_s, on_result)

    return send


def _wait(
    results: list[Any], wait_s: float, on_result: Callable[[int, Any], None]
) -> dict[int, str]:
    """Hand each finished chunk's outcome to ``on_result`` until all are or ``wait_s`` passed;
    the reasons of the chunks that are not finished.

    Looks at the chunks in order and stops at the first one still going (they are enqueued in
    order and mostly finish in order), so a look costs one read per finished chunk plus one;
    when the wait ends, every chunk still pending is read once more.
    """
    deadline = time.monotonic() + wait_s
    pending = list(enumerate(results))
    while True:
        final = time.monotonic() >= deadline
        still: list[tuple[int, Any]] = []
        for i, result in pending:
            if still and not final:
                still.append((i, result))
                continue
            if not result.is_finished:
                result.refresh()
            if result.is_finished:
                on_result(i, _outcome(result))
            else:
                still.append((i, result))
        pending = still
        if not pending or final:
            break
        time.sleep(max(0.0, min(POLL_INTERVAL_S, deadline - time.monotonic())))
    return {i: _not_finished(i, result, wait_s) for i, result in pending}


def _outcome(result: Any) -> Any:
    """A finished chunk task's return value, or ``ChunkTaskFailed`` naming its exception."""
    status = result_status()
    if result.status == status.SUCCESSFUL:
        return result.return_value
    errors = list(getattr(result, "errors", []) or [])
    if errors:
        last = errors[-1]
        lines = [line for line in str(getattr(last, "traceback", "")).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else getattr(last, "exception_class_path", "")
        return ChunkTaskFailed(detail or "no error recorded")
    return ChunkTaskFailed(f"ended {result.status}")


def _not_finished(index: int, result: Any, wait_s: float) -> str:
    status = result_status()
    workers = ", ".join(map(str, getattr(result, "worker_ids", []) or []))
    if result.status == status.RUNNING:
        return (
            f"chunk {index} was still running on worker {workers or '?'} after {wait_s:g}s "
            "(too slow for the timeout, or its worker died: a task whose worker died stays "
            "RUNNING and is not retried, see docs/tasks.md)"
        )
    return (
        f"chunk {index} was still {result.status} after {wait_s:g}s (no worker took it: is a "
        "worker running for this task backend and queue?)"
    )
