"""A warmer's cache fields: the cache alias, the entries' TTL, and what its backend implies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from django.conf import settings
from django.utils.module_loading import import_string

from django_cachewarmers.check_messages import (
    Report,
    describe_value,
    did_you_mean,
    setting_path,
)
from django_cachewarmers.core.config import (
    DEFAULT_TIMEOUT,
    CacheTimeout,
    WarmingStrategy,
    number_problem,
)
from django_cachewarmers.spec import (
    DEFAULTS,
    refresh_ttl,
)

_FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
_DUMMY = "django.core.cache.backends.dummy.DummyCache"
#: Django's default ``TIMEOUT`` of a cache in ``CACHES`` (``django.conf.global_settings`` has no
#: name for it; ``BaseCache`` uses 300 when the setting is absent).
_DJANGO_DEFAULT_TIMEOUT = 300
_ZERO_TIMEOUT_HINT = (
    "0 means don't cache; None means never expire. Give the TTL of warmed entries in seconds, "
    "None to never expire them, or leave 'timeout' out to use the cache's default timeout."
)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cache_backend(alias: str) -> str | None:
    caches = getattr(settings, "CACHES", None)
    if not isinstance(caches, Mapping):
        return None
    options = caches.get(alias)
    if not isinstance(options, Mapping):
        return None
    backend = options.get("BACKEND")
    return backend if isinstance(backend, str) else None


def _is_backend(backend: str, target: str) -> bool:
    """Whether ``backend`` (a dotted path) is ``target`` or a subclass, without instantiating."""
    if backend == target:
        return True
    try:
        cls = import_string(backend)
        target_cls = import_string(target)
        return isinstance(cls, type) and issubclass(cls, target_cls)
    except Exception:
        return False


# --------------------------------------------------------------------------- one warmer


def parse_cache(report: Report, name: object, raw: Mapping[Any, Any]) -> str | None:
    where = setting_path(name, "cache")
    value = raw.get("cache", DEFAULTS["cache"])
    caches = getattr(settings, "CACHES", None)
    aliases = [a for a in caches if isinstance(a, str)] if isinstance(caches, Mapping) else []
    if aliases:
        choices = "Use one of the aliases in CACHES: " + ", ".join(map(repr, aliases)) + "."
    else:
        choices = "CACHES defines no cache; define one in CACHES."
    if not isinstance(value, str):
        report.error(
            4,
            f"{where}: must be an alias in CACHES (a string), got {describe_value(value)}.",
            choices,
        )
        return None
    if value not in aliases:
        omitted = "" if "cache" in raw else " (the default when 'cache' is omitted)"
        report.error(
            4,
            f"{where}: unknown cache alias {value!r}{omitted}.",
            did_you_mean(value, aliases) + choices,
        )
        return None
    return value


def parse_timeout(report: Report, name: object, raw: Mapping[Any, Any]) -> CacheTimeout:
    if "timeout" not in raw:
        return DEFAULT_TIMEOUT
    value = raw["timeout"]
    if value is None:
        return None
    problem = number_problem(value, positive=False)
    if problem or not isinstance(value, (int, float)):
        report.error(
            9,
            f"{setting_path(name, 'timeout')}: must be a finite number of seconds > 0 or None, "
            f"got {describe_value(value)} ({problem}).",
            "Give the TTL of warmed entries in seconds, None to never expire them, or leave "
            "'timeout' out to use the cache's default timeout.",
        )
        return DEFAULT_TIMEOUT
    if value == 0:
        # Django's cache.set(key, value, 0) stores nothing (and deletes what was there): every
        # "warmed" key would be gone at once.
        report.error(
            25,
            f"{setting_path(name, 'timeout')}: 0 means don't cache: every warmed entry would "
            "expire "
            f"at once (and the value cached before would be deleted).",
            _ZERO_TIMEOUT_HINT,
        )
        return DEFAULT_TIMEOUT
    return value


#: Why a TTL under one second does not reach Redis or Memcached as given (check W004).
_SUBSECOND_BACKENDS: Final[tuple[tuple[str, str], ...]] = (
    (
        "django_redis.cache.RedisCache",
        "django-redis writes it in milliseconds (PX), so the entry lives under a second",
    ),
    (
        "django.core.cache.backends.redis.RedisCache",
        "Redis counts whole seconds: the warmer writes it as 1 s, and Django's own "
        "RedisCache.set() truncates it to 0, which deletes the key",
    ),
    (
        "django.core.cache.backends.memcached.BaseMemcachedCache",
        "Memcached counts whole seconds: it is truncated to 0, which Memcached reads as "
        "'never expire' (or the write keeps nothing)",
    ),
)


def check_timeout_value(
    report: Report, name: object, alias: str, timeout: CacheTimeout, strategy: WarmingStrategy
) -> None:
    """E025 for a cache ``TIMEOUT`` of 0 or less used by an omitted ``timeout``; W004 for a TTL
    between 0 and 1 second (explicit or the cache's), naming what the cache's backend does.

    W004 is a warning, not an error: Django accepts such a TTL and LocMem, database and file
    caches honour it exactly; only its use for warming is nearly always a unit mistake. A
    scheduled or adaptive warmer gets none: the TTL grace raises its TTL to whole seconds."""
    if timeout is DEFAULT_TIMEOUT:
        current = _cache_default_timeout(alias)
        where = (
            f"{setting_path(name, 'timeout')}: left out, so the TIMEOUT of cache {alias!r} is "
            f"used, and CACHES[{alias!r}]['TIMEOUT'] is"
        )
    else:
        current = timeout
        where = f"{setting_path(name, 'timeout')}:"
    if current is None or current is DEFAULT_TIMEOUT or not _is_number(current):
        return
    seconds = float(current)  # type: ignore[arg-type]
    if seconds <= 0 and timeout is DEFAULT_TIMEOUT:
        # Django's cache.set(key, value) with a default timeout <= 0 stores nothing (and deletes
        # what was there). The TTL grace must not turn that 0 into a positive TTL either: the
        # user's cache says "don't cache", so the warmer is an error, not a silent override.
        report.error(
            25,
            f"{where} {current!r}: 0 means don't cache: every warmed entry would expire at once "
            f"(and the value cached before would be deleted).",
            f"0 means don't cache; None means never expire. Set 'timeout' on this warmer (the "
            f"TTL of its entries in seconds, or None), or set CACHES[{alias!r}]['TIMEOUT'] to "
            f"the TTL you want (Django's default is {_DJANGO_DEFAULT_TIMEOUT}).",
        )
        return
    if not 0 < seconds < 1 or strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE):
        return
    backend = _cache_backend(alias) or ""
    behaviour = next(
        (text for path, text in _SUBSECOND_BACKENDS if _is_backend(backend, path)),
        "LocMem, database and file caches keep it as given, so every entry expires within a "
        "second of its write and the next read is almost surely a miss",
    )
    report.warning(
        4,
        f"{where} {seconds:g} s is less than one second: {behaviour}.",
        "Give the TTL in seconds (e.g. 300, not 0.3 for five minutes), None to never expire, or "
        "leave 'timeout' out for the cache's default timeout. A warmed entry that expires within "
        "a second is a miss for nearly every real read.",
    )


def _cache_default_timeout(alias: str) -> float | object | None:
    """The ``TIMEOUT`` of ``CACHES[alias]`` (None: never expire); ``DEFAULT_TIMEOUT`` if unknown."""
    caches = getattr(settings, "CACHES", None)
    options = caches.get(alias) if isinstance(caches, Mapping) else None
    if not isinstance(options, Mapping):
        return DEFAULT_TIMEOUT
    value = options.get("TIMEOUT", _DJANGO_DEFAULT_TIMEOUT)
    if value is None or _is_number(value):
        return value  # type: ignore[no-any-return]
    return DEFAULT_TIMEOUT


def ttl_grace(
    report: Report,
    name: object,
    raw: Mapping[Any, Any],
    alias: str,
    timeout: CacheTimeout,
    interval: float,
    warmup_timeout: float,
) -> CacheTimeout:
    """The TTL a scheduled or adaptive warmer writes with: at least ``refresh_ttl(...)``.

    An explicit ``timeout`` that is raised gets warning W003 with the numbers; an omitted one
    (the cache's ``TIMEOUT``) is raised silently, as documented in docs/settings.md.
    """
    needed = refresh_ttl(interval, warmup_timeout)
    current = _cache_default_timeout(alias) if timeout is DEFAULT_TIMEOUT else timeout
    if current is None or not _is_number(current) or float(current) >= needed:  # type: ignore[arg-type]
        return timeout
    if float(current) <= 0:  # type: ignore[arg-type]
        # 0 (or less) means "don't cache" (E025): never turn it into a positive TTL.
        return timeout
    if "timeout" in raw:
        report.warning(
            3,
            f"{setting_path(name, 'timeout')}: {current:g} s is shorter than refresh_interval "
            f"({interval:g} s) plus the longest a run may take (warmup_timeout, "
            f"{warmup_timeout:g} s): an entry could expire before the next refresh rewrote it, "
            f"so warmed entries are written with a TTL of {needed} s instead.",
            f"Set 'timeout' to {needed} or more to state it, or lower 'warmup_timeout' to the "
            f"longest a run really takes (the TTL becomes refresh_interval + warmup_timeout). "
            f"Add 'django_cachewarmers.W003' to SILENCED_SYSTEM_CHECKS to accept the {needed} s "
            f"TTL silently.",
        )
    return needed


def check_backend(
    report: Report, name: object, alias: str, strategy: WarmingStrategy, interval: float
) -> None:
    backend = _cache_backend(alias)
    if backend is None:
        return
    where = setting_path(name, "cache")
    if _is_backend(backend, _DUMMY):
        report.warning(
            2,
            f"{where}: cache {alias!r} is a DummyCache, which stores nothing: warming it loads "
            f"every value and throws it away.",
            "Point 'cache' at a real cache (LocMemCache, Redis, Memcached or DatabaseCache), "
            "remove the warmer, or add 'django_cachewarmers.W002' to SILENCED_SYSTEM_CHECKS "
            "where a DummyCache is intended (e.g. in development settings).",
        )
    elif strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE) and _is_backend(
        backend, _FILE_BASED
    ):
        report.warning(
            1,
            f"{where}: the {strategy.value} warmer uses cache {alias!r}, a FileBasedCache, "
            f"which cannot hold an atomic claim across processes (its add() is not atomic): "
            f"every server process may warm it every {interval:g} seconds instead of one.",
            "Use a shared cache with an atomic add() for scheduled and adaptive warmers: Redis "
            "(django.core.cache.backends.redis.RedisCache), Memcached (PyMemcacheCache) or the "
            "database cache (DatabaseCache); or make this warmer 'eager' or 'lazy'.",
        )
