"""Celery, as this app uses it: finding the project's Celery app, and the names of our tasks.

Nothing here imports Celery at module level (``beat`` imports the task names in settings.py).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "CHUNK_TASK",
    "INSTALL_HINT",
    "WARMER_TASK",
    "CeleryUnavailable",
    "has_no_result_backend",
    "is_eager",
    "require_celery",
    "resolve_app",
]

#: Registered names of the tasks in ``django_cachewarmers.tasks``.
CHUNK_TASK = "django_cachewarmers.tasks.warm_chunk"
WARMER_TASK = "django_cachewarmers.tasks.warm_warmer"

INSTALL_HINT = "install django-cachewarmers[celery] (pip install 'django-cachewarmers[celery]')"


class CeleryUnavailable(ImproperlyConfigured):
    """Celery is not installed, or no usable Celery app is configured in this process."""


# -- Celery app --------------------------------------------------------------------------------


def require_celery() -> None:
    """Raise ``CeleryUnavailable`` (naming the extra to install) if Celery cannot be imported."""
    try:
        import celery  # noqa: F401
    except ImportError as exc:
        raise CeleryUnavailable(f"Celery is not installed: {INSTALL_HINT}.") from exc


def resolve_app(app: Any = None) -> Any:
    """The Celery app to send chunks with.

    ``app`` may be a ``Celery`` instance or a name as for ``celery -A`` ("proj", "proj.celery:app").
    Without one: ``$CELERY_APP``, else the app the project's ``celery.py`` created (Celery's Django
    guide imports it from the project package, so it exists once settings are loaded). Celery's
    own fallback app (which would talk to a broker on localhost) is never used.
    """
    require_celery()
    from celery import Celery

    if isinstance(app, Celery):
        return app
    name = app if isinstance(app, str) and app else os.environ.get("CELERY_APP", "")
    if name:
        from celery.app.utils import find_app

        try:
            found = find_app(name)
        except Exception as exc:
            raise CeleryUnavailable(
                f"cannot load the Celery app {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(found, Celery):
            raise CeleryUnavailable(f"{name!r} is {type(found).__name__}, not a Celery app.")
        return found
    from celery import _state

    current = _state.get_current_app()
    if not _is_fallback(current):
        return current
    # The current app is thread-local: a request thread sees Celery's fallback even though the
    # project made its app at import. Use the one app the process made, if there is just one.
    made = [a for a in list(_state._apps) if not _is_fallback(a)]
    if len(made) == 1:
        return made[0]
    found_what = "several Celery apps" if made else "no Celery app"
    raise CeleryUnavailable(
        f"{found_what} in this process: import your project's Celery app in the project "
        "package's __init__.py (see Celery's 'First steps with Django'), or name it with "
        "--celery-app / the CELERY_APP environment variable (e.g. 'proj.celery:app')."
    )


def _is_fallback(app: Any) -> bool:
    return getattr(app, "main", None) == "default" and not getattr(app, "set_as_current", True)


def is_eager(app: Any) -> bool:
    """True when the app runs tasks in the calling process (``task_always_eager``)."""
    return bool(app.conf.task_always_eager)


def has_no_result_backend(app: Any) -> bool:
    from celery.backends.base import DisabledBackend

    return isinstance(app.backend, DisabledBackend)
