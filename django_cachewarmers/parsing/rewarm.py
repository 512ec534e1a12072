"""A warmer's re-warm-on-change fields, ``rewarm_on`` and ``rewarm_delay``, and the app setting
``CACHE_WARMERS_REWARM_QUEUE_SIZE`` (``django_cachewarmers.rewarming`` acts on them)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, Final

from django.apps import apps
from django.core import checks
from django.core.exceptions import AppRegistryNotReady
from django.db.models import Model
from django.utils.module_loading import import_string

from django_cachewarmers.check_messages import (
    Report,
    describe_value,
    error,
    error_text,
    setting_path,
    short_repr,
)
from django_cachewarmers.conf import conf
from django_cachewarmers.core.config import ONE_YEAR_S, is_int_at_least, number_problem
from django_cachewarmers.parsing.caches import _cache_backend, _is_backend
from django_cachewarmers.spec import DEFAULTS, FIELDS

__all__ = [
    "check_rewarm_cache",
    "parse_rewarm_delay",
    "parse_rewarm_on",
    "resolve_model",
    "rewarm_setting_problems",
]

_LOCMEM: Final = "django.core.cache.backends.locmem.LocMemCache"
_EXAMPLE = "{'shop.Product': 'shop.warming.product_keys_for'}"
_KEYS_FOR_HINT = (
    "Give a function(instance) -> iterable of this warmer's keys for that instance, or its dotted "
    "path, e.g. 'shop.warming.product_keys_for' returning [f'product:{instance.pk}']."
)


def resolve_model(label: str) -> type[Model] | None:
    """The installed model ``label`` (``"app_label.ModelName"``, the model name in any case)
    names, or None.

    Raises ``AppRegistryNotReady`` before the models are loaded.
    """
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def parse_rewarm_on(
    report: Report, name: object, raw: Mapping[Any, Any]
) -> dict[str, Callable[[Any], Any]]:
    """``rewarm_on`` as {the model's label: callable(instance)}; every problem reported.

    E040: not a dict, or a key that is not a string; E041: a label that names no installed model;
    E042: a callable that cannot be imported or is not callable. Labels are given as
    ``"app_label.ModelName"`` (``Model._meta.label``; the model name in any case) and kept as
    the model's own label.
    """
    if "rewarm_on" not in raw or raw["rewarm_on"] is None:
        return {}
    where = setting_path(name, "rewarm_on")
    value = raw["rewarm_on"]
    if not isinstance(value, Mapping):
        report.error(
            40,
            f"{where}: must be a dict mapping model labels to callables, got "
            f"{describe_value(value)}.",
            f"Write e.g. 'rewarm_on': {_EXAMPLE}: when a Product is saved, the keys that function "
            "returns for it are re-warmed.",
        )
        return {}
    parsed: dict[str, Callable[[Any], Any]] = {}
    for label, keys_for in value.items():
        at = f"{where}[{short_repr(label)}]"
        if not isinstance(label, str):
            report.error(
                40,
                f"{at}: a model label must be a string 'app_label.ModelName', got "
                f"{describe_value(label)}.",
                f"Write e.g. 'rewarm_on': {_EXAMPLE}.",
            )
            continue
        model_label = _model_label(report, at, label)
        function = _keys_for(report, at, keys_for)
        if model_label is not None and function is not None:
            parsed[model_label] = function
    return parsed


def _model_label(report: Report, at: str, label: str) -> str | None:
    try:
        model = resolve_model(label)
    except AppRegistryNotReady:
        return label  # checked again by the system checks, which run once the models are loaded
    if model is not None:
        return str(model._meta.label)
    # Labels match without regard to case: suggest the closest one, in the model's own spelling.
    lowered = {str(m._meta.label).lower(): str(m._meta.label) for m in apps.get_models()}
    close = difflib.get_close_matches(label.lower(), list(lowered), n=1, cutoff=0.6)
    suggestion = f"Did you mean {lowered[close[0]]!r}? " if close else ""
    report.error(
        41,
        f"{at}: unknown model label {label!r}: no installed model has it.",
        suggestion + "Use 'app_label.ModelName' of a model in INSTALLED_APPS (its "
        "Model._meta.label), e.g. 'shop.Product'.",
    )
    return None


def _keys_for(report: Report, at: str, value: object) -> Callable[[Any], Any] | None:
    if isinstance(value, str):
        try:
            obj = import_string(value)
        except Exception as exc:
            report.error(42, f"{at}: cannot import {value!r}: {error_text(exc)}.", _KEYS_FOR_HINT)
            return None
        if not callable(obj):
            report.error(
                42,
                f"{at}: {value!r} is {describe_value(obj)}, which is not callable.",
                _KEYS_FOR_HINT,
            )
            return None
        return obj  # type: ignore[no-any-return]
    if callable(value):
        return value
    report.error(
        42,
        f"{at}: must be a callable or its dotted path, got {describe_value(value)}.",
        _KEYS_FOR_HINT,
    )
    return None


def parse_rewarm_delay(report: Report, name: object, raw: Mapping[Any, Any]) -> float:
    """``rewarm_delay`` in seconds: a finite number from 0 to one year (E009 otherwise)."""
    default = DEFAULTS["rewarm_delay"]
    assert isinstance(default, float)
    value = raw.get("rewarm_delay", default)
    problem = number_problem(value, positive=False)
    if not problem and isinstance(value, (int, float)) and value > ONE_YEAR_S:
        problem = "over one year"
    if problem or not isinstance(value, (int, float)):
        report.error(
            9,
            f"{setting_path(name, 'rewarm_delay')}: must be a finite number >= 0 and <= "
            f"{ONE_YEAR_S:.0f}, got {describe_value(value)} ({problem}).",
            FIELDS["rewarm_delay"],
        )
        return default
    return float(value)


def check_rewarm_cache(
    report: Report,
    name: object,
    rewarm_on: object,
    has_loader: bool,
    cache: str | None,
    loader: object,
) -> None:
    """E043: ``rewarm_on`` without a loader; W010: a per-process cache. (A page warmer may have
    ``rewarm_on``: ``render_page`` renders a cached page again in place.)"""
    if not isinstance(rewarm_on, Mapping) or not rewarm_on:  # E040 reports a bad value
        return
    where = setting_path(name, "rewarm_on")
    labels = ", ".join(repr(label) for label in rewarm_on)
    if not has_loader:
        report.error(
            43,
            f"{where}: the warmer re-warms on changes of {labels} but has no 'loader' or "
            "'batch_loader' to load the changed keys with.",
            "Set 'batch_loader' (a callable(list_of_keys) -> {key: value}, one query for a "
            "whole batch of changes) or 'loader' (a callable(key) -> value).",
        )
    backend = _cache_backend(cache) if cache is not None else None
    if backend is not None and _is_backend(backend, _LOCMEM):
        report.warning(
            10,
            f"{where}: cache {cache!r} is a LocMemCache, one per process: a change of {labels} "
            "is re-warmed only in the process that saved it; every other process keeps serving "
            "its own copy until its next refresh or the entry's TTL.",
            "Use a cache all processes share (Redis, Memcached or DatabaseCache). With a single "
            "process (runserver, one worker) this is what you want: add "
            "'django_cachewarmers.W010' to SILENCED_SYSTEM_CHECKS.",
        )


def rewarm_setting_problems() -> list[checks.CheckMessage]:
    """E044: ``CACHE_WARMERS_REWARM_QUEUE_SIZE`` is not an int >= 1."""
    size: object = conf.REWARM_QUEUE_SIZE
    if is_int_at_least(size, 1):
        return []
    return [
        error(
            44,
            "CACHE_WARMERS_REWARM_QUEUE_SIZE: must be an integer >= 1, got "
            f"{describe_value(size)}.",
            "It bounds how many changed keys a process holds waiting to be re-warmed "
            "(default 10000); changes beyond it are logged and left to the next scheduled run.",
        )
    ]
