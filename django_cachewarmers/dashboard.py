"""The admin's "Cache warmers" overview: what it shows, gathered here; and "Warm now".

``overview()`` builds one ``WarmerStatus`` per warmer declared in ``CACHE_WARMERS`` (an invalid one
carries its error instead of crashing the page). ``start_warm(name)`` runs ``run_warm(name,
trigger="admin")`` on a daemon thread so the request returns at once. Everything the template gets
is plain data: numbers are preformatted strings, so a locale's decimal comma never breaks the SVG.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import formats
from django.utils import timezone as dj_timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, ngettext

from django_cachewarmers import loaders
from django_cachewarmers.claims import Claims
from django_cachewarmers.models import WarmingRun
from django_cachewarmers.providers import CallableKeyProvider, StaticKeyProvider
from django_cachewarmers.registry import UnknownWarmer, get_entry, names
from django_cachewarmers.runner import run_warm
from django_cachewarmers.scheduler import next_slot
from django_cachewarmers.spec import WarmerSpec
from django_cachewarmers.warmer import CacheWarmer

__all__ = [
    "HISTORY_LENGTH",
    "HOT_KEYS_SHOWN",
    "KEY_SAMPLE_TTL_S",
    "PROBE_SAMPLE",
    "Bar",
    "Presence",
    "Sparkline",
    "WarmerStatus",
    "format_duration",
    "is_page_warmer",
    "is_per_process",
    "is_warming_in_background",
    "max_entries",
    "overview",
    "probe",
    "recent_runs",
    "sparkline",
    "start_warm",
    "wait_for_background_warms",
]

logger = logging.getLogger("django_cachewarmers")

#: Runs drawn in each warmer's history chart.
HISTORY_LENGTH = 20
#: Hot keys listed for an adaptive warmer.
HOT_KEYS_SHOWN = 5
#: Most keys of one warmer read back per view of the overview (one ``get_many``).
PROBE_SAMPLE = 100
#: A warmer whose keys come from a function: the overview calls it at most once per this many
#: seconds per process to pick the keys it probes (never once per page view).
KEY_SAMPLE_TTL_S = 300.0

# The chart's size in CSS pixels.
CHART_WIDTH = 120
CHART_HEIGHT = 36
_PAD = 2.0
# Below the bars, a strip where a failed run gets a mark: failures show by shape, not colour only.
_MARK = 4.0


def format_duration(ms: float) -> str:
    """``850 ms`` below a second, ``12.35 s`` from one second on."""
    if round(ms) < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def _format_rate(rate: float) -> str:
    return f"{rate:.1%}"


def _when(moment: datetime) -> str:
    return formats.date_format(dj_timezone.localtime(moment), "SHORT_DATETIME_FORMAT")


def _num(value: float) -> str:
    """A coordinate for SVG: always a dot as decimal separator, whatever the active locale."""
    return f"{value:.1f}"


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Bar:
    """One run in the chart: a bar as tall as its duration, red when keys failed."""

    x: str
    y: str
    width: str
    height: str
    failed: bool
    title: str


@dataclass(frozen=True)
class Sparkline:
    """An inline SVG of the last runs: bars for duration, a line for the success rate.

    A failed run's bar is in the error colour and has a mark under the axis.
    """

    bars: list[Bar]
    #: ``points`` of the success-rate polyline (top = 100 %, bottom = 0 %).
    rate_points: str
    #: One sentence summarising the numbers (the chart's accessible name).
    label: str
    width: str = str(CHART_WIDTH)
    height: str = str(CHART_HEIGHT)
    #: Where the bars stand (the axis), and where a failed run's mark goes.
    baseline: str = _num(CHART_HEIGHT - _PAD - _MARK)
    mark_y: str = _num(CHART_HEIGHT - _MARK + 0.5)
    mark_height: str = _num(_MARK - 1)


def sparkline(runs: Sequence[WarmingRun], slots: int = HISTORY_LENGTH) -> Sparkline | None:
    """The chart of ``runs`` (newest first, as the history lists them); None when there are none.

    The newest run is drawn on the right; each run has a slot of ``CHART_WIDTH / slots`` pixels,
    so a warmer with few runs does not get fat bars.
    """
    if not runs:
        return None
    shown = list(reversed(runs[:slots]))
    slot = CHART_WIDTH / slots
    inner = CHART_HEIGHT - 2 * _PAD - _MARK
    longest = max(run.total_time_ms for run in shown) or 1.0
    offset = CHART_WIDTH - slot * len(shown)
    bars: list[Bar] = []
    points: list[str] = []
    for i, run in enumerate(shown):
        x = offset + i * slot
        height = max(1.5, run.total_time_ms / longest * inner)
        title = gettext(
            "%(when)s: %(warmed)d warmed, %(failed)d failed, %(rate)s, %(duration)s"
        ) % {
            "when": _when(run.started_at),
            "warmed": run.keys_warmed,
            "failed": run.keys_failed,
            "rate": _format_rate(run.success_rate),
            "duration": format_duration(run.total_time_ms),
        }
        bars.append(
            Bar(
                x=_num(x + slot * 0.15),
                y=_num(_PAD + inner - height),
                width=_num(slot * 0.7),
                height=_num(height),
                failed=not run.ok,
                title=title,
            )
        )
        rate = min(1.0, max(0.0, run.success_rate))
        points.append(f"{_num(x + slot / 2)},{_num(_PAD + (1 - rate) * inner)}")
    if len(points) == 1:  # a line needs two points: draw the one rate across its slot
        x0, y0 = points[0].split(",")
        points = [f"{_num(float(x0) - slot / 2)},{y0}", f"{_num(float(x0) + slot / 2)},{y0}"]
    return Sparkline(bars=bars, rate_points=" ".join(points), label=_summary(shown))


def _summary(runs: Sequence[WarmingRun]) -> str:
    durations = [run.total_time_ms for run in runs]
    rates = [run.success_rate for run in runs]
    failed = sum(1 for run in runs if not run.ok)
    parts = [
        ngettext("Last %(count)d run", "Last %(count)d runs", len(runs)) % {"count": len(runs)},
        gettext("duration %(low)s to %(high)s (median %(median)s)")
        % {
            "low": format_duration(min(durations)),
            "high": format_duration(max(durations)),
            "median": format_duration(statistics.median(durations)),
        },
        gettext("success rate %(low)s to %(high)s")
        % {"low": _format_rate(min(rates)), "high": _format_rate(max(rates))},
        ngettext("%(count)d failed", "%(count)d failed", failed) % {"count": failed},
    ]
    return "; ".join(parts) + "."


# --------------------------------------------------------------------------- one row per warmer


@dataclass
class WarmerStatus:
    """Everything the overview shows about one declared warmer."""

    name: str
    #: Why the warmer is invalid (``ImproperlyConfigured``); "" when it is valid.
    error: str = ""
    strategy: str = ""
    cache: str = ""
    #: Seconds between runs, for scheduled and adaptive warmers; None for the others.
    refresh_interval: float | None = None
    optional: bool = False
    #: The newest runs, newest first (at most ``HISTORY_LENGTH``).
    runs: list[WarmingRun] = field(default_factory=list)
    #: Whether a run is in flight: in this process, or (claimed) anywhere sharing the cache.
    running: bool = False
    #: When a scheduled or adaptive warmer's next slot is (aware, UTC).
    next_run: datetime | None = None
    #: The hottest keys and their counts (adaptive key providers only; None for the others).
    hot_keys: list[tuple[str, int]] | None = None
    chart: Sparkline | None = None
    #: What this process reads now from the warmer's cache (None: not probed, e.g. invalid).
    presence: Presence | None = None
    #: Set by the admin: where "Warm now" posts ("" without the permission) and the run history.
    warm_url: str = ""
    runs_url: str = ""

    @property
    def valid(self) -> bool:
        return not self.error

    @property
    def last_run(self) -> WarmingRun | None:
        return self.runs[0] if self.runs else None

    @property
    def failing(self) -> bool:
        """Whether the last run failed (some keys failed, or the run as a whole)."""
        return self.last_run is not None and not self.last_run.ok

    @property
    def state(self) -> str:
        """``invalid``, ``failing``, ``ok`` or ``never`` (no run recorded)."""
        if self.error:
            return "invalid"
        if self.last_run is None:
            return "never"
        return "failing" if self.failing else "ok"

    @property
    def last_error(self) -> str:
        """The last run's run error, or its first key error; "" when it did not fail."""
        run = self.last_run
        if run is None or run.ok:
            return ""
        if run.run_error:
            return run.run_error
        errors = run.errors if isinstance(run.errors, list) else [run.errors]
        return str(errors[0]) if errors else ""

    @property
    def last_run_at_display(self) -> str:
        """When the last run started: its time today, else its date and time (local time)."""
        run = self.last_run
        if run is None:
            return ""
        started = dj_timezone.localtime(run.started_at)
        if started.date() == dj_timezone.localdate():
            return formats.time_format(started, "TIME_FORMAT")
        return formats.date_format(started, "SHORT_DATETIME_FORMAT")

    @property
    def last_run_ago(self) -> str:
        """How long ago the last run started, in one unit ("7 minutes ago")."""
        run = self.last_run
        if run is None:
            return ""
        if (dj_timezone.now() - run.started_at).total_seconds() < 60:
            return gettext("just now")
        return gettext("%(time)s ago") % {"time": timesince(run.started_at, depth=1)}

    @property
    def next_run_in(self) -> str:
        """How long until the next slot, in words ("" when there is no schedule)."""
        if self.next_run is None:
            return ""
        if (self.next_run - dj_timezone.now()).total_seconds() < 60:
            return gettext("within a minute")
        return gettext("in %(time)s") % {"time": timeuntil(self.next_run, depth=1)}

    @property
    def success_rate_display(self) -> str:
        run = self.last_run
        return "" if run is None else _format_rate(run.success_rate)

    @property
    def duration_display(self) -> str:
        run = self.last_run
        return "" if run is None else format_duration(run.total_time_ms)

    @property
    def refresh_interval_display(self) -> str:
        if self.refresh_interval is None:
            return ""
        return f"{self.refresh_interval:g} s"

    @property
    def warnings(self) -> list[str]:
        """What makes the last run's figures untrue of the cache this process reads."""
        found: list[str] = []
        presence = self.presence
        if presence is None:
            return found
        run = self.last_run
        if presence.per_process and run is not None and not _is_this_process(run):
            found.append(
                gettext(
                    "The last run was in another process (%(host)s, pid %(pid)s), but cache "
                    "%(cache)s is a per-process cache (%(backend)s): this server's own copy is "
                    "not the one that run filled."
                )
                % {
                    "host": run.hostname,
                    "pid": run.pid,
                    "cache": self.cache,
                    "backend": presence.backend,
                }
            )
        keys = presence.total
        if run is not None:
            keys = max(keys or 0, run.keys_warmed + run.keys_failed)
        if presence.max_entries is not None and keys is not None and keys > presence.max_entries:
            found.append(
                gettext(
                    "%(keys)d keys, more than cache %(cache)s holds (its MAX_ENTRIES is "
                    "%(max)d): the cache culls entries, so some warmed keys are not there. Raise "
                    "OPTIONS['MAX_ENTRIES'] in CACHES or warm fewer keys."
                )
                % {"keys": keys, "cache": self.cache, "max": presence.max_entries}
            )
        return found


