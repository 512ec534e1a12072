"""django-cachewarmers: keep Django caches warm.

The engine (``django_cachewarmers.core``: warmer, key providers, value loaders, tracker, config,
stats) imports nothing from Django, so ``import django_cachewarmers`` works without configured
settings. The Django layer (the other modules) sits on top of it; the functions below reach it
lazily.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from django_cachewarmers.core import backends as _core_backends
from django_cachewarmers.core.config import DEFAULT_TIMEOUT, WarmingConfig, WarmingStrategy
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.loaders import (
    STORED_BY_LOADER,
    BatchValueLoader,
    CallableValueLoader,
    ValueLoader,
)
from django_cachewarmers.core.providers import (
    AdaptiveKeyProvider,
    CallableKeyProvider,
    KeyProvider,
    StaticKeyProvider,
)
from django_cachewarmers.core.readthrough import NoValue
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.tracker import AccessTracker

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable
    from typing import Any

    from django_cachewarmers.registry import UnknownWarmer


def _register_django_backends() -> bool:
    """Give the engine the adapters of Django's cache backends (``django_cachewarmers.backends``)
    once Django's cache package is loaded: before that, no Django cache can exist to warm."""
    if "django.core.cache.backends.base" not in sys.modules:
        return False
    from django_cachewarmers import backends

    return backends.register()


# At the engine's first lookup of a cache's adapter, not now: importing this package must not
# import Django (``AppConfig.ready()`` registers them too).
_core_backends.add_registrar(_register_django_backends)


def get_warmer(name: str) -> CacheWarmer:
    """The ``CacheWarmer`` declared as ``name`` in ``CACHE_WARMERS`` (built once, lazily)."""
    from django_cachewarmers.registry import get_warmer as _get_warmer

    return _get_warmer(name)


def get_warmers() -> dict[str, CacheWarmer]:
    """Every valid warmer declared in ``CACHE_WARMERS``, by name."""
    from django_cachewarmers.registry import get_warmers as _get_warmers

    return _get_warmers()


def warm(
    name: str,
    keys: Iterable[Hashable] | None = None,
    trigger: str = "api",
    *,
    via: str = "local",
) -> WarmingStats | None:
    """Warm the declared warmer ``name`` (or only ``keys`` of it); record and return the run.

    ``via="local"`` (the default) warms in this process. ``via="celery"`` fans the keys out over
    Celery workers in chunks, waits for them and records one run, with trigger "celery" unless
    another trigger is given (needs ``django-cachewarmers[celery]``; see docs/celery.md).
    ``via="tasks"`` enqueues the chunks on the default backend of Django's Tasks framework
    (``TASKS``) and, where that backend can return results, waits for them and records one run
    with trigger "tasks"; where it cannot, each chunk records its own run and this returns
    ``None`` once they are enqueued (see docs/tasks.md).

    Called outside a transaction, it warms now and returns the run's ``WarmingStats``. Called
    inside an atomic block (``transaction.atomic``, ``ATOMIC_REQUESTS``, the admin's saves, a
    ``post_save`` handler), it returns ``None`` at once and warms after the transaction commits
    (Django's ``transaction.on_commit``, in the committing thread), so loaders reading through
    their own connections see the committed rows; on rollback it does not warm at all. The
    deferred run is recorded and signalled as usual; its stats are not returned.

    Raises ``UnknownWarmer`` / ``ImproperlyConfigured`` for a warmer that is not declared or not
    valid, and ``ValueError`` for a bad ``trigger`` or ``via``, at the call, deferred or not.
    """
    from django_cachewarmers.registry import get_entry
    from django_cachewarmers.runner import check_trigger, defer_until_commit, run_warm

    check_trigger(trigger)
    if via not in ("local", "celery", "tasks"):
        raise ValueError(f"via: must be 'local', 'celery' or 'tasks', got {via!r}")
    get_entry(name)  # a bad name is the caller's error now, not a failure after a commit
    requested = None if keys is None else list(keys)  # an iterator may not outlive the call

    def run() -> WarmingStats | None:
        if via == "celery":
            from django_cachewarmers.distributed import fan_out

            return fan_out(name, keys=requested, trigger="celery" if trigger == "api" else trigger)
        if via == "tasks":
            from django_cachewarmers.task_fanout import fan_out_tasks

            return fan_out_tasks(
                name, keys=requested, trigger="tasks" if trigger == "api" else trigger
            )
        stats = run_warm(name, keys=requested, trigger=trigger)
        assert stats is not None  # only claimed runs can be skipped
        return stats

    if defer_until_commit(run, f"cache warmer {name}"):
        return None
    return run()


