"""Django's Tasks framework, as this app uses it: which package provides it, and its backends.

Django >= 6.0 ships it as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport
(``pip install 'django-cachewarmers[tasks]'``) provides the same API as ``django_tasks``.
``django.tasks`` is preferred whenever it exists, as django-tasks-db does, so both agree on which
``Task`` class and ``TASKS`` handler are in use. Backends are configured in ``TASKS`` as Django
documents; nothing here imports either package until a function is called.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "CHUNK_TASK",
    "INSTALL_HINT",
    "TasksUnavailable",
    "backend_kind",
    "framework",
    "get_backend",
    "returns_results",
]

#: Module path of the chunk task (``django_cachewarmers.task_chunks.warm_chunk``): what every
#: backend stores and its workers import.
CHUNK_TASK = "django_cachewarmers.task_chunks.warm_chunk"

INSTALL_HINT = (
    "use Django >= 6.0 (django.tasks), or install the django-tasks backport on Django 5.2 "
    "(pip install 'django-cachewarmers[tasks]')"
)


class TasksUnavailable(ImproperlyConfigured):
    """Django's Tasks framework is not installed, or the task backend asked for is not usable."""


def framework() -> ModuleType:
    """``django.tasks`` (Django >= 6.0), else the ``django_tasks`` backport.

    Raises ``TasksUnavailable`` (naming what to install) when neither exists.
    """
    for name in ("django.tasks", "django_tasks"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that is not there, or blocked
            found = False
        if found:
            module = importlib.import_module(name)
            # Its setting_changed receiver (rebuild the backends when TASKS changes): the
            # backport connects it only once its app is ready, and it may not be installed.
            importlib.import_module(f"{name}.signals")
            return module
    raise TasksUnavailable(f"Django's Tasks framework is not available: {INSTALL_HINT}.")


def _submodule(name: str) -> ModuleType:
    return importlib.import_module(f"{framework().__name__}.{name}")


def get_backend(alias: str | None = None) -> Any:
    """The task backend ``alias`` of ``TASKS`` (default: ``"default"``), as the framework builds it.

    Raises ``TasksUnavailable`` without the framework, for an alias not in ``TASKS``, or for a
    backend that cannot be loaded (the message includes the framework's own error).
    """
    module = framework()
    alias = alias or module.DEFAULT_TASK_BACKEND_ALIAS
    try:
        return module.task_backends[alias]
    except Exception as exc:
        configured = ", ".join(map(repr, _aliases(module))) or "none"
        raise TasksUnavailable(
            f"task backend {alias!r} is not usable: {type(exc).__name__}: {exc} "
            f"(TASKS defines: {configured})"
        ) from exc


def _aliases(module: ModuleType) -> list[str]:
    try:
        return [a for a in module.task_backends.settings if isinstance(a, str)]
    except Exception:
        return []


def backend_kind(backend: Any) -> str:
    """What a backend does with an enqueued task: "immediate" (runs it in the enqueuing process,
    during ``enqueue()``), "dummy" (stores it and never runs it), or "workers" (anything else:
    worker processes run it)."""
    immediate = _submodule("backends.immediate").ImmediateBackend
    dummy = _submodule("backends.dummy").DummyBackend
    if isinstance(backend, immediate):
        return "immediate"
    if isinstance(backend, dummy):
        return "dummy"
    return "workers"


def returns_results(backend: Any) -> bool:
    """Whether a fan-out can collect the chunks' results through ``backend``: it supports
    ``get_result`` from any process (``supports_get_result``), or it runs each task during
    ``enqueue()`` and hands back the finished result (``ImmediateBackend``)."""
    return bool(getattr(backend, "supports_get_result", False)) or (
        backend_kind(backend) == "immediate"
    )


def task_decorator() -> Any:
    """The framework's ``@task`` decorator."""
    return framework().task


def result_status(module: ModuleType | None = None) -> Any:
    """The framework's ``TaskResultStatus`` enum."""
    return (module or framework()).TaskResultStatus