# --------------------------------------------------------------------------- what is cached now


@dataclass(frozen=True)
class Presence:
    """What a read of the warmer's keys finds now, through this process's cache connection."""

    #: Keys read back (at most ``PROBE_SAMPLE``), and how many of them the cache holds.
    checked: int = 0
    present: int = 0
    #: Keys of the warmer in all, when known without a run (static keys, the memoized sample).
    total: int | None = None
    #: The cache's class name, whether each process has its own copy (LocMem), its MAX_ENTRIES.
    backend: str = ""
    per_process: bool = False
    max_entries: int | None = None
    #: Why nothing was probed ("" when ``checked`` keys were), or why the probe failed.
    note: str = ""
    error: str = ""

    @property
    def share(self) -> float | None:
        return self.present / self.checked if self.checked else None

    @property
    def complete(self) -> bool:
        return self.checked > 0 and self.present == self.checked

    @property
    def display(self) -> str:
        """e.g. "100 of 100 keys cached" or "37 of 100 sampled keys cached"."""
        if self.error:
            return gettext("cache unreadable: %(error)s") % {"error": self.error}
        if not self.checked:
            return self.note
        if self.total is not None and self.total <= self.checked:
            return gettext("%(present)d of %(checked)d keys cached") % {
                "present": self.present,
                "checked": self.checked,
            }
        return gettext("%(present)d of %(checked)d sampled keys cached") % {
            "present": self.present,
            "checked": self.checked,
        }