def rewarm(name: str, keys: Iterable[Hashable]) -> WarmingStats | None:
    """Rewrite ``keys`` of the declared warmer ``name`` in place, now: load them with the
    warmer's loader and write them over the cached values (no delete first); recorded as a run
    with trigger "change".

    For changes that send no ``post_save`` (``rewarm_on`` sees only those): ``QuerySet.update()``,
    ``bulk_update()``, ``bulk_create()``, raw SQL. It is ``warm(name, keys, trigger="change")``:
    outside a transaction it runs in the caller's thread and returns the run's ``WarmingStats``;
    inside an atomic block it returns ``None`` and runs right after the commit (nothing on
    rollback). Nothing is coalesced or delayed (``rewarm_delay`` is for ``rewarm_on``). A page
    warmer's URLs are rendered in each of its declared ``variants``.

    Raises ``TypeError`` when ``keys`` is a string or None (give a list of keys),
    ``UnknownWarmer`` / ``ImproperlyConfigured`` for a warmer that is not declared or not valid.
    """
    given: object = keys  # as the caller passed it, whatever the annotation says
    if given is None or isinstance(given, (str, bytes)):
        raise TypeError(f"keys: must be an iterable of keys, got {type(given).__name__}")
    from django_cachewarmers.registry import get_entry
    from django_cachewarmers.rewarming import with_variants

    spec, _warmer = get_entry(name)
    return warm(name, with_variants(spec, list(keys)), trigger="change")


def track(key: Hashable, tracker: str = "keys", *, hit: bool | None = None) -> None:
    """Count one access to an application key, so adaptive warmers keep hot data warm.

    ``hit=True`` / ``hit=False``: code that read the cache itself says whether it found the key;
    the read counts toward the hit ratio of the warmers whose last run listed ``key``
    (``reads``; ``django_cachewarmers_reads_total``). None (the default): an access only.
    """
    from django_cachewarmers.tracking import track as _track

    _track(key, tracker)
    if hit is not None:
        from django_cachewarmers.reads import key_read

        key_read(key, hit)


#: ``readpath``'s readers by warmer name (the same dict object for the process's life).
_readers: dict[str, Any] | None = None


def get(name: str, key: Any) -> Any:
    """The value of ``key`` from warmer ``name``'s cache; on a miss, loaded and written.

    A miss loads the key with the warmer's loader (a batch loader gets a batch of one) and writes
    it as a warm would (same TTL, jitter and key rules), once per key at a time: concurrent misses
    in this process share one load (and its exception), and across processes sharing the cache
    one of them loads under a lock taken with the cache's ``add`` (expiring after the warmer's
    ``warmup_timeout``) while the others poll for the value. With the warmer's ``fresh_for``
    (seconds), an entry older than that is returned at once and one background refresh in the
    cluster reloads it; a refresh that fails keeps the stale value (counted, logged, not raised).
    Any key of the loader is served, not only the key provider's.

    Raises ``UnknownWarmer`` (not declared), ``ImproperlyConfigured`` (not valid), ``ValueError``
    for a key a warm would refuse (before the cache is touched), ``NoValue`` when the loader gives
    None on a miss, and the loader's own exception when a miss fails (nothing is written).
    """
    readers = _readers
    found = None if readers is None else readers.get(name)
    if found is None:
        return _first_read(name, key)
    return found.get(key)


def _first_read(name: str, key: Any) -> Any:
    global _readers
    from django_cachewarmers import readpath

    _readers = readpath._readers
    return readpath.get(name, key)


async def aget(name: str, key: Any) -> Any:
    """``get(name, key)`` for async code: it never blocks the event loop (the read, and a load on
    a miss, run on a worker thread; concurrent calls for one key share one). Raises as ``get``."""
    from django_cachewarmers.readpath import aget as _aget

    return await _aget(name, key)


def __getattr__(name: str) -> object:
    # ``UnknownWarmer`` lives in the Django layer: imported on first use, not with the package.
    if name == "UnknownWarmer":
        from django_cachewarmers.registry import UnknownWarmer

        return UnknownWarmer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_TIMEOUT",
    "STORED_BY_LOADER",
    "AccessTracker",
    "AdaptiveKeyProvider",
    "BatchValueLoader",
    "CacheWarmer",
    "CallableKeyProvider",
    "CallableValueLoader",
    "KeyProvider",
    "NoValue",
    "StaticKeyProvider",
    "UnknownWarmer",
    "ValueLoader",
    "WarmingConfig",
    "WarmingStats",
    "WarmingStrategy",
    "aget",
    "get",
    "get_warmer",
    "get_warmers",
    "rewarm",
    "track",
    "warm",
]
