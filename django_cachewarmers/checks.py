"""System checks of the ``CACHE_WARMERS`` settings, registered when this module is imported.

The app's ``AppConfig.ready()`` imports this module. Check IDs and their fixes are listed in
docs/checks.md (and in ``django_cachewarmers.spec.CHECK_IDS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Tags, register

from django_cachewarmers.conf import conf
from django_cachewarmers.spec import validate_app_settings, validate_warmers

__all__ = ["check_cache_warmers"]


@register(Tags.caches)
def check_cache_warmers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every problem of ``CACHE_WARMERS`` and the ``CACHE_WARMERS_*`` app settings."""
    return [*validate_warmers(conf.CACHE_WARMERS), *validate_app_settings()]
