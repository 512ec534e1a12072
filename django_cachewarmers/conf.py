"""The app's settings, read from ``django.conf.settings`` on every access.

Nothing is cached, so ``override_settings`` just works::

    from django_cachewarmers.conf import conf

    if conf.AUTOSTART:
        ...

The values are returned as the user set them: ``django_cachewarmers.spec`` validates them and the
system checks (``django_cachewarmers.checks``) report any problem.
"""

from __future__ import annotations

from django.conf import settings

__all__ = [
    "DEFAULT_AUTOSTART",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_METRICS_ALLOWED_IPS",
    "DEFAULT_PERSIST_INTERVAL",
    "DEFAULT_REWARM_QUEUE_SIZE",
    "DEFAULT_SNAPSHOT_CACHE",
    "DEFAULT_SNAPSHOT_INTERVAL",
    "DEFAULT_SNAPSHOT_SIZE",
    "DEFAULT_STARTUP_WINDOW",
    "DEFAULT_TRACKER_MAX_KEYS",
    "DEFAULT_TRACK_SAMPLE_RATE",
    "Settings",
    "conf",
]

DEFAULT_AUTOSTART = True
DEFAULT_HISTORY_LIMIT = 100
DEFAULT_STARTUP_WINDOW = 60.0
DEFAULT_KEY_PREFIX = "django_cachewarmers"
DEFAULT_TRACKER_MAX_KEYS = 10_000
DEFAULT_TRACK_SAMPLE_RATE = 1.0
DEFAULT_SNAPSHOT_CACHE = "default"
DEFAULT_SNAPSHOT_INTERVAL = 2.0
DEFAULT_SNAPSHOT_SIZE = 1000
DEFAULT_PERSIST_INTERVAL = 10.0
DEFAULT_REWARM_QUEUE_SIZE = 10_000
DEFAULT_METRICS_ALLOWED_IPS = ("127.0.0.1", "::1")


class Settings:
    """Typed, lazy accessors for the ``CACHE_WARMERS*`` settings."""

    @property
    def CACHE_WARMERS(self) -> object:
        """The ``CACHE_WARMERS`` setting as given (default ``{}``); see ``parsing.get_specs()``."""
        value: object = getattr(settings, "CACHE_WARMERS", {})
        return value

    @property
    def AUTOSTART(self) -> bool:
        """``CACHE_WARMERS_AUTOSTART``: warm and schedule the warmers when a server starts."""
        value: bool = getattr(settings, "CACHE_WARMERS_AUTOSTART", DEFAULT_AUTOSTART)
        return value

    @property
    def HISTORY_LIMIT(self) -> int:
        """``CACHE_WARMERS_HISTORY_LIMIT``: how many WarmingRun rows are kept per warmer (>= 1)."""
        value: int = getattr(settings, "CACHE_WARMERS_HISTORY_LIMIT", DEFAULT_HISTORY_LIMIT)
        return value

    @property
    def STARTUP_WINDOW(self) -> float:
        """``CACHE_WARMERS_STARTUP_WINDOW``: seconds within which starting workers warm once."""
        value: float = getattr(settings, "CACHE_WARMERS_STARTUP_WINDOW", DEFAULT_STARTUP_WINDOW)
        return value

    @property
    def KEY_PREFIX(self) -> str:
        """``CACHE_WARMERS_KEY_PREFIX``: prefix of the coordination keys this app writes."""
        value: str = getattr(settings, "CACHE_WARMERS_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        return value

    @property
    def TRACKER_MAX_KEYS(self) -> int:
        """``CACHE_WARMERS_TRACKER_MAX_KEYS``: keys each access tracker holds at most."""
        value: int = getattr(settings, "CACHE_WARMERS_TRACKER_MAX_KEYS", DEFAULT_TRACKER_MAX_KEYS)
        return value

    @property
    def TRACK_AUTHENTICATED(self) -> bool:
        """``CACHE_WARMERS_TRACK_AUTHENTICATED``: also count pages of signed-in users' requests."""
        value: bool = getattr(settings, "CACHE_WARMERS_TRACK_AUTHENTICATED", False)
        return value

    @property
    def TRACK_EXCLUDE(self) -> list[str] | None:
        """``CACHE_WARMERS_TRACK_EXCLUDE``: paths not counted (None: admin, static and media)."""
        value: list[str] | None = getattr(settings, "CACHE_WARMERS_TRACK_EXCLUDE", None)
        return value

    @property
    def TRACK_SAMPLE_RATE(self) -> float:
        """``CACHE_WARMERS_TRACK_SAMPLE_RATE``: the share of requests counted (0 to 1)."""
        value: float = getattr(
            settings, "CACHE_WARMERS_TRACK_SAMPLE_RATE", DEFAULT_TRACK_SAMPLE_RATE
        )
        return value

    @property
    def SNAPSHOT_CACHE(self) -> str:
        """``CACHE_WARMERS_SNAPSHOT_CACHE``: the shared cache where processes publish hot keys."""
        value: str = getattr(settings, "CACHE_WARMERS_SNAPSHOT_CACHE", DEFAULT_SNAPSHOT_CACHE)
        return value

    @property
    def SNAPSHOT_INTERVAL(self) -> float:
        """``CACHE_WARMERS_SNAPSHOT_INTERVAL``: seconds between a process's snapshots (0: off)."""
        value: float = getattr(
            settings, "CACHE_WARMERS_SNAPSHOT_INTERVAL", DEFAULT_SNAPSHOT_INTERVAL
        )
        return value

    @property
    def SNAPSHOT_SIZE(self) -> int:
        """``CACHE_WARMERS_SNAPSHOT_SIZE``: hot keys per published snapshot and persisted set."""
        value: int = getattr(settings, "CACHE_WARMERS_SNAPSHOT_SIZE", DEFAULT_SNAPSHOT_SIZE)
        return value

    @property
    def PERSIST_INTERVAL(self) -> float:
        """``CACHE_WARMERS_PERSIST_INTERVAL``: seconds between saves of the hot set (0: off)."""
        value: float = getattr(settings, "CACHE_WARMERS_PERSIST_INTERVAL", DEFAULT_PERSIST_INTERVAL)
        return value

    @property
    def REWARM_QUEUE_SIZE(self) -> int:
        """``CACHE_WARMERS_REWARM_QUEUE_SIZE``: changed keys a process holds to re-warm, at most."""
        value: int = getattr(settings, "CACHE_WARMERS_REWARM_QUEUE_SIZE", DEFAULT_REWARM_QUEUE_SIZE)
        return value

    @property
    def METRICS_TOKEN(self) -> str | None:
        """``CACHE_WARMERS_METRICS_TOKEN``: when set, ``django_cachewarmers.urls``' metrics view
        answers only requests with ``Authorization: Bearer <token>`` (default None)."""
        value: str | None = getattr(settings, "CACHE_WARMERS_METRICS_TOKEN", None)
        return value

    @property
    def METRICS_ALLOWED_IPS(self) -> list[str] | tuple[str, ...]:
        """``CACHE_WARMERS_METRICS_ALLOWED_IPS``: addresses or networks (CIDR) whose requests the
        metrics view answers (``REMOTE_ADDR``; default loopback only)."""
        value: list[str] | tuple[str, ...] = getattr(
            settings, "CACHE_WARMERS_METRICS_ALLOWED_IPS", DEFAULT_METRICS_ALLOWED_IPS
        )
        return value


conf = Settings()
