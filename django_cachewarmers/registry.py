"""The warmers declared in ``CACHE_WARMERS``, built lazily once and rebuilt when settings change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import close_old_connections, connections
from django.dispatch import receiver

from django_cachewarmers.conf import conf
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.loaders import BatchValueLoader, CallableValueLoader, ValueLoader
from django_cachewarmers.core.providers import CallableKeyProvider, KeyProvider, StaticKeyProvider
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
    return warmer


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
