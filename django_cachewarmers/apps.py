"""Django application configuration for django_cachewarmers."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CacheWarmersConfig(AppConfig):
    """Registers the system checks and arms warming (at server start, or at the first request);
    nothing heavier."""

    name = "django_cachewarmers"
    verbose_name = _("Cache warmers")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_cachewarmers import autostart, checks  # noqa: F401  (checks register on import)

        autostart.arm()
