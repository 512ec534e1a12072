"""Did warming pay off? The admin overview's read figures, gathered here.

From the per-minute ``ReadCount`` rows (``reads``: every process's reads of each warmer's
keys): each warmer's hit ratio over the last hour and day, a chart of the last hour minute by
minute, the misses that came within a refresh interval after a successful run (what warming was
there to prevent), and one plain-language line for the top of the page. Numbers reach the template
preformatted, so a locale's decimal comma never breaks the SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext

from django_cachewarmers import reads
from django_cachewarmers.reads import ReadSummary

__all__ = ["DAY", "HOUR", "HitChart", "Reads", "reads_for", "summary_line"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# The chart's size in CSS pixels: one column per minute of the last hour.
CHART_WIDTH = 120
CHART_HEIGHT = 36
_PAD = 2.0


def _num(value: float) -> str:
    return f"{value:.1f}"


def _ratio(summary: ReadSummary) -> str:
    ratio = summary.hit_ratio
    return "\N{EN DASH}" if ratio is None else f"{ratio:.1%}"


@dataclass(frozen=True)
class Column:
    """One minute of the chart: a column as tall as its reads, the missed part in red."""

    x: str
    width: str
    y: str
    height: str
    miss_y: str
    miss_height: str
    title: str


@dataclass(frozen=True)
class HitChart:
    """An inline SVG of the last hour's reads, one column per minute (newest on the right)."""

    columns: list[Column]
    label: str
    width: str = str(CHART_WIDTH)
    height: str = str(CHART_HEIGHT)
    baseline: str = _num(CHART_HEIGHT - _PAD)


def hit_chart(minutes: Sequence[ReadSummary], label: str) -> HitChart | None:
    """The chart of ``minutes`` (oldest first); None when nothing was read."""
    most = max((m.reads for m in minutes), default=0)
    if not most:
        return None
    slot = CHART_WIDTH / len(minutes)
    inner = CHART_HEIGHT - 2 * _PAD
    columns = []
    for i, minute in enumerate(minutes):
        if not minute.reads:
            continue
        height = max(1.0, minute.reads / most * inner)
        missed = height * minute.misses / minute.reads
        top = _PAD + inner - height
        columns.append(
            Column(
                x=_num(i * slot),
                width=_num(max(slot * 0.8, 0.5)),
                y=_num(top),
                height=_num(height),
                miss_y=_num(top),
                miss_height=_num(missed),
                title=gettext("%(minutes)d min ago: %(hits)d hits, %(misses)d misses")
                % {
                    "minutes": len(minutes) - 1 - i,
                    "hits": minute.hits + minute.stale,
                    "misses": minute.misses,
                },
            )
        )
    return HitChart(columns=columns, label=label)


@dataclass(frozen=True)
class Reads:
    """What one warmer's readers got."""

    hour: ReadSummary
    day: ReadSummary
    #: Misses within a refresh interval after a successful run, over the last day.
    misses_after_warm: int
    chart: HitChart | None

    @property
    def hour_ratio(self) -> str:
        return _ratio(self.hour)

    @property
    def day_ratio(self) -> str:
        return _ratio(self.day)

    @property
    def hour_reads(self) -> str:
        return number_format(self.hour.reads, force_grouping=True)

    @property
    def day_reads(self) -> str:
        return number_format(self.day.reads, force_grouping=True)


def reads_for(
    warmers: Sequence[tuple[str, float]], now: datetime | None = None
) -> dict[str, Reads]:
    """``{name: Reads}`` for ``(name, refresh interval in seconds)`` pairs."""
    names = [name for name, _interval in warmers]
    hour = reads.summary(names, HOUR, now)
    day = reads.summary(names, DAY, now)
    found = {}
    for name, interval in warmers:
        chart = None
        if hour[name].reads:
            chart = hit_chart(
                reads.per_minute(name, HOUR, now),
                gettext(
                    "Reads of %(name)s's keys in the last hour, minute by minute: %(ratio)s hits"
                )
                % {"name": name, "ratio": _ratio(hour[name])},
            )
        after = reads.misses_after_warm(name, interval, DAY, now) if day[name].misses else 0
        found[name] = Reads(hour=hour[name], day=day[name], misses_after_warm=after, chart=chart)
    return found


def summary_line(reads: dict[str, Reads]) -> str:
    """One sentence for the top of the overview: did warming pay off in the last hour?"""
    hits = sum(r.hour.hits + r.hour.stale for r in reads.values())
    total = sum(r.hour.reads for r in reads.values())
    if not total:
        return gettext(
            "No reads were counted for the warmers in the last hour (pages are counted by "
            "AccessTrackingMiddleware, data keys by get() and track(key, hit=...))."
        )
    after = sum(r.misses_after_warm for r in reads.values())
    line = ngettext(
        "In the last hour %(ratio)s of %(reads)s read counted for the warmers was a hit",
        "In the last hour %(ratio)s of %(reads)s reads counted for the warmers were hits",
        total,
    ) % {"ratio": f"{hits / total:.1%}", "reads": number_format(total, force_grouping=True)}
    if after:
        line += ngettext(
            "; %(count)s miss in the last day came within a refresh interval after a warm.",
            "; %(count)s misses in the last day came within a refresh interval after a warm.",
            after,
        ) % {"count": number_format(after, force_grouping=True)}
    else:
        line += gettext("; no miss in the last day came right after a warm.")
    return line
