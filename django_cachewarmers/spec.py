"""The ``CACHE_WARMERS`` setting: each warmer's definition, parsed and validated.

``validate_warmers(raw)`` lists every problem of the whole setting as Django check messages and
never raises, whatever ``raw`` is. ``parse_warmer(name, raw)`` turns one definition into a
``WarmerSpec`` (or raises ``ImproperlyConfigured`` listing all its errors), and ``get_specs()``
returns every valid warmer of the current settings. ``validate_app_settings()`` checks the
``CACHE_WARMERS_*`` app settings. Everything reads ``django.conf.settings`` at call time.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_cachewarmers.conf import conf
from django_cachewarmers.config import (
    CACHE_DEFAULT,
    ONE_YEAR_S,
    REFRESH_INTERVAL_RANGE,
    CacheTimeout,
    WarmingConfig,
    WarmingStrategy,
)

__all__ = [
    "ADAPTIVE_FIELDS",
    "CHECK_IDS",
    "DEFAULTS",
    "FIELDS",
    "AdaptiveKeys",
    "WarmerSpec",
    "get_specs",
    "parse_warmer",
    "refresh_ttl",
    "validate_app_settings",
    "validate_warmers",
]

_ID = "django_cachewarmers."

#: Every check ID this app reports, with a one-line meaning (docs/checks.md has the fixes).
CHECK_IDS: Final[dict[str, str]] = {
    "django_cachewarmers.E001": "CACHE_WARMERS is not a dict.",
    "django_cachewarmers.E002": "A warmer's name is not a non-empty string without whitespace, or "
    "its definition is not a dict.",
    "django_cachewarmers.E003": "A warmer has an unknown field.",
    "django_cachewarmers.E004": "A warmer's 'cache' is not an alias in CACHES.",
    "django_cachewarmers.E005": "A warmer sets both or neither of 'loader' and 'batch_loader'.",
    "django_cachewarmers.E006": "A callable field (keys, loader, batch_loader) cannot be imported "
    "or is not callable.",
    "django_cachewarmers.E007": "A warmer's 'keys' is missing or invalid.",
    "django_cachewarmers.E008": "A warmer's 'strategy' is unknown.",
    "django_cachewarmers.E009": "A numeric field is not a valid number.",
    "django_cachewarmers.E010": "A warmer's 'optional' is not True or False.",
    "django_cachewarmers.E011": "A warmer's adaptive keys options are invalid.",
    "django_cachewarmers.E012": "An 'adaptive' warmer's keys are not adaptive.",
    "django_cachewarmers.E013": "CACHE_WARMERS_AUTOSTART is not True or False.",
    "django_cachewarmers.E014": "CACHE_WARMERS_HISTORY_LIMIT is not an integer >= 1.",
    "django_cachewarmers.E015": "CACHE_WARMERS_STARTUP_WINDOW is not a number > 0.",
    "django_cachewarmers.E016": "CACHE_WARMERS_KEY_PREFIX is not a non-empty string without "
    "whitespace.",
    "django_cachewarmers.E017": "The setting could not be validated at all.",
    "django_cachewarmers.E018": "CACHE_WARMERS_TRACKER_MAX_KEYS is not an integer >= 1.",
    "django_cachewarmers.E019": "CACHE_WARMERS_TRACK_AUTHENTICATED is not a bool.",
    "django_cachewarmers.E020": "CACHE_WARMERS_TRACK_EXCLUDE is not a list of valid regexes.",
    "django_cachewarmers.E021": "CACHE_WARMERS_TRACK_SAMPLE_RATE is not a number from 0 to 1.",
    "django_cachewarmers.E022": "CACHE_WARMERS_SNAPSHOT_CACHE is not an alias in CACHES.",
    "django_cachewarmers.E023": "CACHE_WARMERS_SNAPSHOT_INTERVAL or CACHE_WARMERS_PERSIST_INTERVAL "
    "is not a number >= 0.",
    "django_cachewarmers.E024": "CACHE_WARMERS_SNAPSHOT_SIZE is not an integer >= 1.",
    "django_cachewarmers.W001": "A scheduled or adaptive warmer uses a FileBasedCache, which "
    "cannot coordinate processes.",
    "django_cachewarmers.W002": "A warmer uses a DummyCache, which stores nothing.",
    "django_cachewarmers.E025": "A warmer's 'timeout' is 0 (Django: don't cache), or it is left "
    "out and its cache's own TIMEOUT is 0 or less.",
    "django_cachewarmers.W003": "A scheduled or adaptive warmer's 'timeout' is shorter than "
    "refresh_interval + warmup_timeout; its entries get the longer TTL.",
    "django_cachewarmers.W004": "A warmer's TTL ('timeout', or its cache's TIMEOUT) is between 0 "
    "and 1 second, which Redis and Memcached cannot store as given.",
}

#: Every field a warmer definition may have, with a one-line description.
FIELDS: Final[dict[str, str]] = {
    "keys": "Which keys to warm: a list or tuple of keys, a callable returning them (or its "
    "dotted path), 'adaptive', or {'adaptive': {...}} (required).",
    "loader": "callable(key) -> value, or its dotted path; give exactly one of loader and "
    "batch_loader.",
    "batch_loader": "callable(list_of_keys) -> {key: value}, or its dotted path; give exactly "
    "one of loader and batch_loader.",
    "cache": "Alias in CACHES of the cache to warm (default 'default').",
    "timeout": "TTL of warmed entries in seconds (> 0; 0 is E025), None = never expire; "
    "omitted = the cache's default timeout.",
    "timeout_jitter": "Each batch's TTL is up to this fraction longer (>= 0, default 0.0).",
    "strategy": "When the warmer runs: eager, lazy, scheduled or adaptive (default 'eager').",
    "refresh_interval": "Seconds between runs of a scheduled or adaptive warmer (> 0, "
    "default 300).",
    "batch_size": "Keys per batch load and per set_many (integer >= 1, default 100).",
    "max_workers": "Worker threads at most (integer >= 1, default 4).",
    "max_retries": "Retries of a failing key or batch after the first attempt (integer >= 0, "
    "default 3).",
    "warmup_timeout": "Deadline of one run in seconds (> 0, default 60).",
    "retry_backoff": "First retry delay in seconds (>= 0, default 0.1); each next one doubles.",
    "optional": "True: a failure at startup is a warning; False (default): an error.",
}

#: The options of ``{"adaptive": {...}}`` keys.
ADAPTIVE_FIELDS: Final[dict[str, str]] = {
    "tracker": "Name of the access tracker whose hot keys are warmed (default 'pages').",
    "threshold": "Minimum access count of a hot key (integer >= 1, default 5).",
    "limit": "Most keys warmed per run (integer >= 1, default 100).",
}

#: Defaults of the optional fields ("timeout" omitted means the cache's default timeout).
DEFAULTS: Final[dict[str, object]] = {
    "cache": "default",
    "timeout_jitter": 0.0,
    "strategy": "eager",
    "refresh_interval": 300.0,
    "batch_size": 100,
    "max_workers": 4,
    "max_retries": 3,
    "warmup_timeout": 60.0,
    "retry_backoff": 0.1,
    "optional": False,
}

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
# Part of a cache key: Memcached (and Django's key warnings) reject whitespace and controls.
_KEY_PART = re.compile(r"[^\s\x00-\x1f\x7f]+")
_FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
_DUMMY = "django.core.cache.backends.dummy.DummyCache"
#: Django's default ``TIMEOUT`` of a cache in ``CACHES`` (``django.conf.global_settings`` has no
#: name for it; ``BaseCache`` uses 300 when the setting is absent).
_DJANGO_DEFAULT_TIMEOUT = 300
_ZERO_TIMEOUT_HINT = (
    "0 means don't cache; None means never expire. Give the TTL of warmed entries in seconds, "
    "None to never expire them, or leave 'timeout' out to use the cache's default timeout."
)


@dataclass(frozen=True)
class AdaptiveKeys:
    """Keys chosen at run time: the hottest keys of the named access tracker."""

    tracker: str = "pages"
    threshold: int = 5
    limit: int = 100


@dataclass(frozen=True)
class WarmerSpec:
    """One valid warmer of ``CACHE_WARMERS``, with its callables resolved."""

    name: str
    #: A callable returning the keys, a tuple of keys, or ``AdaptiveKeys``.
    keys: Callable[[], Iterable[Hashable]] | tuple[Hashable, ...] | AdaptiveKeys
    #: Exactly one of ``loader`` and ``batch_loader`` is set.
    loader: Callable[[Any], Any] | None
    batch_loader: Callable[[list[Any]], Mapping[Any, Any]] | None
    cache: str
    strategy: WarmingStrategy
    refresh_interval: float
    optional: bool
    config: WarmingConfig
    #: The definition as the user gave it.
    raw: Mapping[str, Any]

    @property
    def is_scheduled(self) -> bool:
        """Whether the warmer runs every ``refresh_interval`` (scheduled and adaptive)."""
        return self.strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE)

    @property
    def warms_at_startup(self) -> bool:
        """Whether the warmer runs when a server starts (every strategy but lazy)."""
        return self.strategy is not WarmingStrategy.LAZY


# --------------------------------------------------------------------------- public functions


def validate_warmers(raw: object) -> list[checks.CheckMessage]:
    """Every problem (errors and warnings) of a ``CACHE_WARMERS`` value; never raises."""
    try:
        if not isinstance(raw, Mapping):
            return [
                _error(
                    1,
                    f"CACHE_WARMERS: must be a dict mapping warmer names to their definitions, "
                    f"got {_describe(raw)}.",
                    "Write CACHE_WARMERS = {'products': {'keys': 'myapp.warming.product_keys', "
                    "'batch_loader': 'myapp.warming.load_products'}}, or {} for no warmers.",
                )
            ]
        messages: list[checks.CheckMessage] = []
        for name, definition in list(raw.items()):
            messages.extend(_inspect_guarded(name, definition)[0])
        return messages
    except Exception as exc:
        return [_internal_error("CACHE_WARMERS", exc)]


def validate_app_settings() -> list[checks.CheckMessage]:
    """Problems of the ``CACHE_WARMERS_*`` app settings; never raises."""
    messages: list[checks.CheckMessage] = []
    try:
        # Typed as what the user may have set, not as what conf promises.
        autostart: object = conf.AUTOSTART
        if not isinstance(autostart, bool):
            messages.append(
                _error(
                    13,
                    f"CACHE_WARMERS_AUTOSTART: must be True or False, got {_describe(autostart)}.",
                    "Set CACHE_WARMERS_AUTOSTART = False to not warm when a server starts "
                    "(default True).",
                )
            )
        limit: object = conf.HISTORY_LIMIT
        if not _is_int_at_least(limit, 1):
            messages.append(
                _error(
                    14,
                    f"CACHE_WARMERS_HISTORY_LIMIT: must be an integer >= 1, "
                    f"got {_describe(limit)}.",
                    "It is how many WarmingRun rows are kept per warmer (default 100).",
                )
            )
        window: object = conf.STARTUP_WINDOW
        if _number_problem(window, positive=True):
            messages.append(
                _error(
                    15,
                    f"CACHE_WARMERS_STARTUP_WINDOW: must be a finite number of seconds > 0, "
                    f"got {_describe(window)}.",
                    "It is how many seconds apart server processes may start and still warm a "
                    "shared cache once (default 60.0).",
                )
            )
        prefix: object = conf.KEY_PREFIX
        if not isinstance(prefix, str) or not _KEY_PART.fullmatch(prefix):
            messages.append(
                _error(
                    16,
                    f"CACHE_WARMERS_KEY_PREFIX: must be a non-empty string without whitespace or "
                    f"control characters, got {_describe(prefix)}.",
                    "It prefixes the coordination keys this app writes into caches "
                    "(default 'django_cachewarmers'); Memcached rejects keys with whitespace.",
                )
            )
        messages.extend(_tracking_problems())
    except Exception as exc:
        messages.append(_internal_error("CACHE_WARMERS_*", exc))
    return messages


def _tracking_problems() -> list[checks.CheckMessage]:
    """Problems of the access-tracking, snapshot and persistence settings."""
    messages: list[checks.CheckMessage] = []
    max_keys: object = conf.TRACKER_MAX_KEYS
    if not _is_int_at_least(max_keys, 1):
        messages.append(
            _error(
                18,
                f"CACHE_WARMERS_TRACKER_MAX_KEYS: must be an integer >= 1, "
                f"got {_describe(max_keys)}.",
                "It bounds the memory of each access tracker (default 10000).",
            )
        )
    authenticated: object = conf.TRACK_AUTHENTICATED
    if not isinstance(authenticated, bool):
        messages.append(
            _error(
                19,
                f"CACHE_WARMERS_TRACK_AUTHENTICATED: must be True or False, "
                f"got {_describe(authenticated)}.",
                "Signed-in users' pages are personal: they are not counted by default.",
            )
        )
    exclude: object = conf.TRACK_EXCLUDE
    if exclude is not None:
        problem = None
        if not isinstance(exclude, (list, tuple)) or not all(isinstance(p, str) for p in exclude):
            problem = f"must be a list of regular expressions, got {_describe(exclude)}"
        else:
            for pattern in exclude:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problem = f"{pattern!r} is not a valid regular expression ({exc})"
                    break
        if problem:
            messages.append(
                _error(
                    20,
                    f"CACHE_WARMERS_TRACK_EXCLUDE: {problem}.",
                    "Give path regexes such as [r'^/admin/', r'^/static/'], or None for the "
                    "default (the admin, STATIC_URL and MEDIA_URL).",
                )
            )
    rate: object = conf.TRACK_SAMPLE_RATE
    if _number_problem(rate, positive=False) or (isinstance(rate, (int, float)) and rate > 1):
        messages.append(
            _error(
                21,
                f"CACHE_WARMERS_TRACK_SAMPLE_RATE: must be a number from 0 to 1, "
                f"got {_describe(rate)}.",
                "It is the share of requests the middleware counts (default 1.0: all).",
            )
        )
    alias: object = conf.SNAPSHOT_CACHE
    caches_setting = getattr(settings, "CACHES", {})
    # Only when set: a missing "default" cache is Django's own error (caches.E001).
    explicit = hasattr(settings, "CACHE_WARMERS_SNAPSHOT_CACHE")
    if explicit and (not isinstance(alias, str) or alias not in caches_setting):
        messages.append(
            _error(
                22,
                f"CACHE_WARMERS_SNAPSHOT_CACHE: unknown cache alias {_describe(alias)}.",
                "Use the alias of a cache all server processes share "
                f"(one of: {', '.join(map(repr, caches_setting))}).",
            )
        )
    for setting, value in (
        ("CACHE_WARMERS_SNAPSHOT_INTERVAL", conf.SNAPSHOT_INTERVAL),
        ("CACHE_WARMERS_PERSIST_INTERVAL", conf.PERSIST_INTERVAL),
    ):
        if _number_problem(value, positive=False):
            messages.append(
                _error(
                    23,
                    f"{setting}: must be a finite number of seconds >= 0, got {_describe(value)}.",
                    "0 turns it off.",
                )
            )
    size: object = conf.SNAPSHOT_SIZE
    if not _is_int_at_least(size, 1):
        messages.append(
            _error(
                24,
                f"CACHE_WARMERS_SNAPSHOT_SIZE: must be an integer >= 1, got {_describe(size)}.",
                "It is how many hot keys a process publishes and the hot set keeps (default 1000).",
            )
        )
    return messages


def parse_warmer(name: str, raw: object) -> WarmerSpec:
    """The ``WarmerSpec`` of one definition; ``ImproperlyConfigured`` lists all its errors."""
    messages, spec = _inspect_guarded(name, raw)
    if spec is None:
        errors = [m for m in messages if m.is_serious()] or messages
        raise ImproperlyConfigured("\n".join(_format(m) for m in errors))
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


# --------------------------------------------------------------------------- helpers

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 80
_repr.maxlong = 60


def _r(value: object) -> str:
    """A short repr that never raises."""
    try:
        return _repr.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _describe(value: object) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return _r(value)
    return f"{type(value).__name__} {_r(value)}"


def _text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = text.strip().rstrip(".")
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _where(name: object, *path: object) -> str:
    return f"CACHE_WARMERS[{_r(name)}]" + "".join(f"[{_r(p)}]" for p in path)


def _error(code: int, msg: str, hint: str) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=f"{_ID}E{code:03d}")


def _warning(code: int, msg: str, hint: str) -> checks.CheckMessage:
    return checks.Warning(msg, hint=hint, id=f"{_ID}W{code:03d}")


def _internal_error(where: str, exc: Exception) -> checks.CheckMessage:
    return _error(
        17,
        f"{where}: could not be validated ({_text(exc)}).",
        "Use plain dicts, lists and values in these settings. If they are plain, this is a bug "
        "in django-cachewarmers: please report it with the setting's value.",
    )


def _format(message: checks.CheckMessage) -> str:
    text = f"({message.id}) {message.msg}"
    if message.hint:
        text += f" HINT: {message.hint}"
    return text


def _did_you_mean(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"Did you mean {matches[0]!r}? " if matches else ""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int_at_least(value: object, minimum: int) -> bool:
    """An int (not a bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _number_problem(value: object, *, positive: bool) -> str:
    """Why ``value`` is not a finite number (> 0 if ``positive``, else >= 0); "" if it is."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "not a number"
    try:
        as_float = float(value)
    except OverflowError:
        return "too large"
    if not math.isfinite(as_float):
        return "not finite"
    if as_float < 0 or (positive and as_float == 0):
        return "not > 0" if positive else "negative"
    return ""


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


class _Report:
    def __init__(self) -> None:
        self.messages: list[checks.CheckMessage] = []

    def error(self, code: int, msg: str, hint: str) -> None:
        self.messages.append(_error(code, msg, hint))

    def warning(self, code: int, msg: str, hint: str) -> None:
        self.messages.append(_warning(code, msg, hint))

    @property
    def has_errors(self) -> bool:
        return any(m.is_serious() for m in self.messages)


def _inspect_guarded(
    name: object, raw: object
) -> tuple[list[checks.CheckMessage], WarmerSpec | None]:
    try:
        return _inspect(name, raw)
    except Exception as exc:
        return [_internal_error(_where(name), exc)], None


def _inspect(name: object, raw: object) -> tuple[list[checks.CheckMessage], WarmerSpec | None]:
    """All the messages of one warmer, and its spec if it has no error."""
    report = _Report()
    name_ok = isinstance(name, str) and bool(_KEY_PART.fullmatch(name))
    if not name_ok:
        report.error(
            2,
            f"{_where(name)}: a warmer's name must be a non-empty string without whitespace or "
            f"control characters, got {_describe(name)}.",
            "Name each warmer with a string key, e.g. CACHE_WARMERS = {'products': {...}}; the "
            "name is part of cache keys, which cannot contain whitespace.",
        )
    if not isinstance(raw, Mapping):
        report.error(
            2,
            f"{_where(name)}: a warmer must be defined by a dict of fields, got {_describe(raw)}.",
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
            msg = f"{_where(name, field)}: unknown field {field!r}."
        else:
            msg = f"{_where(name, field)}: unknown field {_r(field)} (field names are strings)."
        report.error(
            3,
            msg,
            _did_you_mean(field, FIELDS) + "Valid fields: " + ", ".join(FIELDS) + ".",
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
            f"{_where(name, 'optional')}: must be True or False, got {_describe(optional)}.",
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
            f"{_where(name, 'keys')}: the 'adaptive' strategy warms hot keys, but the keys are "
            f"not adaptive.",
            "Set 'keys' to 'adaptive' or {'adaptive': {'tracker': ..., 'threshold': ..., "
            "'limit': ...}}, or use the 'scheduled' strategy to refresh these keys on a schedule.",
        )

    if cache is not None and strategy is not None:
        _check_backend(report, name, cache, strategy, seconds["refresh_interval"])
    if cache is not None and strategy is not None:
        _check_timeout_value(report, name, cache, timeout, strategy)

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
            f"{_where(name)}: invalid number ({_text(exc)}).",
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
    report: _Report, name: object, raw: Mapping[Any, Any]
) -> Callable[[], Iterable[Hashable]] | tuple[Hashable, ...] | AdaptiveKeys | None:
    where = _where(name, "keys")
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
                f"(e.g. {_describe(value[bad[0]])}).",
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
                f"{where}: a dict must be {{'adaptive': {{...}}}}, got {_describe(value)}.",
                _KEYS_HINT,
            )
            return None
        extra = [k for k in value if k != "adaptive"]
        for key in extra:
            report.error(
                11,
                f"{where}[{_r(key)}]: unknown key beside 'adaptive'.",
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
    report.error(7, f"{where}: invalid keys {_describe(value)}.", hint)
    return None


def _parse_adaptive(report: _Report, where: str, options: object) -> AdaptiveKeys | None:
    where = f"{where}['adaptive']"
    if not isinstance(options, Mapping):
        report.error(
            11,
            f"{where}: must be a dict of options, got {_describe(options)}.",
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
            f"{where}[{_r(field)}]: unknown adaptive option.",
            _did_you_mean(field, ADAPTIVE_FIELDS)
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
            f"got {_describe(tracker)}.",
            "Name the access tracker whose hot keys are warmed (default 'pages').",
        )
    numbers: dict[str, int] = {}
    for field, default in (("threshold", AdaptiveKeys.threshold), ("limit", AdaptiveKeys.limit)):
        value = options.get(field, default)
        if not _is_int_at_least(value, 1):
            ok = False
            report.error(
                11,
                f"{where}[{field!r}]: must be an integer >= 1, got {_describe(value)}.",
                f"{ADAPTIVE_FIELDS[field]}",
            )
        else:
            numbers[field] = int(value)
    if not ok or not isinstance(tracker, str):
        return None
    return AdaptiveKeys(tracker=tracker, threshold=numbers["threshold"], limit=numbers["limit"])


def _resolve_callable(
    report: _Report, where: str, value: object, hint: str
) -> Callable[..., Any] | None:
    if isinstance(value, str):
        try:
            obj = import_string(value)
        except Exception as exc:
            report.error(6, f"{where}: cannot import {value!r}: {_text(exc)}.", hint)
            return None
        if not callable(obj):
            report.error(6, f"{where}: {value!r} is {_describe(obj)}, which is not callable.", hint)
            return None
        return obj  # type: ignore[no-any-return]
    if callable(value):
        return value
    report.error(
        6, f"{where}: must be a callable or its dotted path, got {_describe(value)}.", hint
    )
    return None


def _parse_loaders(
    report: _Report, name: object, raw: Mapping[Any, Any]
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
            f"{_where(name)}: neither 'loader' nor 'batch_loader' is set; set exactly one.",
            hint,
        )
    elif loader_raw is not None and batch_raw is not None:
        report.error(
            5,
            f"{_where(name)}: both 'loader' and 'batch_loader' are set; set exactly one.",
            hint,
        )
    loader = batch_loader = None
    if loader_raw is not None:
        loader = _resolve_callable(
            report,
            _where(name, "loader"),
            loader_raw,
            "Give a function(key) -> value or its dotted path, e.g. 'myapp.warming.load_product'.",
        )
    if batch_raw is not None:
        batch_loader = _resolve_callable(
            report,
            _where(name, "batch_loader"),
            batch_raw,
            "Give a function(list_of_keys) -> {key: value} or its dotted path, e.g. "
            "'myapp.warming.load_products'.",
        )
    return loader, batch_loader


def _parse_cache(report: _Report, name: object, raw: Mapping[Any, Any]) -> str | None:
    where = _where(name, "cache")
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
            f"{where}: must be an alias in CACHES (a string), got {_describe(value)}.",
            choices,
        )
        return None
    if value not in aliases:
        omitted = "" if "cache" in raw else " (the default when 'cache' is omitted)"
        report.error(
            4,
            f"{where}: unknown cache alias {value!r}{omitted}.",
            _did_you_mean(value, aliases) + choices,
        )
        return None
    return value


def _parse_strategy(
    report: _Report, name: object, raw: Mapping[Any, Any]
) -> WarmingStrategy | None:
    value = raw.get("strategy", DEFAULTS["strategy"])
    if isinstance(value, str):
        try:
            return WarmingStrategy(value)
        except ValueError:
            pass
    choices = [s.value for s in WarmingStrategy]
    report.error(
        8,
        f"{_where(name, 'strategy')}: unknown strategy {_describe(value)}.",
        _did_you_mean(value.lower() if isinstance(value, str) else value, choices)
        + f"Use one of {_STRATEGIES} (default 'eager').",
    )
    return None


def _parse_int(
    report: _Report, name: object, raw: Mapping[Any, Any], field: str, minimum: int
) -> int:
    default = DEFAULTS[field]
    assert isinstance(default, int)
    value = raw.get(field, default)
    if not _is_int_at_least(value, minimum):
        report.error(
            9,
            f"{_where(name, field)}: must be an integer >= {minimum}, got {_describe(value)}.",
            f"{FIELDS[field]}",
        )
        return default
    return int(value)


def _parse_seconds(
    report: _Report, name: object, raw: Mapping[Any, Any], field: str, *, positive: bool
) -> float:
    default = DEFAULTS[field]
    assert isinstance(default, float)
    value = raw.get(field, default)
    problem = _number_problem(value, positive=positive)
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
            f"{_where(name, field)}: must be a finite number {bound}, got {_describe(value)} "
            f"({problem}).",
            f"{FIELDS[field]}",
        )
        return default
    return value


def _parse_timeout(report: _Report, name: object, raw: Mapping[Any, Any]) -> CacheTimeout:
    if "timeout" not in raw:
        return CACHE_DEFAULT
    value = raw["timeout"]
    if value is None:
        return None
    problem = _number_problem(value, positive=False)
    if problem or not isinstance(value, (int, float)):
        report.error(
            9,
            f"{_where(name, 'timeout')}: must be a finite number of seconds > 0 or None, "
            f"got {_describe(value)} ({problem}).",
            "Give the TTL of warmed entries in seconds, None to never expire them, or leave "
            "'timeout' out to use the cache's default timeout.",
        )
        return CACHE_DEFAULT
    if value == 0:
        # Django's cache.set(key, value, 0) stores nothing (and deletes what was there): every
        # "warmed" key would be gone at once.
        report.error(
            25,
            f"{_where(name, 'timeout')}: 0 means don't cache: every warmed entry would expire "
            f"at once (and the value cached before would be deleted).",
            _ZERO_TIMEOUT_HINT,
        )
        return CACHE_DEFAULT
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


def _check_timeout_value(
    report: _Report, name: object, alias: str, timeout: CacheTimeout, strategy: WarmingStrategy
) -> None:
    """E025 for a cache ``TIMEOUT`` of 0 or less used by an omitted ``timeout``; W004 for a TTL
    between 0 and 1 second (explicit or the cache's), naming what the cache's backend does.

    W004 is a warning, not an error: Django accepts such a TTL and LocMem, database and file
    caches honour it exactly; only its use for warming is nearly always a unit mistake. A
    scheduled or adaptive warmer gets none: the TTL grace raises its TTL to whole seconds."""
    if timeout is CACHE_DEFAULT:
        current = _cache_default_timeout(alias)
        where = (
            f"{_where(name, 'timeout')}: left out, so the TIMEOUT of cache {alias!r} is used, "
            f"and CACHES[{alias!r}]['TIMEOUT'] is"
        )
    else:
        current = timeout
        where = f"{_where(name, 'timeout')}:"
    if current is None or current is CACHE_DEFAULT or not _is_number(current):
        return
    seconds = float(current)  # type: ignore[arg-type]
    if seconds <= 0 and timeout is CACHE_DEFAULT:
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
    """The ``TIMEOUT`` of ``CACHES[alias]`` (None: never expire); ``CACHE_DEFAULT`` if unknown."""
    caches = getattr(settings, "CACHES", None)
    options = caches.get(alias) if isinstance(caches, Mapping) else None
    if not isinstance(options, Mapping):
        return CACHE_DEFAULT
    value = options.get("TIMEOUT", _DJANGO_DEFAULT_TIMEOUT)
    if value is None or _is_number(value):
        return value  # type: ignore[no-any-return]
    return CACHE_DEFAULT


def refresh_ttl(refresh_interval: float, warmup_timeout: float) -> int:
    """The shortest TTL (whole seconds) that outlives one refresh: ``refresh_interval`` plus the
    longest a run may take (``warmup_timeout``), rounded up.

    An entry written by one run at ``start + d`` is rewritten by the next at ``start +
    refresh_interval + d'`` (the scheduler starts a run within one interval of the previous
    start); ``d`` and ``d'`` are at most ``warmup_timeout``. Whole seconds because Redis and
    Memcached truncate a TTL to an integer.
    """
    return math.ceil(refresh_interval + warmup_timeout)


def _ttl_grace(
    report: _Report,
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
    current = _cache_default_timeout(alias) if timeout is CACHE_DEFAULT else timeout
    if current is None or not _is_number(current) or float(current) >= needed:  # type: ignore[arg-type]
        return timeout
    if float(current) <= 0:  # type: ignore[arg-type]
        # 0 (or less) means "don't cache" (E025): never turn it into a positive TTL.
        return timeout
    if "timeout" in raw:
        report.warning(
            3,
            f"{_where(name, 'timeout')}: {current:g} s is shorter than refresh_interval "
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
    report: _Report, name: object, alias: str, strategy: WarmingStrategy, interval: float
) -> None:
    backend = _cache_backend(alias)
    if backend is None:
        return
    where = _where(name, "cache")
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
