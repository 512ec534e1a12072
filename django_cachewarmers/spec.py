"""A warmer of the ``CACHE_WARMERS`` setting, as the rest of the app sees it once parsed.

``WarmerSpec`` is one valid warmer with its callables resolved; ``FIELDS`` and ``DEFAULTS`` say
what a definition may hold (``parsing`` turns definitions into specs, ``checks`` reports problems).
The numeric defaults are the engine's own (``WarmingConfig``, the hot-key providers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from django_cachewarmers.core.config import WarmingConfig, WarmingStrategy
from django_cachewarmers.core.providers import DEFAULT_LIMIT, DEFAULT_THRESHOLD

__all__ = [
    "ADAPTIVE_FIELDS",
    "DEFAULTS",
    "FIELDS",
    "KEY_PART",
    "SITEMAP_FIELDS",
    "VIAS",
    "AdaptiveKeys",
    "Variant",
    "WarmerSpec",
    "refresh_ttl",
]

_ENGINE = WarmingConfig()

# Part of a cache key: Memcached (and Django's key warnings) reject whitespace and controls.
KEY_PART = re.compile(r"[^\s\x00-\x1f\x7f]+")

#: Every field a warmer definition may have, with a one-line description.
FIELDS: Final[dict[str, str]] = {
    "keys": "Which keys to warm: a list or tuple of keys, a callable returning them (or its "
    "dotted path), 'adaptive', {'adaptive': {...}}, or {'sitemap': ...} (required).",
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
    "via": "Where scheduled and startup runs warm: 'local' (default, in the server process), "
    "'tasks' (enqueued on Django's Tasks framework) or 'celery' (fanned out over Celery workers).",
    "fresh_for": "Seconds an entry counts as fresh for get(); an older one is served at once "
    "while one background refresh reloads it (stale-while-revalidate). A number > 0 and less "
    "than the entries' TTL; default None: get() is a plain read-through.",
    "rewarm_on": "{model label: callable(instance) -> keys, or its dotted path}: when an instance "
    "of the model is saved, its keys are rewritten in place after the commit; when it is deleted, "
    "they are deleted (default: none).",
    "rewarm_delay": "Seconds the changed keys of a batch are collected from its first change "
    "before they are re-warmed together (>= 0, default 1.0).",
    "variants": "Page warmers (render_page): the request headers to render each page with, a "
    "list of dicts such as [{}, {'Accept-Encoding': 'gzip'}] (default [{}]: the plain page).",
}

#: The options of ``{"adaptive": {...}}`` keys.
ADAPTIVE_FIELDS: Final[dict[str, str]] = {
    "tracker": "Name of the access tracker whose hot keys are warmed (default 'pages').",
    "threshold": "Minimum access count of a hot key (integer >= 1, default 5).",
    "limit": "Most keys warmed per run (integer >= 1, default 100).",
}

#: The options of ``{"sitemap": {...}}`` keys (``sitemaps.SitemapKeys``).
SITEMAP_FIELDS: Final[dict[str, str]] = {
    "sitemaps": "Dotted path of the dict of django.contrib.sitemaps.Sitemap classes (or the dict "
    "itself), as passed to the sitemap view (required).",
    "limit": "Most URLs warmed, highest priority first (integer >= 1; default None: all).",
    "domain": "Host of the URLs; required without django.contrib.sites and SITE_ID (default: "
    "the current Site's domain).",
    "protocol": "'http' or 'https' (default: each sitemap's own protocol, else 'https').",
}

#: A page variant: sorted ``(request header, value)`` pairs; ``()`` is the plain page.
Variant = tuple[tuple[str, str], ...]

#: Defaults of the optional fields ("timeout" omitted means the cache's default timeout).
DEFAULTS: Final[dict[str, object]] = {
    "cache": "default",
    "timeout_jitter": _ENGINE.timeout_jitter,
    "strategy": _ENGINE.strategy.value,
    "refresh_interval": _ENGINE.refresh_interval_s,
    "batch_size": _ENGINE.batch_size,
    "max_workers": _ENGINE.max_workers,
    "max_retries": _ENGINE.max_retries,
    "warmup_timeout": _ENGINE.warmup_timeout_s,
    "retry_backoff": _ENGINE.retry_backoff_s,
    "optional": False,
    "via": "local",
    "fresh_for": None,
    "rewarm_delay": 1.0,
}

#: The values of a warmer's ``via``: where its scheduled and startup runs warm.
VIAS: Final[tuple[str, ...]] = ("local", "tasks", "celery")


@dataclass(frozen=True)
class AdaptiveKeys:
    """Keys chosen at run time: the hottest keys of the named access tracker."""

    tracker: str = "pages"
    threshold: int = DEFAULT_THRESHOLD
    limit: int = DEFAULT_LIMIT


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
    #: Where scheduled and startup runs warm: "local", "tasks" or "celery" (one of ``VIAS``).
    via: str = "local"
    #: Seconds an entry counts as fresh for ``get`` (None: no stale-while-revalidate).
    fresh_for: float | None = None
    #: ``rewarm_on``: model label (``"shop.Product"``) -> callable(instance) returning its keys.
    rewarm_on: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    #: ``rewarm_delay``: seconds changed keys are collected from a batch's first change.
    rewarm_delay: float = 1.0
    #: A page warmer's variants: the request headers each page is rendered with.
    variants: tuple[Variant, ...] = ((),)

    @property
    def is_scheduled(self) -> bool:
        """Whether the warmer runs every ``refresh_interval`` (scheduled and adaptive)."""
        return self.strategy in (WarmingStrategy.SCHEDULED, WarmingStrategy.ADAPTIVE)

    @property
    def warms_at_startup(self) -> bool:
        """Whether the warmer runs when a server starts (every strategy but lazy)."""
        return self.strategy is not WarmingStrategy.LAZY


def refresh_ttl(refresh_interval: float, warmup_timeout: float) -> int:
    """The shortest TTL (whole seconds) that outlives one refresh: ``refresh_interval`` plus the
    longest a run may take (``warmup_timeout``), rounded up.

    An entry written by one run at ``start + d`` is rewritten by the next at ``start +
    refresh_interval + d'`` (the scheduler starts a run within one interval of the previous
    start); ``d`` and ``d'`` are at most ``warmup_timeout``. Whole seconds because Redis and
    Memcached truncate a TTL to an integer.
    """
    return math.ceil(refresh_interval + warmup_timeout)
