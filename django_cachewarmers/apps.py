"""Django application configuration for django_cachewarmers."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CacheWarmersConfig(AppConfig):
    """Registers the system checks and the cache backends' adapters, and arms warming (at server
    start, or at the first request); nothing heavier."""

    name = "django_cachewarmers"
    verbose_name = _("Cache warmers")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks register on import; the publisher starts with the process's first tracker.
        from django_cachewarmers import (  # noqa: F401
            autostart,
            backends,
            checks,
            metrics,
            publisher,
            rewarming,
        )

        backends.register()  # the engine's adapters for Django's cache backends
        metrics.connect()  # Prometheus counters of runs, when prometheus_client is installed
        autostart.arm()
        rewarming.connect()  # post_save/post_delete of the models in rewarm_on (idempotent)
