"""Prometheus metrics, with the optional extra ``django-cachewarmers[prometheus]``.

The metrics live in ``prometheus_client``'s default registry, so django-prometheus's ``/metrics``
(or any exposition of that registry) includes them; ``django_cachewarmers.urls`` serves them for
projects without one. Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's documented multiprocess mode) and every worker's counts are summed at each
scrape. Labels never carry cache keys.

============================================================  =========  ========================
name                                                          type       labels
============================================================  =========  ========================
``django_cachewarmers_keys_warmed_total``                     counter    warmer
``django_cachewarmers_keys_failed_total``                     counter    warmer
``django_cachewarmers_runs_total``                            counter    warmer, trigger, outcome
``django_cachewarmers_run_duration_seconds``                  histogram  warmer
``django_cachewarmers_last_success_timestamp_seconds``        gauge      warmer
``django_cachewarmers_reads_total``                           counter    warmer, result
============================================================  =========  ========================

``outcome`` is ``ok`` (every key warmed, no run error) or ``failed``; ``result`` is ``hit``,
``miss`` or ``stale``. Without ``prometheus_client`` installed every function here does nothing
and nothing of it is imported.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_cachewarmers.core.stats import WarmingStats

__all__ = ["available", "exposition", "observe_reads", "observe_run"]

#: Histogram buckets of a run's duration, in seconds (a run's deadline defaults to 60 s).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None


def available() -> bool:
    """True when ``prometheus_client`` is installed (found without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


def _get() -> dict[str, Any] | None:
    """The metrics, created in the default registry at first use; None without the library."""
    global _metrics
    if _metrics is not None:
        return _metrics
    if not available():
        return None
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Gauge, Histogram

            _metrics = {
                "warmed": Counter(
                    "django_cachewarmers_keys_warmed",
                    "Keys warmed (written and read back) by warming runs.",
                    ["warmer"],
                ),
                "failed": Counter(
                    "django_cachewarmers_keys_failed",
                    "Keys that warming runs failed to warm.",
                    ["warmer"],
                ),
                "runs": Counter(
                    "django_cachewarmers_runs",
                    "Warming runs, by what started them and how they ended (ok or failed).",
                    ["warmer", "trigger", "outcome"],
                ),
                "duration": Histogram(
                    "django_cachewarmers_run_duration_seconds",
                    "Wall-clock time of warming runs, in seconds.",
                    ["warmer"],
                    buckets=DURATION_BUCKETS,
                ),
                # Timestamps only grow: the largest of the workers' values is the last success.
                "last_success": Gauge(
                    "django_cachewarmers_last_success_timestamp_seconds",
                    "Unix time when a run of the warmer last ended with every key warmed.",
                    ["warmer"],
                    multiprocess_mode="max",
                ),
                "reads": Counter(
                    "django_cachewarmers_reads",
                    "Reads of a warmer's keys: hit, miss, or stale (served while refreshed).",
                    ["warmer", "result"],
                ),
            }
    return _metrics


def observe_run(name: str, trigger: str, stats: WarmingStats) -> None:
    """Count one finished run of warmer ``name`` (no-op without ``prometheus_client``)."""
    metrics = _get()
    if metrics is None:
        return
    metrics["warmed"].labels(name).inc(stats.keys_warmed)
    metrics["failed"].labels(name).inc(stats.keys_failed)
    outcome = "ok" if stats.ok else "failed"
    metrics["runs"].labels(name, trigger, outcome).inc()
    metrics["duration"].labels(name).observe(stats.total_time_ms / 1000.0)
    if stats.ok and stats.finished_at is not None:
        metrics["last_success"].labels(name).set(stats.finished_at.timestamp())


def observe_reads(counts: Mapping[tuple[str, str], int]) -> None:
    """Add ``{(warmer, result): n}`` to ``django_cachewarmers_reads_total``."""
    metrics = _get()
    if metrics is None:
        return
    for (warmer, result), n in counts.items():
        metrics["reads"].labels(warmer, result).inc(n)


def exposition() -> tuple[bytes, str]:
    """The text exposition of the default registry (every worker's, in multiprocess mode) and
    its content type. Raises ``ImportError`` without ``prometheus_client``."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    _get()  # this process's metrics exist, even before its first run
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _on_run_finished(
    sender: object, *, name: str, trigger: str, stats: WarmingStats, **kw: Any
) -> None:
    observe_run(name, trigger, stats)


def connect() -> bool:
    """Count runs from ``warming_finished`` when ``prometheus_client`` is installed (``ready()``
    calls it; idempotent). Returns whether it is connected."""
    if not available():
        return False
    from django_cachewarmers.signals import warming_finished

    warming_finished.connect(_on_run_finished, dispatch_uid="django_cachewarmers.metrics")
    return True
