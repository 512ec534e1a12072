"""The ``CACHE_WARMERS`` setting: each warmer's definition, parsed and validated.

``validate_warmers(raw)`` lists every problem of the whole setting as Django check messages and
never raises, whatever ``raw`` is. ``parse_warmer(name, raw)`` turns one definition into a
``WarmerSpec`` (or raises ``ImproperlyConfigured`` listing all its errors), and ``get_specs()``
returns every valid warmer of the current settings. Everything reads ``django.conf.settings`` at
call time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

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
    WarmingConfig,
    WarmingStrategy,
)
from django_cachewarmers.parsing.caches import (
    check_backend,
    check_timeout_value,
    parse_cache,
    parse_timeout,
    ttl_grace,
)
from django_cachewarmers.parsing.fields import (
    parse_int,
    parse_keys,
    parse_loaders,
    parse_seconds,
    parse_strategy,
)
from django_cachewarmers.parsing.freshness import check_fresh_for, parse_fresh_for
from django_cachewarmers.parsing.pages import check_page_fields, parse_variants
from django_cachewarmers.parsing.rewarm import (
    check_rewarm_cache,
    parse_rewarm_delay,
    parse_rewarm_on,
)
from django_cachewarmers.parsing.via import parse_via
from django_cachewarmers.spec import (
    DEFAULTS,
    FIELDS,
    KEY_PART,
    AdaptiveKeys,
    WarmerSpec,
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

    keys = parse_keys(report, name, raw)
    loader, batch_loader = parse_loaders(report, name, raw)
    variants = parse_variants(report, name, raw)
    check_page_fields(report, name, raw, keys, loader)
    cache = parse_cache(report, name, raw)
    strategy = parse_strategy(report, name, raw)

    ints = {
        field: parse_int(report, name, raw, field, minimum)
        for field, minimum in _INT_FIELDS.items()
    }
    seconds = {
        field: parse_seconds(report, name, raw, field, positive=positive)
        for field, positive in _SECONDS_FIELDS.items()
    }
    timeout = parse_timeout(report, name, raw)
    via = parse_via(report, name, raw, cache, strategy)
    fresh_for = parse_fresh_for(report, name, raw)

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
        check_backend(report, name, cache, strategy, seconds["refresh_interval"])
        check_timeout_value(report, name, cache, timeout, strategy)

    rewarm_on = parse_rewarm_on(report, name, raw)
    rewarm_delay = parse_rewarm_delay(report, name, raw)
    if raw.get("rewarm_on"):
        has_loader = raw.get("loader") is not None or raw.get("batch_loader") is not None
        check_rewarm_cache(report, name, raw["rewarm_on"], has_loader, cache, loader)

    if report.has_errors or not name_ok or keys is None or cache is None or strategy is None:
        return report.messages, None
    if not isinstance(optional, bool) or not isinstance(name, str):  # narrowed for mypy
        return report.messages, None

    if strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE):
        timeout = ttl_grace(
            report,
            name,
            raw,
            cache,
            timeout,
            float(seconds["refresh_interval"]),
            float(seconds["warmup_timeout"]),
        )

    if not check_fresh_for(report, name, fresh_for, cache, timeout):
        return report.messages, None

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
        via=via,
        fresh_for=fresh_for,
        rewarm_on=rewarm_on,
        rewarm_delay=rewarm_delay,
        variants=variants,
    )
    return report.messages, spec
