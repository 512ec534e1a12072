"""System checks of the ``CACHE_WARMERS`` settings, registered when this module is imported.

The app's ``AppConfig.ready()`` imports this module. Check IDs and their fixes are listed in
docs/checks.md (and in ``django_cachewarmers.check_messages.CHECK_IDS``): ``parsing`` reports the
problems of each warmer, this module those of the ``CACHE_WARMERS_*`` app settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, register

from django_cachewarmers.check_messages import describe_value, error, internal_error
from django_cachewarmers.conf import conf
from django_cachewarmers.core.config import is_int_at_least, number_problem
from django_cachewarmers.parsing import validate_warmers
from django_cachewarmers.parsing.rewarm import rewarm_setting_problems
from django_cachewarmers.spec import KEY_PART

__all__ = ["check_cache_warmers", "validate_app_settings"]


@register(Tags.caches)
def check_cache_warmers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every problem of ``CACHE_WARMERS`` and the ``CACHE_WARMERS_*`` app settings."""
    return [*validate_warmers(conf.CACHE_WARMERS), *validate_app_settings()]


def validate_app_settings() -> list[CheckMessage]:
    """Problems of the ``CACHE_WARMERS_*`` app settings; never raises."""
    messages: list[CheckMessage] = []
    try:
        # Typed as what the user may have set, not as what conf promises.
        autostart: object = conf.AUTOSTART
        if not isinstance(autostart, bool):
            messages.append(
                error(
                    13,
                    "CACHE_WARMERS_AUTOSTART: must be True or False, got "
                    f"{describe_value(autostart)}.",
                    "Set CACHE_WARMERS_AUTOSTART = False to not warm when a server starts "
                    "(default True).",
                )
            )
        limit: object = conf.HISTORY_LIMIT
        if not is_int_at_least(limit, 1):
            messages.append(
                error(
                    14,
                    f"CACHE_WARMERS_HISTORY_LIMIT: must be an integer >= 1, "
                    f"got {describe_value(limit)}.",
                    "It is how many WarmingRun rows are kept per warmer (default 100).",
                )
            )
        window: object = conf.STARTUP_WINDOW
        if number_problem(window, positive=True):
            messages.append(
                error(
                    15,
                    f"CACHE_WARMERS_STARTUP_WINDOW: must be a finite number of seconds > 0, "
                    f"got {describe_value(window)}.",
                    "It is how many seconds apart server processes may start and still warm a "
                    "shared cache once (default 60.0).",
                )
            )
        prefix: object = conf.KEY_PREFIX
        if not isinstance(prefix, str) or not KEY_PART.fullmatch(prefix):
            messages.append(
                error(
                    16,
                    f"CACHE_WARMERS_KEY_PREFIX: must be a non-empty string without whitespace or "
                    f"control characters, got {describe_value(prefix)}.",
                    "It prefixes the coordination keys this app writes into caches "
                    "(default 'django_cachewarmers'); Memcached rejects keys with whitespace.",
                )
            )
        messages.extend(_tracking_problems())
        messages.extend(rewarm_setting_problems())
        messages.extend(_metrics_problems())
    except Exception as exc:
        messages.append(internal_error("CACHE_WARMERS_*", exc))
    return messages


#: A bearer token as RFC 6750 (section 2.1) spells it (``b64token``).
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _metrics_problems() -> list[CheckMessage]:
    """Problems of the settings of the Prometheus exposition view (``django_cachewarmers.urls``)."""
    messages: list[CheckMessage] = []
    token: object = conf.METRICS_TOKEN
    if token is not None and (not isinstance(token, str) or not BEARER_TOKEN.fullmatch(token)):
        messages.append(
            error(
                45,
                "CACHE_WARMERS_METRICS_TOKEN: must be None or a bearer token (RFC 6750: letters, "
                f"digits and -._~+/, then '=' padding), got {describe_value(token)}.",
                "Scrapers then send 'Authorization: Bearer <token>'; read it from the "
                "environment, e.g. os.environ['METRICS_TOKEN'] (default None: no token).",
            )
        )
    allowed: object = conf.METRICS_ALLOWED_IPS
    problem = None
    if not isinstance(allowed, (list, tuple)) or not all(isinstance(a, str) for a in allowed):
        problem = f"must be a list of IP addresses or networks, got {describe_value(allowed)}"
    else:
        for entry in allowed:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                problem = f"{entry!r} is not an IP address or network ({exc})"
                break
    if problem:
        messages.append(
            error(
                46,
                f"CACHE_WARMERS_METRICS_ALLOWED_IPS: {problem}.",
                "Give addresses or CIDR networks of the scrapers, e.g. ['127.0.0.1', "
                "'10.0.0.0/8'] (default: loopback only).",
            )
        )
    return messages


