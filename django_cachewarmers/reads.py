"""Reads of each warmer's keys: hits, misses and stale entries served, per warmer.

Did warming pay off? Only the reads can tell. They are counted where they happen and attributed
to the warmer whose keys they read:

- **Pages**: ``AccessTrackingMiddleware`` sees every anonymous page request it counts, and
  whether Django's cache middleware or ``cache_page`` answered it from the cache (a hit) or the
  view rendered it (a miss). The page goes to the page warmer(s) whose last run listed its URL.
- **Data keys**: ``django_cachewarmers.get()`` / ``aget()`` count their own hits, misses and
  stale entries; code reading the cache itself says so with ``track(key, hit=True/False)``.

Which warmer a key belongs to comes from the keys of each warmer's last run (a fixed key list:
the list itself). A run publishes its keys (at most ``MAX_KEYS_PER_WARMER``) in the snapshot
cache, so every process of the cluster attributes reads to it, not only the process that warmed;
key providers are never called per request.

On the request path a read costs a dict lookup and a ``deque.append`` (atomic under the GIL, no
lock). The process's background thread (``publisher``) drains the backlog every
``CACHE_WARMERS_SNAPSHOT_INTERVAL`` seconds and at a clean shutdown into per-minute ``ReadCount``
rows, summed across processes by the database, and into the Prometheus counter
``django_cachewarmers_reads_total`` when ``prometheus_client`` is installed (``metrics``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import urlsplit

from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import IntegrityError, router, transaction
from django.db.models import F, Sum
from django.dispatch import receiver

from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.pagekeys import split_page_key

__all__ = [
    "HIT",
    "KEEP",
    "MAX_KEYS_PER_WARMER",
    "MISS",
    "RESULTS",
    "STALE",
    "ReadSummary",
    "count",
    "count_many",
    "flush",
    "page_read",
    "refresh_owners",
    "remember_keys",
    "seed",
    "summary",
    "sync_now",
]

logger = logging.getLogger("django_cachewarmers")

HIT = "hit"
MISS = "miss"
STALE = "stale"
#: The results a read can have (the ``result`` label of ``django_cachewarmers_reads_total``).
RESULTS = (HIT, MISS, STALE)
#: Per-minute rows older than this are pruned.
KEEP = timedelta(days=2)
#: Keys of one warmer's last run kept for attributing reads (a random run above it: the first).
MAX_KEYS_PER_WARMER = 10_000
#: Reads waiting for the background thread at most; beyond it the oldest are dropped (counted).
MAX_BACKLOG = 200_000

_backlog: deque[tuple[str, str]] = deque(maxlen=MAX_BACKLOG)
#: Key -> the warmers whose last run listed it. Page URLs are kept without their query string.
#: Each owner as its two prebuilt backlog items: ``((name, "hit"), (name, "miss"))``.
_owners: dict[Hashable, tuple[tuple[tuple[str, str], tuple[str, str]], ...]] = {}
_page_owners: dict[str, tuple[tuple[tuple[str, str], tuple[str, str]], ...]] = {}
#: Warmer -> (published-at stamp, its keys, page warmer?): what the two maps are built from.
_known: dict[str, tuple[float, tuple[Hashable, ...], bool]] = {}
_lock = threading.Lock()
_last_prune = 0.0
#: Reads drained but not written yet (the database was down): added to the next flush.
_unwritten: Counter[tuple[str, str]] = Counter()
#: Reads handed over by ``count_many``, not drained yet.
_added: Counter[tuple[str, str]] = Counter()


def count(warmer: str, result: str) -> None:
    """Count one read of a key of ``warmer``: ``result`` is "hit", "miss" or "stale".

    Cheap enough for every read: no lock, no clock. Raises ``ValueError`` for another result.
    """
    if result not in RESULTS:
        raise ValueError(f"result: must be one of {', '.join(RESULTS)}, got {result!r}")
    _backlog.append((warmer, result))
    _ensure_thread()


def key_read(key: Hashable, hit: bool) -> None:
    """Count a read of an application key, for each warmer whose last run listed it."""
    try:
        owners = _owners.get(key)
    except TypeError:  # an unhashable key belongs to no warmer
        return
    if owners:
        side = 0 if hit else 1
        for items in owners:
            _backlog.append(items[side])
        if not _thread_armed:
            _ensure_thread()


#: Page requests of a page some warmer lists, as the middleware appends them (the page key; one
#: ``deque.append``, nothing looked up): attributed to warmers when drained.
page_hits: deque[str] = deque(maxlen=MAX_BACKLOG)
page_misses: deque[str] = deque(maxlen=MAX_BACKLOG)


def page_read(url: str, hit: bool) -> None:
    """Count one page request (``url`` as the tracking middleware's page key,
    ``scheme://host/path``), for each page warmer whose last run listed that page: a hit when the
    page cache answered it, a miss when the view ran.

    This runs on every counted request: one dict lookup, and per warmer one ``deque.append`` of
    a prebuilt item (no allocation)."""
    owners = _page_owners.get(url)
    if owners:
        side = 0 if hit else 1
        for items in owners:
            _backlog.append(items[side])
        if not _thread_armed:
            _ensure_thread()


def _page_path(url: str) -> str:
    """What identifies a page here: its URL without query string or fragment, as the tracking
    middleware's page keys are (``scheme://host/path``)."""
    parts = urlsplit(split_page_key(url)[0])  # a variant's key: its URL (all variants count)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def remember_keys(warmer: str, keys: Sequence[Hashable], *, pages: bool) -> None:
    """Attribute reads of ``keys`` (a run's keys, at most ``MAX_KEYS_PER_WARMER`` kept) to
    ``warmer`` from now on, in this process and (through the snapshot cache) in every other."""
    kept = tuple(keys[:MAX_KEYS_PER_WARMER])
    stamp = time.time()
    with _lock:
        _known[warmer] = (stamp, kept, pages)
        _rebuild()
    try:
        record = {"at": stamp, "pages": pages, "keys": list(kept)}
        caches[conf.SNAPSHOT_CACHE].set(_keys_key(warmer), record, None)
    except Exception as exc:  # an outage of the snapshot cache: only this process attributes
        logger.warning("read counts: could not share the keys of %s: %s", warmer, exc)


def refresh_owners(warmers: Iterable[str]) -> None:
    """Take the keys other processes' runs of ``warmers`` shared (the background thread calls it).

    Raises what the snapshot cache raises (the caller logs an outage once).
    """
    names = list(warmers)
    if not names:
        return
    found = caches[conf.SNAPSHOT_CACHE].get_many([_keys_key(name) for name in names])
    changed = False
    with _lock:
        for name in names:
            record = found.get(_keys_key(name))
            if not isinstance(record, dict) or not isinstance(record.get("keys"), list):
                continue
            stamp = record.get("at")
            if not isinstance(stamp, float):
                continue
            known = _known.get(name)
            if known is not None and known[0] >= stamp:
                continue
            keys = tuple(record["keys"][:MAX_KEYS_PER_WARMER])
            _known[name] = (stamp, keys, bool(record.get("pages")))
            changed = True
        if changed:
            _rebuild()


def seed(fixed: Mapping[str, tuple[tuple[Hashable, ...], bool]]) -> None:
    """Know the warmers with fixed key lists: ``{name: (keys, page warmer?)}``; forget warmers
    that are no longer declared. A fixed list needs no run to be known."""
    with _lock:
        changed = False
        for name in list(_known):
            if name not in fixed and _known[name][0] == 0.0:
                del _known[name]
                changed = True
        for name, (keys, pages) in fixed.items():
            if name not in _known:
                _known[name] = (0.0, keys[:MAX_KEYS_PER_WARMER], pages)
                changed = True
        if changed:
            _rebuild()


def sync_now() -> None:
    """Run the registered ``on_sync`` callable at once (the tracking middleware does when it is
    loaded, so fixed key lists own their pages from the first request on)."""
    for callback in _on_sync:
        callback()


def on_sync(callback: Callable[[], None]) -> None:
    """Register what ``sync_now`` runs (the background thread's module registers its sync)."""
    if callback not in _on_sync:
        _on_sync.append(callback)


def on_first_read(callback: Callable[[], None]) -> None:
    """Register what runs when the process counts its first read (starting the background
    thread that writes the counts)."""
    if callback not in _on_first_read:
        _on_first_read.append(callback)


def _rebuild() -> None:
    global _owners, _page_owners
    owners: dict[Hashable, list[str]] = {}
    page_owners: dict[str, list[str]] = {}
    for name, (_stamp, keys, pages) in _known.items():
        for key in keys:
            if pages and isinstance(key, str):
                page_owners.setdefault(_page_path(key), []).append(name)
            else:
                try:
                    owners.setdefault(key, []).append(name)
                except TypeError:
                    continue
    # Swapped whole: a request reading the old map meanwhile sees a consistent one.
    items = {name: ((name, HIT), (name, MISS)) for name in _known}
    _owners = {key: tuple(items[n] for n in names) for key, names in owners.items()}
    _page_owners = {path: tuple(items[n] for n in names) for path, names in page_owners.items()}


def _keys_key(warmer: str) -> str:
    return f"{conf.KEY_PREFIX}:runkeys:{warmer}"


def forget() -> None:
    """Forget the attributions and the backlog (tests, and ``CACHE_WARMERS`` changes)."""
    global _owners, _page_owners
    with _lock:
        _known.clear()
        _owners, _page_owners = {}, {}
    _backlog.clear()
    _unwritten.clear()
    _added.clear()
    page_hits.clear()
    page_misses.clear()


def count_many(counts: Mapping[tuple[str, str], int]) -> None:
    """Count reads counted elsewhere (``get()``'s own counters: ``publisher`` hands them over):
    ``{(warmer, result): n}``. Written with the next ``flush``."""
    with _lock:
        _added.update({item: n for item, n in counts.items() if n > 0})


def drain() -> Counter[tuple[str, str]]:
    """Take every read waiting in the backlog: ``{(warmer, result): count}``."""
    with _lock:
        counts: Counter[tuple[str, str]] = Counter(_added)
        _added.clear()
    owners = _page_owners
    for queue, side in ((page_hits, 0), (page_misses, 1)):
        pages: Counter[str] = Counter()
        take = queue.popleft
        try:
            while True:
                pages[take()] += 1
        except IndexError:
            pass
        for url, n in pages.items():
            for items in owners.get(url, ()):
                counts[items[side]] += n
    pop = _backlog.popleft
    try:
        while True:
            counts[pop()] += 1
    except IndexError:
        return counts


def flush(now: datetime | None = None) -> int:
    """Add the backlog's reads to this minute's ``ReadCount`` rows (and the Prometheus counter).

    Returns how many reads were written. On a database error the reads go back to the backlog
    and the error is raised (the background thread logs an outage once).
    """
    fresh = drain()
    if fresh:
        from django_cachewarmers import metrics

        metrics.observe_reads(fresh)  # counted once, whatever the database does
    counts = _unwritten + fresh
    _unwritten.clear()
    if not counts:
        return 0  # nothing touches the database in a process that counted nothing
    minute = (now or datetime.now(dt_timezone.utc)).replace(second=0, microsecond=0)
    try:
        _add(counts, minute)
    except Exception:
        _unwritten.update(counts)  # written with the next flush, in its minute
        raise
    _prune(now)
    return sum(counts.values())


def _add(counts: Counter[tuple[str, str]], minute: datetime) -> None:
    from django_cachewarmers.models import ReadCount

    by_warmer: dict[str, dict[str, int]] = {}
    for (warmer, result), n in counts.items():
        by_warmer.setdefault(warmer, dict.fromkeys(RESULTS, 0))[result] += n
    using = router.db_for_write(ReadCount)
    with transaction.atomic(using=using):  # all or nothing: a retry must not count twice
        _add_rows(by_warmer, minute, using)


def _add_rows(by_warmer: dict[str, dict[str, int]], minute: datetime, using: str) -> None:
    from django_cachewarmers.models import ReadCount

    for warmer, numbers in by_warmer.items():
        increments = {"hits": numbers[HIT], "misses": numbers[MISS], "stale": numbers[STALE]}
        rows = ReadCount.objects.using(using).filter(warmer=warmer, minute=minute)
        for _attempt in range(2):
            if rows.update(**{field: F(field) + n for field, n in increments.items()}):
                break
            try:
                with transaction.atomic(using=using):
                    ReadCount.objects.using(using).create(
                        warmer=warmer, minute=minute, **increments
                    )
                break
            except IntegrityError:
                continue  # another process created this minute's row first: add to it


def _prune(now: datetime | None) -> None:
    global _last_prune
    if time.monotonic() - _last_prune < 600:
        return
    _last_prune = time.monotonic()
    from django_cachewarmers.models import ReadCount

    cutoff = (now or datetime.now(dt_timezone.utc)) - KEEP
    ReadCount.objects.filter(minute__lt=cutoff).delete()


@dataclass(frozen=True)
class ReadSummary:
    """A warmer's reads over one window (from ``ReadCount`` rows: every process's)."""

    hits: int
    misses: int
    stale: int

    @property
    def reads(self) -> int:
        return self.hits + self.misses + self.stale

    @property
    def hit_ratio(self) -> float | None:
        """(hits + stale) / reads, from 0 to 1 (a stale entry served is a hit for the reader);
        None without reads."""
        reads = self.reads
        return (self.hits + self.stale) / reads if reads else None


def summary(
    warmers: Sequence[str], since: timedelta, now: datetime | None = None
) -> dict[str, ReadSummary]:
    """Each warmer's reads over the last ``since``: ``{name: ReadSummary}`` (zeros for none)."""
    from django_cachewarmers.models import ReadCount

    start = (now or datetime.now(dt_timezone.utc)) - since
    rows = (
        ReadCount.objects.filter(warmer__in=list(warmers), minute__gte=start)
        .values("warmer")
        .annotate(h=Sum("hits"), m=Sum("misses"), s=Sum("stale"))
    )
    found = {
        row["warmer"]: ReadSummary(int(row["h"] or 0), int(row["m"] or 0), int(row["s"] or 0))
        for row in rows
    }
    return {name: found.get(name, ReadSummary(0, 0, 0)) for name in warmers}


def per_minute(warmer: str, since: timedelta, now: datetime | None = None) -> list[ReadSummary]:
    """``warmer``'s reads minute by minute over the last ``since``, oldest first (one entry per
    minute, zeros where nothing was read)."""
    from django_cachewarmers.models import ReadCount

    end = (now or datetime.now(dt_timezone.utc)).replace(second=0, microsecond=0)
    minutes = int(since.total_seconds() // 60)
    start = end - timedelta(minutes=minutes - 1)
    rows = ReadCount.objects.filter(warmer=warmer, minute__gte=start, minute__lte=end)
    by_minute = {row.minute: ReadSummary(row.hits, row.misses, row.stale) for row in rows}
    return [
        by_minute.get(start + timedelta(minutes=i), ReadSummary(0, 0, 0)) for i in range(minutes)
    ]


def misses_after_warm(
    warmer: str, refresh_interval: float, since: timedelta, now: datetime | None = None
) -> int:
    """Misses of ``warmer``'s keys in the minutes that began within ``refresh_interval`` seconds
    after one of its successful runs finished, over the last ``since``: what warming should have
    prevented (minute resolution: a miss in a run's own minute counts)."""
    from django_cachewarmers.models import ReadCount, WarmingRun

    start = (now or datetime.now(dt_timezone.utc)) - since
    finished = list(
        WarmingRun.objects.filter(warmer=warmer, finished_at__gte=start - timedelta(days=1))
        .exclude(keys_warmed=0)
        .filter(keys_failed=0, run_error="")
        .order_by("finished_at")
        .values_list("finished_at", flat=True)
    )
    if not finished:
        return 0
    total = 0
    window = timedelta(seconds=refresh_interval)
    rows = ReadCount.objects.filter(warmer=warmer, minute__gte=start, misses__gt=0)
    for row in rows.values_list("minute", "misses"):
        minute, misses = row
        if any(at.replace(second=0, microsecond=0) <= minute <= at + window for at in finished):
            total += misses
    return total


# --------------------------------------------------------------------------- the background thread

_thread_armed = False
_on_first_read: list[Callable[[], None]] = []
_on_sync: list[Callable[[], None]] = []


def _ensure_thread() -> None:
    global _thread_armed
    if _thread_armed:
        return
    _thread_armed = True
    for callback in _on_first_read:
        try:
            callback()
        except Exception:  # never let a read fail
            logger.exception("read counts: could not start the background thread")


@after_fork_in_child
def _reset_after_fork() -> None:
    # A child's reads are its own: the parent's backlog would be counted twice.
    global _lock, _thread_armed
    _lock = threading.Lock()
    _thread_armed = False
    _backlog.clear()
    _unwritten.clear()
    _added.clear()
    page_hits.clear()
    page_misses.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHE_WARMERS":
        forget()
