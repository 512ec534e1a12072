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
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.tracker import AccessTracker

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable


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
    if via not in ("local", "celery"):
        raise ValueError(f"via: must be 'local' or 'celery', got {via!r}")
    get_entry(name)  # a bad name is the caller's error now, not a failure after a commit
    requested = None if keys is None else list(keys)  # an iterator may not outlive the call

    def run() -> WarmingStats:
        if via == "celery":
            from django_cachewarmers.distributed import fan_out

            return fan_out(name, keys=requested, trigger="celery" if trigger == "api" else trigger)
        stats = run_warm(name, keys=requested, trigger=trigger)
        assert stats is not None  # only claimed runs can be skipped
        return stats

    if defer_until_commit(run, f"cache warmer {name}"):
        return None
    return run()


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
    "StaticKeyProvider",
    "ValueLoader",
    "WarmingConfig",
    "WarmingStats",
    "WarmingStrategy",
    "get_warmer",
    "get_warmers",
    "track",
    "warm",
]