def _tracking_problems() -> list[CheckMessage]:
    """Problems of the access-tracking, snapshot and persistence settings."""
    messages: list[CheckMessage] = []
    max_keys: object = conf.TRACKER_MAX_KEYS
    if not is_int_at_least(max_keys, 1):
        messages.append(
            error(
                18,
                f"CACHE_WARMERS_TRACKER_MAX_KEYS: must be an integer >= 1, "
                f"got {describe_value(max_keys)}.",
                "It bounds the memory of each access tracker (default 10000).",
            )
        )
    authenticated: object = conf.TRACK_AUTHENTICATED
    if not isinstance(authenticated, bool):
        messages.append(
            error(
                19,
                f"CACHE_WARMERS_TRACK_AUTHENTICATED: must be True or False, "
                f"got {describe_value(authenticated)}.",
                "Signed-in users' pages are personal: they are not counted by default.",
            )
        )
    exclude: object = conf.TRACK_EXCLUDE
    if exclude is not None:
        problem = None
        if not isinstance(exclude, (list, tuple)) or not all(isinstance(p, str) for p in exclude):
            problem = f"must be a list of regular expressions, got {describe_value(exclude)}"
        else:
            for pattern in exclude:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problem = f"{pattern!r} is not a valid regular expression ({exc})"
                    break
        if problem:
            messages.append(
                error(
                    20,
                    f"CACHE_WARMERS_TRACK_EXCLUDE: {problem}.",
                    "Give path regexes such as [r'^/admin/', r'^/static/'], or None for the "
                    "default (the admin, STATIC_URL and MEDIA_URL).",
                )
            )
    rate: object = conf.TRACK_SAMPLE_RATE
    if number_problem(rate, positive=False) or (isinstance(rate, (int, float)) and rate > 1):
        messages.append(
            error(
                21,
                f"CACHE_WARMERS_TRACK_SAMPLE_RATE: must be a number from 0 to 1, "
                f"got {describe_value(rate)}.",
                "It is the share of requests the middleware counts (default 1.0: all).",
            )
        )
    alias: object = conf.SNAPSHOT_CACHE
    caches_setting = getattr(settings, "CACHES", {})
    # Only when set: a missing "default" cache is Django's own error (caches.E001).
    explicit = hasattr(settings, "CACHE_WARMERS_SNAPSHOT_CACHE")
    if explicit and (not isinstance(alias, str) or alias not in caches_setting):
        messages.append(
            error(
                22,
                f"CACHE_WARMERS_SNAPSHOT_CACHE: unknown cache alias {describe_value(alias)}.",
                "Use the alias of a cache all server processes share "
                f"(one of: {', '.join(map(repr, caches_setting))}).",
            )
        )
    for setting, value in (
        ("CACHE_WARMERS_SNAPSHOT_INTERVAL", conf.SNAPSHOT_INTERVAL),
        ("CACHE_WARMERS_PERSIST_INTERVAL", conf.PERSIST_INTERVAL),
    ):
        if number_problem(value, positive=False):
            messages.append(
                error(
                    23,
                    f"{setting}: must be a finite number of seconds >= 0, got "
                    f"{describe_value(value)}.",
                    "0 turns it off.",
                )
            )
    size: object = conf.SNAPSHOT_SIZE
    if not is_int_at_least(size, 1):
        messages.append(
            error(
                24,
                "CACHE_WARMERS_SNAPSHOT_SIZE: must be an integer >= 1, got "
                f"{describe_value(size)}.",
                "It is how many hot keys a process publishes and the hot set keeps (default 1000).",
            )
        )
    return messages
