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
    "DEFAULT_STARTUP_WINDOW",
    "Settings",
    "conf",
]

DEFAULT_AUTOSTART = True
DEFAULT_HISTORY_LIMIT = 100
DEFAULT_STARTUP_WINDOW = 60.0
DEFAULT_KEY_PREFIX = "django_cachewarmers"


class Settings:
    """Typed, lazy accessors for the ``CACHE_WARMERS*`` settings."""

    @property
    def CACHE_WARMERS(self) -> object:
        """The ``CACHE_WARMERS`` setting as given (default ``{}``); see ``spec.get_specs()``."""
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


conf = Settings()
