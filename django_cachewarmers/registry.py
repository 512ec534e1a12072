"""The warmers declared in ``CACHE_WARMERS``, built lazily once and rebuilt when settings change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import close_old_connections, connections, transaction
from django.dispatch import receiver

from django_cachewarmers import reads
from django_cachewarmers.backends import max_entries
from django_cachewarmers.conf import conf
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.loaders import BatchValueLoader, CallableValueLoader, ValueLoader
from django_cachewarmers.core.providers import CallableKeyProvider, KeyProvider, StaticKeyProvider
from django_cachewarmers.core.readthrough import KeyNames, write_times
from django_cachewarmers.pages import renders_pages
from django_cachewarmers.parsing import get_specs, parse_warmer
from django_cachewarmers.spec import AdaptiveKeys, WarmerSpec


class UnknownWarmer(KeyError):
    """No warmer of that name is declared in ``CACHE_WARMERS``."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(repr(n) for n in known) or "none are configured"
        super().__init__(f"unknown cache warmer {name!r}; known warmers: {listed}")

    def __str__(self) -> str:
        return str(self.args[0])


_lock = threading.RLock()
_entries: dict[str, tuple[WarmerSpec, CacheWarmer]] = {}


def build_warmer(spec: WarmerSpec) -> CacheWarmer:
    """A ``CacheWarmer`` for one parsed warmer spec, with its own connection to its cache."""
    provider: KeyProvider
    if isinstance(spec.keys, AdaptiveKeys):
        from django_cachewarmers.hotkeys import ClusterKeyProvider

        provider = ClusterKeyProvider(spec.keys.tracker, spec.keys.threshold, spec.keys.limit)
    elif callable(spec.keys):
        provider = CallableKeyProvider(spec.keys)
    else:
        provider = StaticKeyProvider(spec.keys)
    if renders_pages(spec.loader):  # each page URL times its variants (declared, learned)
        from django_cachewarmers.page_providers import with_variants

        adaptive = spec.keys.tracker if isinstance(spec.keys, AdaptiveKeys) else None
        provider = with_variants(provider, spec.variants, tracker=adaptive)
    loader: ValueLoader
    if spec.batch_loader is not None:
        loader = BatchValueLoader(spec.batch_loader)
    else:
        assert spec.loader is not None
        loader = CallableValueLoader(spec.loader)
    # A private cache object: never one a request thread uses, and rebuilt after a fork so no
    # connection opened in a parent process is reused in its child.
    cache = caches.create_connection(spec.cache)
    warmer = CacheWarmer(
        cache,
        provider,
        loader,
        spec.config,
        name=spec.name,
        # Worker threads get no request_started/finished: they replace a broken or expired
        # database connection (CONN_MAX_AGE, CONN_HEALTH_CHECKS) before each task and retry, and
        # close theirs when they exit.
        on_thread_exit=connections.close_all,
        before_load=close_old_connections,
    )
    # A required warmer's failure is an error in the log; an optional one's a warning.
    warmer.failure_log_level = logging.WARNING if spec.optional else logging.ERROR
    name = spec.name
    warmer.max_entries_check = lambda count: max_entries_warning(name, count)
    if spec.fresh_for is not None:  # get() tells fresh from stale by each entry's write time
        warmer.companions = write_times(KeyNames.for_cache(conf.KEY_PREFIX, cache, warmer.backend))
    pages = renders_pages(spec.loader)
    warmer.keys_listener = lambda keys: reads.remember_keys(name, keys, pages=pages)
    return warmer


#: Cache entries one key of a ``render_page`` warmer takes in the page cache: Django's cache
#: middleware stores a headers entry (``learn_cache_key``) and the page itself.
ENTRIES_PER_PAGE = 2


def _entry_cache(spec: WarmerSpec) -> str:
    """The cache alias a warmer's entries land in: the page cache's for ``render_page`` (the
    per-site cache's ``CACHE_MIDDLEWARE_ALIAS``, also ``cache_page``'s default), else ``cache``."""
    return str(settings.CACHE_MIDDLEWARE_ALIAS) if renders_pages(spec.loader) else spec.cache


def _store(alias: str) -> tuple[str, str]:
    """What makes two aliases one store: the same backend and ``LOCATION``."""
    definition = settings.CACHES.get(alias, {})
    return str(definition.get("BACKEND", "")), str(definition.get("LOCATION", ""))


