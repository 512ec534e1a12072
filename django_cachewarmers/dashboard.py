"""The admin's "Cache warmers" overview: what it shows, gathered here.

``overview()`` builds one ``WarmerStatus`` per warmer declared in ``CACHE_WARMERS`` (an invalid one
carries its error instead of crashing the page). Everything the template gets is plain data:
numbers are preformatted strings, so a locale's decimal comma never breaks the SVG. ("Warm now"
runs ``runner.start_in_background``; what is cached now comes from ``probe``.)
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import formats
from django.utils import timezone as dj_timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, ngettext

from django_cachewarmers import pages, payoff, readstats
from django_cachewarmers.claims import Claims
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.schedule import next_slot
from django_cachewarmers.core.stats import format_duration
from django_cachewarmers.models import WarmingRun
from django_cachewarmers.probe import PROBE_SAMPLE, Presence, probe
from django_cachewarmers.registry import UnknownWarmer, get_entry, names
from django_cachewarmers.runner import is_warming_in_background
from django_cachewarmers.spec import WarmerSpec

__all__ = [
    "HISTORY_LENGTH",
    "HOT_KEYS_SHOWN",
    "Bar",
    "Sparkline",
    "WarmerStatus",
    "overview",
    "recent_runs",
    "sparkline",
]

logger = logging.getLogger("django_cachewarmers")

#: Runs drawn in each warmer's history chart.
HISTORY_LENGTH = 20
#: Hot keys listed for an adaptive warmer.
HOT_KEYS_SHOWN = 5

# The chart's size in CSS pixels.
CHART_WIDTH = 120
CHART_HEIGHT = 36
_PAD = 2.0
# Below the bars, a strip where a failed run gets a mark: failures show by shape, not colour only.
_MARK = 4.0


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
    #: What readers of its keys got (hit ratios; ``payoff``); None for an invalid warmer.
    reads: payoff.Reads | None = None
    #: Set by the admin: where "Warm now" posts ("" without the permission) and the run history.
    warm_url: str = ""
    runs_url: str = ""
    #: The cluster's counts of reads through ``get`` (``readstats.cluster_counts``), or None.
    get_reads: dict[str, int] | None = None

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
    def reads_display(self) -> str:
        """The read counts in words ("" when there were no reads through ``get``)."""
        reads = self.get_reads
        if not reads or not any(reads.values()):
            return ""
        parts = (
            ngettext("%(n)d hit", "%(n)d hits", reads["hits"]) % {"n": reads["hits"]},
            ngettext("%(n)d miss", "%(n)d misses", reads["misses"]) % {"n": reads["misses"]},
            ngettext("%(n)d stale served", "%(n)d stale served", reads["stale"])
            % {"n": reads["stale"]},
            ngettext("%(n)d refresh", "%(n)d refreshes", reads["refreshes"])
            % {"n": reads["refreshes"]},
            ngettext("%(n)d refresh failed", "%(n)d refreshes failed", reads["refresh_failures"])
            % {"n": reads["refresh_failures"]},
        )
        return ", ".join(parts)

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


def overview(now: float | None = None) -> list[WarmerStatus]:
    """One ``WarmerStatus`` per warmer of ``CACHE_WARMERS``, in the setting's order."""
    now = time.time() if now is None else now
    declared = names()
    history = recent_runs(declared)
    get_counts = readstats.cluster_counts()
    rows = []
    intervals: list[tuple[str, float]] = []
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
            _fill_status(row, spec, warmer, now)
            row.get_reads = get_counts.get(name)
            intervals.append((name, spec.config.refresh_interval_s))
        rows.append(row)
    try:
        reads = payoff.reads_for(intervals)
    except Exception:  # the read counts are not worth an error page (e.g. not migrated yet)
        logger.exception("cache warmers: could not read the read counts for the admin")
        reads = {}
    for row in rows:
        row.reads = reads.get(row.name)
    return rows


def _fill_status(row: WarmerStatus, spec: WarmerSpec, warmer: CacheWarmer, now: float) -> None:
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
    if pages.is_page_warmer(warmer):
        # The page cache stores pages under keys of its own: looking the URLs up as cache keys
        # would find none of them. Ask the page cache that served each URL (known in the
        # process that rendered it).
        row.presence = probe(
            row.name,
            warmer,
            hot,
            is_cached=lambda url: pages.page_is_cached(str(url)),
            not_probed=gettext("pages: not probed in this process"),
        )
    else:
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


def _is_this_process(run: WarmingRun) -> bool:
    return run.pid == os.getpid() and run.hostname == socket.gethostname()[:255]
