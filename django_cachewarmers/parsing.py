"""The ``CACHE_WARMERS`` setting: each warmer's definition, parsed and validated.

``validate_warmers(raw)`` lists every problem of the whole setting as Django check messages and
never raises, whatever ``raw`` is. ``parse_warmer(name, raw)`` turns one definition into a
``WarmerSpec`` (or raises ``ImproperlyConfigured`` listing all its errors), and ``get_specs()``
returns every valid warmer of the current settings. Everything reads ``django.conf.settings`` at
call time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_cachewarmers.check_messages import (
    Report,
    describe_value,
    did_you_mean,
    error,
    error_text,
    format_message,
    internal_error,
    setting_path,
    short_repr,
)
from django_cachewarmers.conf import conf
from django_cachewarmers.core.config import (
    DEFAULT_TIMEOUT,
    ONE_YEAR_S,
    REFRESH_INTERVAL_RANGE,
    CacheTimeout,
    WarmingConfig,
    WarmingStrategy,
    is_int_at_least,
    number_problem,
)
from django_cachewarmers.spec import (
    ADAPTIVE_FIELDS,
    DEFAULTS,
    FIELDS,
    KEY_PART,
    AdaptiveKeys,
    WarmerSpec,
    refresh_ttl,
)

__all__ = ["get_specs", "parse_warmer", "validate_warmers"]

_INT_FIELDS: Final[dict[str, int]] = {"batch_size": 1, "max_workers": 1, "max_retries": 0}
# field -> must be > 0 (else >= 0)
_SECONDS_FIELDS: Final[dict[str, bool]] = {
    "refresh_interval": True,
    "warmup_timeout": True,
    "timeout_jitter": False,
    "retry_backoff": False,
}
#: Bounds of the fields that time a thread's sleep or a run: beyond them the scheduler's waits
#: overflow (or a tiny interval spins a thread), so they are errors here rather than tracebacks in
#: a background thread. field -> (smallest, largest) accepted value in seconds.
_SECONDS_LIMITS: Final[dict[str, tuple[float, float]]] = {
    "refresh_interval": REFRESH_INTERVAL_RANGE,
    "warmup_timeout": (0.0, ONE_YEAR_S),
}
_STRATEGIES = ", ".join(repr(s.value) for s in WarmingStrategy)
_TRACKER_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
_DUMMY = "django.core.cache.backends.dummy.DummyCache"
#: Django's default ``TIMEOUT`` of a cache in ``CACHES`` (``django.conf.global_settings`` has no
#: name for it; ``BaseCache`` uses 300 when the setting is absent).
_DJANGO_DEFAULT_TIMEOUT = 300
_ZERO_TIMEOUT_HINT = (
    "0 means don't cache; None means never expire. Give the TTL of warmed entries in seconds, "
    "None to never expire them, or leave 'timeout' out to use the cache's default timeout."
)


def validate_warmers(raw: object) -> list[checks.CheckMessage]:
    """Every problem (errors and warnings) of a ``CACHE_WARMERS`` value; never raises."""
    try:
        if not isinstance(raw, Mapping):
            return [
                error(
                    1,
                    f"CACHE_WARMERS: must be a dict mapping warmer names to their definitions, "
                    f"got {describe_value(raw)}.",
                    "Write CACHE_WARMERS = {'products': {'keys': 'myapp.warming.product_keys', "
                    "'batch_loader': 'myapp.warming.load_products'}}, or {} for no warmers.",
                )
            ]
        messages: list[checks.CheckMessage] = []
        for name, definition in list(raw.items()):
            messages.extend(_inspect_guarded(name, definition)[0])
        return messages
    except Exception as exc:
        return [internal_error("CACHE_WARMERS", exc)]


def parse_warmer(name: str, raw: object) -> WarmerSpec:
    """The ``WarmerSpec`` of one definition; ``ImproperlyConfigured`` lists all its errors."""
    messages, spec = _inspect_guarded(name, raw)
    if spec is None:
        errors = [m for m in messages if m.is_serious()] or messages
        raise ImproperlyConfigured("\n".join(format_message(m) for m in errors))
    return spec


def get_specs() -> dict[str, WarmerSpec]:
    """Every valid warmer of ``CACHE_WARMERS``, by name, in the setting's order.

    Invalid warmers are skipped (the system checks report them); ``parse_warmer`` gives the error
    of one.
    """
    raw = conf.CACHE_WARMERS
    specs: dict[str, WarmerSpec] = {}
    if not isinstance(raw, Mapping):
        return specs
    try:
        items = list(raw.items())
    except Exception:
        return specs
    for name, definition in items:
        spec = _inspect_guarded(name, definition)[1]
        if spec is not None:
            specs[spec.name] = spec
    return specs


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_hashable(value: object) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True


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


def _inspect_guarded(
    name: object, raw: object
) -> tuple[list[checks.CheckMessage], WarmerSpec | None]:
    try:
        return _inspect(name, raw)
    except Exception as exc:
        return [internal_error(setting_path(name), exc)], None


def _inspect(name: object, raw: object) -> tuple[list[checks.CheckMessage], WarmerSpec | None]:
    """All the messages of one warmer, and its spec if it has no error."""
    report = Report()
    name_ok = isinstance(name, str) and bool(KEY_PART.fullmatch(name))
    if not name_ok:
        report.error(
            2,
            f"{setting_path(name)}: a warmer's name must be a non-empty string without "
            "whitespace or "
            f"control characters, got {describe_value(name)}.",
            "Name each warmer with a string key, e.g. CACHE_WARMERS = {'products': {...}}; the "
            "name is part of cache keys, which cannot contain whitespace.",
        )
    if not isinstance(raw, Mapping):
        report.error(
            2,
            f"{setting_path(name)}: a warmer must be defined by a dict of fields, got "
            f"{describe_value(raw)}.",
            "Write e.g. {'keys': 'myapp.warming.product_keys', "
            "'batch_loader': 'myapp.warming.load_products'}. Valid fields: "
            + ", ".join(FIELDS)
            + ".",
        )
        return report.messages, None

    for field in raw:
        if isinstance(field, str) and field in FIELDS:
            continue
        if isinstance(field, str):
            msg = f"{setting_path(name, field)}: unknown field {field!r}."
        else:
            msg = (
                f"{setting_path(name, field)}: unknown field {short_repr(field)} (field "
                "names are strings)."
            )
        report.error(
            3,
            msg,
            did_you_mean(field, FIELDS) + "Valid fields: " + ", ".join(FIELDS) + ".",
        )

    keys = _parse_keys(report, name, raw)
    loader, batch_loader = _parse_loaders(report, name, raw)
    cache = _parse_cache(report, name, raw)
    strategy = _parse_strategy(report, name, raw)

    ints = {
        field: _parse_int(report, name, raw, field, minimum)
        for field, minimum in _INT_FIELDS.items()
    }
    seconds = {
        field: _parse_seconds(report, name, raw, field, positive=positive)
        for field, positive in _SECONDS_FIELDS.items()
    }
    timeout = _parse_timeout(report, name, raw)

    optional = raw.get("optional", DEFAULTS["optional"])
    if not isinstance(optional, bool):
        report.error(
            10,
            f"{setting_path(name, 'optional')}: must be True or False, got "
            f"{describe_value(optional)}.",
            "True: a failure of this warmer at startup is a warning; False (the default): an "
            "error, and a non-zero exit of warm_cache.",
        )

    if (
        strategy is WarmingStrategy.ADAPTIVE
        and keys is not None
        and not isinstance(keys, AdaptiveKeys)
    ):
        report.error(
            12,
            f"{setting_path(name, 'keys')}: the 'adaptive' strategy warms hot keys, but the "
            "keys are "
            f"not adaptive.",
            "Set 'keys' to 'adaptive' or {'adaptive': {'tracker': ..., 'threshold': ..., "
            "'limit': ...}}, or use the 'scheduled' strategy to refresh these keys on a schedule.",
        )

    if cache is not None and strategy is not None:
        _check_backend(report, name, cache, strategy, seconds["refresh_interval"])

    if report.has_errors or not name_ok or keys is None or cache is None or strategy is None:
        return report.messages, None
    if not isinstance(optional, bool) or not isinstance(name, str):  # narrowed for mypy
        return report.messages, None

    if strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE):
        timeout = _ttl_grace(
            report,
            name,
            raw,
            cache,
            timeout,
            float(seconds["refresh_interval"]),
            float(seconds["warmup_timeout"]),
        )

    retry_backoff = float(seconds["retry_backoff"])
    try:
        config = WarmingConfig(
            strategy=strategy,
            batch_size=ints["batch_size"],
            max_workers=ints["max_workers"],
            refresh_interval_s=float(seconds["refresh_interval"]),
            warmup_timeout_s=float(seconds["warmup_timeout"]),
            retry_on_failure=True,
            max_retries=ints["max_retries"],
            cache_timeout=timeout,
            timeout_jitter=float(seconds["timeout_jitter"]),
            retry_backoff_s=retry_backoff,
            retry_backoff_max_s=max(WarmingConfig.retry_backoff_max_s, retry_backoff),
        )
    except (ValueError, TypeError, OverflowError) as exc:
        report.error(
            9,
            f"{setting_path(name)}: invalid number ({error_text(exc)}).",
            "Fix the field named in the message; see docs/settings.md for each field's range.",
        )
        return report.messages, None

    spec = WarmerSpec(
        name=name,
        keys=keys,
        loader=loader,
        batch_loader=batch_loader,
        cache=cache,
        strategy=strategy,
        refresh_interval=float(seconds["refresh_interval"]),
        optional=optional,
        config=config,
        raw=raw,
    )
    return report.messages, spec


_KEYS_HINT = (
    "Give a list or tuple of keys, a function returning the keys (or its dotted path, e.g. "
    "'myapp.warming.product_keys'), 'adaptive', or {'adaptive': {'tracker': 'pages', "
    "'threshold': 5, 'limit': 100}}."
)


def _parse_keys(
    report: Report, name: object, raw: Mapping[Any, Any]
) -> Callable[[], Iterable[Hashable]] | tuple[Hashable, ...] | AdaptiveKeys | None:
    where = setting_path(name, "keys")
    if "keys" not in raw:
        report.error(7, f"{where}: missing; every warmer needs keys.", _KEYS_HINT)
        return None
    value = raw["keys"]
    if isinstance(value, str):
        if value == "adaptive":
            return AdaptiveKeys()
        return _resolve_callable(report, where, value, _KEYS_HINT)
    if isinstance(value, (list, tuple)):
        bad = [i for i, key in enumerate(value) if not _is_hashable(key)]
        if bad:
            shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            report.error(
                7,
                f"{where}: every key must be hashable; the keys at index {shown} are not "
                f"(e.g. {describe_value(value[bad[0]])}).",
                "Use strings (or numbers, or tuples of them) as cache keys.",
            )
            return None
        return tuple(value)
    if isinstance(value, AdaptiveKeys):
        options = {"tracker": value.tracker, "threshold": value.threshold, "limit": value.limit}
        return _parse_adaptive(report, where, options)
    if isinstance(value, Mapping):
        if "adaptive" not in value:
            report.error(
                7,
                f"{where}: a dict must be {{'adaptive': {{...}}}}, got {describe_value(value)}.",
                _KEYS_HINT,
            )
            return None
        extra = [k for k in value if k != "adaptive"]
        for key in extra:
            report.error(
                11,
                f"{where}[{short_repr(key)}]: unknown key beside 'adaptive'.",
                "Put the adaptive options inside: {'adaptive': {'tracker': 'pages', "
                "'threshold': 5, 'limit': 100}}.",
            )
        adaptive = _parse_adaptive(report, where, value["adaptive"])
        return None if extra else adaptive
    if callable(value):
        return value  # type: ignore[no-any-return]
    hint = _KEYS_HINT
    if isinstance(value, (set, frozenset)):
        hint = "Use a list or tuple of keys (a set has no order). " + hint
    report.error(7, f"{where}: invalid keys {describe_value(value)}.", hint)
    return None


def _parse_adaptive(report: Report, where: str, options: object) -> AdaptiveKeys | None:
    where = f"{where}['adaptive']"
    if not isinstance(options, Mapping):
        report.error(
            11,
            f"{where}: must be a dict of options, got {describe_value(options)}.",
            "Write {'adaptive': {}} for the defaults, or set some of: "
            + ", ".join(ADAPTIVE_FIELDS)
            + ".",
        )
        return None
    ok = True
    for field in options:
        if isinstance(field, str) and field in ADAPTIVE_FIELDS:
            continue
        ok = False
        report.error(
            11,
            f"{where}[{short_repr(field)}]: unknown adaptive option.",
            did_you_mean(field, ADAPTIVE_FIELDS)
            + "Valid options: "
            + ", ".join(ADAPTIVE_FIELDS)
            + ".",
        )
    tracker = options.get("tracker", AdaptiveKeys.tracker)
    if not isinstance(tracker, str) or not _TRACKER_NAME.fullmatch(tracker):
        ok = False
        report.error(
            11,
            f"{where}['tracker']: must be a tracker name (letters, digits, '_', '-', '.'), "
            f"got {describe_value(tracker)}.",
            "Name the access tracker whose hot keys are warmed (default 'pages').",
        )
    numbers: dict[str, int] = {}
    for field, default in (("threshold", AdaptiveKeys.threshold), ("limit", AdaptiveKeys.limit)):
        value = options.get(field, default)
        if not is_int_at_least(value, 1):
            ok = False
            report.error(
                11,
                f"{where}[{field!r}]: must be an integer >= 1, got {describe_value(value)}.",
                f"{ADAPTIVE_FIELDS[field]}",
            )
        else:
            numbers[field] = int(value)
    if not ok or not isinstance(tracker, str):
        return None
    return AdaptiveKeys(tracker=tracker, threshold=numbers["threshold"], limit=numbers["limit"])


def _resolve_callable(
    report: Report, where: str, value: object, hint: str
) -> Callable[..., Any] | None:
    if isinstance(value, str):
        try:
            obj = import_string(value)
        except Exception as exc:
            report.error(6, f"{where}: cannot import {value!r}: {error_text(exc)}.", hint)
            return None
        if not callable(obj):
            report.error(
                6, f"{where}: {value!r} is {describe_value(obj)}, which is not callable.", hint
            )
            return None
        return obj  # type: ignore[no-any-return]
    if callable(value):
        return value
    report.error(
        6, f"{where}: must be a callable or its dotted path, got {describe_value(value)}.", hint
    )
    return None


def _parse_loaders(
    report: Report, name: object, raw: Mapping[Any, Any]
) -> tuple[Callable[[Any], Any] | None, Callable[[list[Any]], Mapping[Any, Any]] | None]:
    loader_raw = raw.get("loader")
    batch_raw = raw.get("batch_loader")
    hint = (
        "'loader' is a callable(key) -> value; 'batch_loader' a callable(list_of_keys) -> "
        "{key: value} that loads a whole batch at once (e.g. with one query)."
    )
    if loader_raw is None and batch_raw is None:
        report.error(
            5,
            f"{setting_path(name)}: neither 'loader' nor 'batch_loader' is set; set exactly one.",
            hint,
        )
    elif loader_raw is not None and batch_raw is not None:
        report.error(
            5,
            f"{setting_path(name)}: both 'loader' and 'batch_loader' are set; set exactly one.",
            hint,
        )
    loader = batch_loader = None
    if loader_raw is not None:
        loader = _resolve_callable(
            report,
            setting_path(name, "loader"),
            loader_raw,
            "Give a function(key) -> value or its dotted path, e.g. 'myapp.warming.load_product'.",
        )
    if batch_raw is not None:
        batch_loader = _resolve_callable(
            report,
            setting_path(name, "batch_loader"),
            batch_raw,
            "Give a function(list_of_keys) -> {key: value} or its dotted path, e.g. "
            "'myapp.warming.load_products'.",
        )
    return loader, batch_loader


def _parse_cache(report: Report, name: object, raw: Mapping[Any, Any]) -> str | None:
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


def _parse_strategy(report: Report, name: object, raw: Mapping[Any, Any]) -> WarmingStrategy | None:
    value = raw.get("strategy", DEFAULTS["strategy"])
    if isinstance(value, str):
        try:
            return WarmingStrategy(value)
        except ValueError:
            pass
    choices = [s.value for s in WarmingStrategy]
    report.error(
        8,
        f"{setting_path(name, 'strategy')}: unknown strategy {describe_value(value)}.",
        did_you_mean(value.lower() if isinstance(value, str) else value, choices)
        + f"Use one of {_STRATEGIES} (default 'eager').",
    )
    return None


def _parse_int(
    report: Report, name: object, raw: Mapping[Any, Any], field: str, minimum: int
) -> int:
    default = DEFAULTS[field]
    assert isinstance(default, int)
    value = raw.get(field, default)
    if not is_int_at_least(value, minimum):
        report.error(
            9,
            f"{setting_path(name, field)}: must be an integer >= {minimum}, got "
            f"{describe_value(value)}.",
            f"{FIELDS[field]}",
        )
        return default
    return int(value)


def _parse_seconds(
    report: Report, name: object, raw: Mapping[Any, Any], field: str, *, positive: bool
) -> float:
    default = DEFAULTS[field]
    assert isinstance(default, float)
    value = raw.get(field, default)
    problem = number_problem(value, positive=positive)
    bound = "> 0" if positive else ">= 0"
    limits = _SECONDS_LIMITS.get(field)
    if limits is not None:
        smallest, largest = limits
        bound = f"{'>= ' + format(smallest, 'g') if smallest else '> 0'} and <= {largest:.0f}"
        if not problem and isinstance(value, (int, float)):
            if value < smallest:
                problem = f"below {smallest:g}"
            elif value > largest:
                problem = "over one year"
    if problem or not isinstance(value, (int, float)):
        report.error(
            9,
            f"{setting_path(name, field)}: must be a finite number {bound}, got "
            f"{describe_value(value)} "
            f"({problem}).",
            f"{FIELDS[field]}",
        )
        return default
    return value


def _parse_timeout(report: Report, name: object, raw: Mapping[Any, Any]) -> CacheTimeout:
    if "timeout" not in raw:
        return DEFAULT_TIMEOUT
    value = raw["timeout"]
    if value is None:
        return None
    problem = number_problem(value, positive=False)
    if problem or not isinstance(value, (int, float)):
        report.error(
            9,
            f"{setting_path(name, 'timeout')}: must be a finite number of seconds >= 0 or None, "
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


def _ttl_grace(
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


def _check_backend(
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
