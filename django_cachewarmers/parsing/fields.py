"""The fields of one warmer definition, one parser each: keys, loaders, strategy, numbers."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final

from django.utils.module_loading import import_string

from django_cachewarmers.check_messages import (
    Report,
    describe_value,
    did_you_mean,
    error_text,
    setting_path,
    short_repr,
)
from django_cachewarmers.core.config import (
    ONE_YEAR_S,
    REFRESH_INTERVAL_RANGE,
    WarmingStrategy,
    is_int_at_least,
    number_problem,
)
from django_cachewarmers.spec import (
    ADAPTIVE_FIELDS,
    DEFAULTS,
    FIELDS,
    AdaptiveKeys,
)

#: Bounds of the fields that time a thread's sleep or a run: beyond them the scheduler's waits
#: overflow (or a tiny interval spins a thread), so they are errors here rather than tracebacks in
#: a background thread. field -> (smallest, largest) accepted value in seconds.
_SECONDS_LIMITS: Final[dict[str, tuple[float, float]]] = {
    "refresh_interval": REFRESH_INTERVAL_RANGE,
    "warmup_timeout": (0.0, ONE_YEAR_S),
}
_STRATEGIES = ", ".join(repr(s.value) for s in WarmingStrategy)
_TRACKER_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


def _is_hashable(value: object) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True


_KEYS_HINT = (
    "Give a list or tuple of keys, a function returning the keys (or its dotted path, e.g. "
    "'myapp.warming.product_keys'), 'adaptive', {'adaptive': {'tracker': 'pages', "
    "'threshold': 5, 'limit': 100}}, or {'sitemap': 'myproject.urls.sitemaps'}."
)


def parse_keys(
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
        return parse_adaptive(report, where, options)
    if isinstance(value, Mapping):
        if "sitemap" in value:
            from django_cachewarmers.parsing.pages import parse_sitemap

            return parse_sitemap(report, where, value)
        if "adaptive" not in value:
            report.error(
                7,
                f"{where}: a dict must be {{'adaptive': {{...}}}} or {{'sitemap': ...}}, got "
                f"{describe_value(value)}.",
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
        adaptive = parse_adaptive(report, where, value["adaptive"])
        return None if extra else adaptive
    if callable(value):
        return value  # type: ignore[no-any-return]
    hint = _KEYS_HINT
    if isinstance(value, (set, frozenset)):
        hint = "Use a list or tuple of keys (a set has no order). " + hint
    report.error(7, f"{where}: invalid keys {describe_value(value)}.", hint)
    return None


def parse_adaptive(report: Report, where: str, options: object) -> AdaptiveKeys | None:
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


def parse_loaders(
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


def parse_strategy(report: Report, name: object, raw: Mapping[Any, Any]) -> WarmingStrategy | None:
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


def parse_int(
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


def parse_seconds(
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
