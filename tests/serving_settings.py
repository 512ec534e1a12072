"""tests/server_settings.py, plus what the serving-process tests vary through CW_* variables.

CW_AUTOSTART=0: ``CACHE_WARMERS_AUTOSTART = False``; CW_APPS_FIRST: comma-separated apps put first
in ``INSTALLED_APPS`` (``daphne``, as Channels 4 asks).
"""

from __future__ import annotations

import os

from tests.server_settings import *  # noqa: F403

CACHE_WARMERS_AUTOSTART = os.environ.get("CW_AUTOSTART", "1") == "1"

if os.environ.get("CW_APPS_FIRST"):
    INSTALLED_APPS = [*os.environ["CW_APPS_FIRST"].split(","), *INSTALLED_APPS]  # noqa: F405
