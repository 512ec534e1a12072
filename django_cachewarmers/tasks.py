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
import os
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from celery import shared_task
from django.core.exceptions import ImproperlyConfigured

from django_cachewarmers import claims
from django_cachewarmers.celery_app import CHUNK_TASK, WARMER_TASK
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.loaders import stored_key
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.registry import UnknownWarmer, get_entry
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
    worker = f"{socket.gethostname()}:{os.getpid()}"
    written: list[list[Any]] = []
    try:
        _, warmer = get_entry(name)
    except (UnknownWarmer, ImproperlyConfigured) as exc:
        message = f"not usable on worker {worker}: {exc}"
        stats = WarmingStats(keys_failed=len(keys), run_error=message)
        for key in keys:  # add_error keeps the first MAX_ERRORS and counts the rest
            stats.add_error(key, "not warmed: the warmer is " + message)
    else:
        stats = warmer.warm(list(keys))
        logger.debug("cache warmer %s: chunk %d of run %s done on %s", name, index, run_id, worker)
        written = _written_pairs(warmer, keys, stats)
    data = stats.to_dict()
    data.update(run_id=run_id, index=index, worker=worker, owner=claims.OWNER, written=written)
    return data


def _written_pairs(
    warmer: CacheWarmer, keys: Sequence[Any], stats: WarmingStats
) -> list[list[Any]]:
    """``[read-back key, warmer key]`` (``[key]`` when they are the same) of the chunk's keys it
    did not fail, for the fan-out's read-back after the last chunk.

    The failed keys are the ones its errors name ("key: message"). When more keys failed than
    the bounded error list names, the unnamed ones are sent too, and the fan-out never fails more
    of the chunk's keys than it counted warmed. A loader that stores its own entries
    (``STORED_BY_LOADER``) under another key says which with ``stored_key(key)`` (None: not
    addressable, not read back), as for the read-back of a run in one process
    (``core.loaders.stored_key``).
    """
    failed = _named_failures(keys, stats.errors) if stats.keys_failed else set()
    pairs: list[list[Any]] = []
    for key in keys:
        if key in failed:
            continue
        target = stored_key(warmer.value_loader, key)
        if target is not None:  # [key] when it is read back under itself: half the payload
            pairs.append([key] if target == key else [target, key])
    return pairs


def _named_failures(keys: Sequence[Any], errors: Iterable[str]) -> set[Any]:
    """The ``keys`` that ``errors`` (``WarmingStats.errors`` lines) name unambiguously."""
    prefixes: dict[str, list[Any]] = {}
    for key in keys:
        probe = WarmingStats()  # the exact "key: " prefix add_error writes for this key
        probe.add_error(key, "")
        prefixes.setdefault(probe.errors[0], []).append(key)
    named: set[Any] = set()
    for text in errors:
        matches = []
        at = text.find(": ")
        while at != -1:
            matches.extend(prefixes.get(text[: at + 2], []))
            at = text.find(": ", at + 1)
        if len(matches) == 1:
            named.add(matches[0])
    return named