def last_key_count(spec: WarmerSpec) -> int | None:
    """How many keys the warmer last wrote, as far as this process knows, or None.

    A fixed key list: its length. Else this process's last run of it, else its latest
    ``WarmingRun`` row (keys warmed + failed), else an adaptive warmer's ``limit``.
    """
    if isinstance(spec.keys, tuple):
        return len(spec.keys)
    entry = _entries.get(spec.name)
    if entry is not None and entry[1].stats.finished_at is not None:
        return entry[1].stats.keys_attempted
    try:
        from django_cachewarmers.models import WarmingRun

        runs = WarmingRun.objects.filter(warmer=spec.name)
        # A savepoint: a failed query must not break a caller's transaction (PostgreSQL).
        with transaction.atomic(using=runs.db):
            row = runs.order_by("-finished_at").values_list("keys_warmed", "keys_failed").first()
    except Exception:  # no database here (not migrated, no access): not known
        row = None
    if row is not None:
        return int(row[0]) + int(row[1])
    if isinstance(spec.keys, AdaptiveKeys):
        return spec.keys.limit
    return None


def max_entries_warning(name: str, count: int) -> str | None:
    """The run-time WARNING when the warmers writing into warmer ``name``'s cache write more
    entries than it holds (``MAX_ENTRIES`` of a LocMem, database or file cache), or None.

    Counts every declared warmer whose entries land in the same cache (same alias, or the same
    backend and ``LOCATION``): ``count`` keys for this run, each other warmer's
    ``last_key_count``, and ``ENTRIES_PER_PAGE`` entries per ``render_page`` page.
    """
    entry = _entries.get(name)
    specs: dict[str, WarmerSpec] | None = None
    if entry is not None:
        own: WarmerSpec | None = entry[0]
    else:
        specs = get_specs()
        own = specs.get(name)
    if own is None:
        return None
    alias = _entry_cache(own)
    limit = max_entries(caches[alias])
    if limit is None:  # Redis, memcached: they evict by memory, not by count
        return None
    if specs is None:  # parse CACHE_WARMERS once per call, not twice
        specs = get_specs()
    store = _store(alias)
    parts: list[str] = []
    total = 0
    for other in specs.values():
        other_alias = _entry_cache(other)
        if other_alias != alias and _store(other_alias) != store:
            continue
        keys = count if other.name == name else last_key_count(other)
        if keys is None:
            parts.append(f"{other.name}: key count not known yet")
            continue
        if renders_pages(other.loader):
            entries = keys * ENTRIES_PER_PAGE
            parts.append(f"{other.name}: {keys} pages x {ENTRIES_PER_PAGE} entries")
        else:
            entries = keys
            parts.append(f"{other.name}: {keys} keys")
        total += entries
    if total <= limit:
        return None
    shared = len(parts) > 1
    return (
        (
            f"the warmers writing into cache {alias!r} write {total} entries"
            if shared
            else f"{total} entries to write into cache {alias!r}"
        )
        + f" ({'; '.join(parts)}), but that cache ({type(caches[alias]).__name__}) holds at most "
        f"MAX_ENTRIES={limit} entries and culls a share of them whenever it is full: not all of "
        "them can stay cached; raise OPTIONS['MAX_ENTRIES'] of that cache"
        + (" or give the warmers caches of their own" if shared else "")
    )


def get_entry(name: str) -> tuple[WarmerSpec, CacheWarmer]:
    """The spec and warmer called ``name``; raises ``UnknownWarmer`` or ``ImproperlyConfigured``."""
    with _lock:
        entry = _entries.get(name)
        if entry is not None:
            return entry
        declared = conf.CACHE_WARMERS
        if not isinstance(declared, Mapping) or name not in declared:
            raise UnknownWarmer(name, names())
        spec = parse_warmer(name, declared[name])
        entry = _entries[name] = (spec, build_warmer(spec))
        return entry


def get_warmer(name: str) -> CacheWarmer:
    """The configured ``CacheWarmer`` called ``name``."""
    return get_entry(name)[1]


def get_spec(name: str) -> WarmerSpec:
    """The parsed settings of the warmer called ``name``."""
    return get_entry(name)[0]


def names() -> list[str]:
    """Names of every warmer declared in settings (valid or not), in declaration order."""
    declared = conf.CACHE_WARMERS
    return [str(n) for n in declared] if isinstance(declared, Mapping) else []


def get_warmers() -> dict[str, CacheWarmer]:
    """Every valid configured warmer by name (invalid ones are reported by the system checks)."""
    return {name: get_entry(name)[1] for name in get_specs()}


def reset() -> None:
    """Forget every built warmer (stopping any scheduler thread of theirs); next use rebuilds."""
    with _lock:
        entries = list(_entries.values())
        _entries.clear()
    for _, warmer in entries:
        warmer.stop_scheduler(timeout=5)


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHE_WARMERS" or setting == "CACHES" or setting.startswith("CACHE_WARMERS_"):
        reset()


@after_fork_in_child
def _forget_after_fork() -> None:
    # The parent's cache connections must not be reused here: build everything anew on next use.
    # The lock too: another thread of the parent may have held it at the fork.
    global _lock
    _lock = threading.RLock()
    _entries.clear()
