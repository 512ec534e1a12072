"""A warmer's ``via`` field: where its scheduled and startup runs warm, and what that needs.

``"local"`` (the default) warms in the server process. ``"tasks"`` enqueues the chunks on the
default backend of Django's Tasks framework (``TASKS["default"]``), ``"celery"`` fans them out over
Celery workers: the server process only sends them. Checks E035-E039, W008 and W009.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_cachewarmers.check_messages import Report, describe_value, did_you_mean, setting_path
from django_cachewarmers.core.config import WarmingStrategy
from django_cachewarmers.parsing.caches import _cache_backend, _is_backend
from django_cachewarmers.spec import DEFAULTS, VIAS

__all__ = ["parse_via"]

_LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
_DOCS = "See docs/tasks.md and docs/celery.md."


def parse_via(
    report: Report,
    name: object,
    raw: Mapping[Any, Any],
    cache: str | None,
    strategy: WarmingStrategy | None,
) -> str:
    """The warmer's ``via`` ("local" when it is invalid: the error is in ``report``)."""
    where = setting_path(name, "via")
    value = raw.get("via", DEFAULTS["via"])
    if not isinstance(value, str) or value not in VIAS:
        report.error(
            35,
            f"{where}: unknown value {describe_value(value)}.",
            did_you_mean(value.lower() if isinstance(value, str) else value, VIAS)
            + "Use 'local' (the default: warm in the server process), 'tasks' (enqueue on "
            "Django's Tasks framework) or 'celery' (fan out over Celery workers).",
        )
        return "local"
    if value == "local":
        return value
    backend = _cache_backend(cache) if cache is not None else None
    if backend is not None and _is_backend(backend, _LOCMEM):
        report.error(
            36,
            f"{where}: {value!r} warms on worker processes, but cache {cache!r} is a "
            "LocMemCache, local to each process: the workers would fill their own memory and "
            "the servers would never see a warmed key.",
            "Use a cache all processes share (Redis, Memcached, DatabaseCache) for this warmer, "
            "or leave 'via' out to warm in each server process.",
        )
    if strategy is WarmingStrategy.LAZY:
        report.warning(
            9,
            f"{where}: {value!r} has no effect on a 'lazy' warmer: it has no startup or "
            "scheduled runs to send.",
            "Leave 'via' out, or call warm(name, via=...) / `warm_cache NAME --tasks` (or "
            "--celery) to warm it on workers.",
        )
    if value == "celery":
        _check_celery(report, where)
    else:
        _check_tasks(report, where)
    return value


def _check_celery(report: Report, where: str) -> None:
    from django_cachewarmers.celery_app import CeleryUnavailable, require_celery

    try:
        require_celery()
    except CeleryUnavailable as exc:
        report.error(38, f"{where}: 'celery' needs Celery: {exc}", _DOCS)


def _check_tasks(report: Report, where: str) -> None:
    from django_cachewarmers.tasks_framework import (
        TasksUnavailable,
        backend_kind,
        framework,
        get_backend,
    )

    try:
        framework()
    except TasksUnavailable as exc:
        report.error(37, f"{where}: 'tasks' needs Django's Tasks framework: {exc}", _DOCS)
        return
    try:
        backend = get_backend()
        kind = backend_kind(backend)
    except Exception as exc:
        report.error(
            39,
            f"{where}: 'tasks' enqueues on the default task backend, which is not usable: {exc}",
            "Fix TASKS['default'] (its BACKEND must be importable), as Django's Tasks framework "
            "documents. " + _DOCS,
        )
        return
    if kind == "dummy":
        report.error(
            39,
            f"{where}: 'tasks' enqueues on the default task backend, a DummyBackend, which "
            "never runs a task: this warmer would never be warmed.",
            "Use a backend with workers in TASKS['default'] (e.g. django-tasks-db's "
            "DatabaseBackend and its db_worker command), or leave 'via' out.",
        )
    elif kind == "immediate":
        report.warning(
            8,
            f"{where}: 'tasks' enqueues on the default task backend, an ImmediateBackend, which "
            "runs each task in the process that enqueues it: the server process warms it "
            "after all.",
            "Use a backend with workers in TASKS['default'] (e.g. django-tasks-db's "
            "DatabaseBackend and its db_worker command), or leave 'via' out. Add "
            "'django_cachewarmers.W008' to SILENCED_SYSTEM_CHECKS where that is intended.",
        )
