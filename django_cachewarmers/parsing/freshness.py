"""A warmer's ``fresh_for``: how long ``get`` serves an entry as fresh (stale-while-revalidate).

``parse_fresh_for`` reads the number (E026), ``check_fresh_for`` compares it with the TTL the
entries are written with (E027: it must be smaller) and with what the cache can coordinate (W005).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_cachewarmers.check_messages import Report, describe_value, setting_path
from django_cachewarmers.core.config import DEFAULT_TIMEOUT, CacheTimeout, number_problem
from django_cachewarmers.parsing.caches import (
    _FILE_BASED,
    _cache_backend,
    _cache_default_timeout,
    _is_backend,
)

__all__ = ["MIN_FRESH_FOR", "check_fresh_for", "parse_fresh_for"]

#: Below this (seconds), W012: the refresh lock lives at least a second.
MIN_FRESH_FOR = 1.0

_HINT = (
    "Give the seconds an entry counts as fresh for get(), less than its TTL ('timeout'), e.g. "
    "'fresh_for': 60 with 'timeout': 3600: a read of an older entry returns it at once and one "
    "background refresh reloads it. Leave 'fresh_for' out (or None) for a plain read-through."
)


def parse_fresh_for(report: Report, name: object, raw: Mapping[Any, Any]) -> float | None:
    """The ``fresh_for`` of a definition in seconds, or None when it is left out (or None)."""
    value = raw.get("fresh_for")
    if value is None:
        return None
    problem = number_problem(value, positive=True)
    if problem or not isinstance(value, (int, float)):
        report.error(
            26,
            f"{setting_path(name, 'fresh_for')}: must be a finite number of seconds > 0 or None, "
            f"got {describe_value(value)} ({problem or 'not a number'}).",
            _HINT,
        )
        return None
    return float(value)


def check_fresh_for(
    report: Report, name: object, fresh_for: float | None, alias: str, ttl: CacheTimeout
) -> bool:
    """E027 when ``fresh_for`` is not less than the entries' TTL ``ttl`` (the warmer's timeout
    after the TTL grace; ``DEFAULT_TIMEOUT``: its cache's ``TIMEOUT``); W005 for a cache whose
    ``add()`` is not atomic across processes (FileBasedCache). False when it reported an error."""
    if fresh_for is None:
        return True
    where = setting_path(name, "fresh_for")
    if ttl is DEFAULT_TIMEOUT:
        current = _cache_default_timeout(alias)
        source = f"the TIMEOUT of cache {alias!r} ('timeout' is left out)"
    else:
        current = ttl
        source = "its TTL ('timeout')"
    number = isinstance(current, (int, float)) and not isinstance(current, bool)
    ok = not (number and 0 < current <= fresh_for)  # type: ignore[operator]
    if not ok:
        report.error(
            27,
            f"{where}: {fresh_for:g} s is not less than {source}, {current:g} s: an entry "
            "expires before it could be served stale, so get() would never serve it stale and "
            "refresh it.",
            _HINT,
        )
    if fresh_for < MIN_FRESH_FOR:
        report.warning(
            12,
            f"{where}: {fresh_for:g} s: nearly every read finds its entry stale and starts a "
            "refresh (at most one per key per second in the cluster), so the loader runs about "
            "once a second for every key being read.",
            "Give the seconds a value may be served before it is reloaded, at least 1 (e.g. 60); "
            "leave 'fresh_for' out for a plain read-through.",
        )
    backend = _cache_backend(alias)
    if backend is not None and _is_backend(backend, _FILE_BASED):
        report.warning(
            5,
            f"{where}: cache {alias!r} is a FileBasedCache, whose add() is not atomic: server "
            "processes cannot agree which one of them loads a missing key or refreshes a stale "
            "one, so each may load it.",
            "Use a cache with an atomic add() (Redis, Memcached, DatabaseCache, or a LocMemCache "
            "per process), or add 'django_cachewarmers.W005' to SILENCED_SYSTEM_CHECKS.",
        )
    return ok