def max_entries(cache: Any) -> int | None:
    """The most entries ``cache`` keeps before culling (``MAX_ENTRIES``), or None for a cache
    without such a limit (Redis, Memcached: their own memory policy applies).

    Django's LocMem, database and file caches read ``OPTIONS['MAX_ENTRIES']`` (default 300)
    into ``_max_entries``.
    """
    if isinstance(cache, (LocMemCache, DatabaseCache, FileBasedCache)):
        value = getattr(cache, "_max_entries", None)
        return value if isinstance(value, int) else None
    return None


def is_per_process(cache: Any) -> bool:
    """Whether each process has its own copy of ``cache`` (Django's LocMemCache)."""
    return isinstance(cache, LocMemCache)


def _is_this_process(run: WarmingRun) -> bool:
    return run.pid == os.getpid() and run.hostname == socket.gethostname()[:255]


_samples_lock = threading.Lock()
# warmer name -> (monotonic time taken, the provider object, key count, sampled keys)
_samples: dict[str, tuple[float, object, int, list[Hashable]]] = {}


def _spread(keys: Sequence[Hashable], limit: int) -> list[Hashable]:
    """At most ``limit`` keys spread evenly over ``keys`` (first, ..., near the last)."""
    if len(keys) <= limit:
        return list(keys)
    return [keys[i * len(keys) // limit] for i in range(limit)]


def _sample(
    name: str, warmer: CacheWarmer, hot: list[Hashable] | None
) -> tuple[list[Hashable], int | None, str]:
    """The keys to probe, how many keys the warmer has (None: unknown), and why none."""
    provider = warmer.key_provider
    if hot is not None:  # adaptive: the hot keys the overview reads anyway
        return hot[:PROBE_SAMPLE], None, "" if hot else gettext("no hot keys yet")
    if isinstance(provider, StaticKeyProvider):
        keys = provider.get_keys()
        return _spread(keys, PROBE_SAMPLE), len(keys), ""
    if isinstance(provider, CallableKeyProvider):
        now = time.monotonic()
        with _samples_lock:
            memo = _samples.get(name)
        if memo is not None and memo[1] is provider and now - memo[0] < KEY_SAMPLE_TTL_S:
            return memo[3], memo[2], ""
        keys = provider.get_keys()
        sample = _spread(keys, PROBE_SAMPLE)
        with _samples_lock:
            _samples[name] = (now, provider, len(keys), sample)
        return sample, len(keys), ""
    return [], None, gettext("keys known only at run time")


def probe(name: str, warmer: CacheWarmer, hot: list[Hashable] | None = None) -> Presence:
    """Read back a sample of the warmer's keys (at most ``PROBE_SAMPLE``, one ``get_many``)
    through the warmer's cache in this process: what a request served here would find.

    ``hot``: an adaptive warmer's hot keys, already read. Never raises: a failing key provider
    or cache is reported in ``note`` or ``error``.
    """
    # A configured warmer's cache is a Django cache (the core engine also accepts a dict).
    cache: Any = warmer.cache
    base = Presence(
        backend=type(cache).__name__,
        per_process=is_per_process(cache),
        max_entries=max_entries(cache),
    )
    try:
        keys, total, note = _sample(name, warmer, hot)
    except Exception as exc:
        logger.warning("cache warmer %s: keys for the probe failed", name, exc_info=True)
        return replace(base, note=gettext("keys unavailable: %(error)s") % {"error": exc})
    if not keys:
        return replace(base, total=total, note=note or gettext("no keys"))
    if is_page_warmer(warmer):
        return _probe_pages(name, keys, replace(base, total=total))
    try:
        if hasattr(cache, "get_many"):
            found = len(cache.get_many(keys))
        else:
            found = sum(1 for key in keys if key in cache)
    except Exception as exc:
        logger.warning("cache warmer %s: the probe could not read its cache", name, exc_info=True)
        return replace(base, total=total, error=f"{type(exc).__name__}: {exc}")
    return replace(base, checked=len(keys), present=found, total=total)


def is_page_warmer(warmer: CacheWarmer) -> bool:
    """Whether the warmer's keys are page URLs rendered by ``loaders.render_page``: the page
    cache (``cache_page``, the per-site cache) stores them under its own keys, not the URLs."""
    return getattr(warmer.value_loader, "func", None) is loaders.render_page


def _probe_pages(name: str, urls: list[Hashable], base: Presence) -> Presence:
    """Ask ``pages.page_is_cached(url)`` (True/False when this process knows which page cache
    serves the URL, None when it does not) for each sampled URL. Looking the URLs up as cache
    keys would find none of them, so without an answer nothing is claimed either way."""
    from django_cachewarmers import pages  # the page renderer: loaded only for page warmers

    not_probed = gettext("pages: not probed in this process")
    # Provided by pages.py; absent in versions that cannot tell which page cache serves a URL.
    page_is_cached = getattr(pages, "page_is_cached", None)
    if not callable(page_is_cached):
        return replace(base, note=not_probed)
    try:
        answers = [page_is_cached(url) for url in urls]
    except Exception as exc:
        logger.warning("cache warmer %s: the page probe failed", name, exc_info=True)
        return replace(base, error=f"{type(exc).__name__}: {exc}")
    known = [answer for answer in answers if answer is not None]
    if not known:
        return replace(base, note=not_probed)
    # Only the URLs this process could answer for were checked (the display says "sampled"
    # when that is fewer than the warmer's pages).
    return replace(base, checked=len(known), present=sum(1 for answer in known if answer))


def overview(now: float | None = None) -> list[WarmerStatus]:
    """One ``WarmerStatus`` per warmer of ``CACHE_WARMERS``, in the setting's order."""
    now = time.time() if now is None else now
    declared = names()
    history = recent_runs(declared)
    rows = []
    for name in declared:
        row = WarmerStatus(name=name, runs=history.get(name, []))
        row.chart = sparkline(row.runs)
        try:
            spec, warmer = get_entry(name)
        except (UnknownWarmer, ImproperlyConfigured) as exc:
            row.error = str(exc)
        except Exception as exc:  # a broken settings value must not take the admin down
            logger.exception("cache warmer %s: could not be built for the admin", name)
            row.error = f"{type(exc).__name__}: {exc}"
        else:
            _describe(row, spec, warmer, now)
        rows.append(row)
    return rows


def _describe(row: WarmerStatus, spec: WarmerSpec, warmer: CacheWarmer, now: float) -> None:
    row.strategy = spec.strategy.value
    row.cache = spec.cache
    row.optional = spec.optional
    if spec.is_scheduled:
        row.refresh_interval = spec.refresh_interval
        row.next_run = datetime.fromtimestamp(
            next_slot(spec.refresh_interval, now), tz=timezone.utc
        )
    row.running = (
        warmer.is_warming
        or is_warming_in_background(row.name)
        or _running_elsewhere(row.name, warmer)
    )
    top = getattr(warmer.key_provider, "top", None)
    hot: list[Hashable] | None = None
    if callable(top):
        # One read of the hot keys serves both the list shown and the probe.
        try:
            pairs: list[tuple[Hashable, int]] = list(top(max(HOT_KEYS_SHOWN, PROBE_SAMPLE)))
        except Exception:
            logger.warning(
                "cache warmer %s: its hot keys could not be read", row.name, exc_info=True
            )
            pairs = []
        row.hot_keys = [(str(key), int(count)) for key, count in pairs[:HOT_KEYS_SHOWN]]
        hot = [key for key, _ in pairs]
    row.presence = probe(row.name, warmer, hot)


def _running_elsewhere(name: str, warmer: CacheWarmer) -> bool:
    """Whether some process holds the warmer's cluster-wide running mark."""
    return Claims(warmer.cache, name).running_holder() is not None


def recent_runs(warmers: Sequence[str], limit: int = HISTORY_LENGTH) -> dict[str, list[WarmingRun]]:
    """The newest ``limit`` runs of each warmer, newest first, in one query."""
    if not warmers:
        return {}
    rank = Window(
        RowNumber(),
        partition_by=[F("warmer")],
        order_by=[F("started_at").desc(), F("pk").desc()],
    )
    runs = (
        WarmingRun.objects.filter(warmer__in=list(warmers))
        .annotate(cw_rank=rank)
        .filter(cw_rank__lte=limit)
        .order_by("warmer", "-started_at", "-pk")
    )
    by_warmer: dict[str, list[WarmingRun]] = {}
    for run in runs:
        by_warmer.setdefault(run.warmer, []).append(run)
    return by_warmer


# --------------------------------------------------------------------------- Warm now

_threads_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}


def start_warm(name: str) -> bool:
    """Start ``run_warm(name, trigger="admin")`` on a daemon thread and return at once.

    Returns False, starting nothing, while an earlier admin warm of ``name`` is still going (a
    double click warms once). Raises ``UnknownWarmer`` or ``ImproperlyConfigured`` at once for a
    warmer that is not declared or not valid.
    """
    get_entry(name)
    with _threads_lock:
        previous = _threads.get(name)
        if previous is not None and previous.is_alive():
            return False
        thread = threading.Thread(
            target=_warm_in_background,
            args=(name,),
            name=f"cachewarmer[{name}]-admin",
            daemon=True,
        )
        _threads[name] = thread
        thread.start()
    return True


def _warm_in_background(name: str) -> None:
    try:
        run_warm(name, trigger="admin")
    except (UnknownWarmer, ImproperlyConfigured) as exc:
        logger.error("cache warmer %s: admin run skipped: %s", name, exc)
    except Exception:
        logger.exception("cache warmer %s: admin run failed", name)
    finally:
        # This thread's own database connections: nothing else would ever close them.
        connections.close_all()


def is_warming_in_background(name: str) -> bool:
    """Whether a warm started from the admin for ``name`` is still going in this process."""
    with _threads_lock:
        thread = _threads.get(name)
    return thread is not None and thread.is_alive()


def wait_for_background_warms(timeout: float | None = None) -> bool:
    """Wait for the warms started from the admin; True when none is left running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _threads_lock:
        threads = list(_threads.values())
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _forget_after_fork() -> None:
    # Threads don't survive a fork, and the lock may have been held by one of them.
    global _threads_lock, _samples_lock
    _threads_lock = threading.Lock()
    _threads.clear()
    _samples_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
