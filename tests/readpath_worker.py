"""A real process reading one key through ``django_cachewarmers.get`` (cross-process tests).

``python -m tests.readpath_worker <warmer> <key>`` with a project's environment
(tests/processes.py ``Project.env``): it marks itself ready in the project's Redis
(``ready:<pid>``), reads the key, publishes its read counts to the snapshot cache, and prints
``{"value": ...}`` or ``{"error": "..."}`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    django.setup()
    from django.core.cache import caches

    import django_cachewarmers
    from django_cachewarmers import readstats

    name, key = sys.argv[1], sys.argv[2]
    caches["default"].set(f"ready:{os.getpid()}", 1, 60)
    try:
        result = {"value": django_cachewarmers.get(name, key)}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    readstats.publish()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
