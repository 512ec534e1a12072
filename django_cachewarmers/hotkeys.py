"""The cluster's hot set: snapshots shared through a cache, merged, and persisted in the database.

Each process sees only its share of the traffic, and publishes it (``publisher``): each tracker's
top keys with their counts under an expiring key of its own in the shared snapshot cache. An
adaptive warmer merges
every live snapshot with its own process's counts, so its hot set is the cluster's. A dead process's
snapshot expires. Snapshots are namespaced by tracker and validated when merged, so whatever is
written there cannot put keys into another tracker's warmer.

The merged hot set is also persisted in the database (``HotKey``) every
``CACHE_WARMERS_PERSIST_INTERVAL`` seconds and at a clean shutdown, and merged back (decaying with
the tracker's half-life) so that what was hot before a deploy is warm right after it.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Hashable
from operator import itemgetter

from django.core.cache import caches
from django.db import DatabaseError, router, transaction
from django.db.models import F
from django.utils import timezone

from django_cachewarmers import claims
from django_cachewarmers.conf import conf
from django_cachewarmers.core.providers import (
    DEFAULT_LIMIT,
    DEFAULT_THRESHOLD,
    KeyProvider,
    check_threshold_and_limit,
)
from django_cachewarmers.core.tracker import DEFAULT_HALF_LIFE_S
from django_cachewarmers.tracking import all_trackers

logger = logging.getLogger("django_cachewarmers")

SNAPSHOT_VERSION = 1
#: How many processes can publish a tracker's snapshot at once (slots are claimed with add()).
SLOTS = 64
#: Longer keys are neither published nor merged.
MAX_KEY_LENGTH = 2048
#: A count above this in a snapshot is not believed.
MAX_COUNT = 10**12
#: Persisted counts halve over this many seconds, like the trackers' counts.
HALF_LIFE_S = DEFAULT_HALF_LIFE_S

Counts = dict[Hashable, float]


def slot_key(tracker: str, slot: int) -> str:
    return f"{conf.KEY_PREFIX}:hot:{tracker}:{slot}"


def snapshot_ttl() -> int:
    return max(5, int(conf.SNAPSHOT_INTERVAL * 3) + 1)


def _valid_items(record: object, tracker: str) -> list[tuple[str, int]]:
    """The (key, count) pairs of another process's snapshot of ``tracker``; [] if malformed."""
    if not isinstance(record, dict):
        return []
    if record.get("v") != SNAPSHOT_VERSION or record.get("tracker") != tracker:
        return []
    if record.get("owner") == claims.OWNER:
        return []  # this process's own counts come live from its tracker
    items = record.get("items")
    if not isinstance(items, list):
        return []
    valid = []
    for item in items[: conf.SNAPSHOT_SIZE]:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        key, count = item
        if (
            isinstance(key, str)
            and 0 < len(key) <= MAX_KEY_LENGTH
            and type(count) is int
            and 0 < count <= MAX_COUNT
        ):
            valid.append((key, count))
    return valid


# -- reading the cluster's hot set --------------------------------------------------------------


def cluster_counts(tracker: str) -> Counts:
    """This process's counts of ``tracker`` plus every live snapshot of other processes."""
    counts: Counts = {}
    local = all_trackers().get(tracker)  # not get_tracker(): reading must not start counting
    for key, count in local.top(conf.SNAPSHOT_SIZE) if local is not None else ():
        counts[key] = counts.get(key, 0.0) + count
    try:
        records = caches[conf.SNAPSHOT_CACHE].get_many(
            [slot_key(tracker, slot) for slot in range(SLOTS)]
        )
    except Exception as exc:
        logger.warning("hot keys: snapshots unreadable (%s: %s)", type(exc).__name__, exc)
        records = {}
    for record in records.values():
        for key, count in _valid_items(record, tracker):
            counts[key] = counts.get(key, 0.0) + count
    return counts


def persisted_counts(tracker: str) -> Counts:
    """The persisted hot set of ``tracker``, each count decayed by its age."""

    try:
        return _read_persisted(tracker)
    except DatabaseError as exc:
        logger.warning("hot keys: persisted hot set unreadable (%s: %s)", type(exc).__name__, exc)
        return {}


def _read_persisted(tracker: str, using: str | None = None) -> Counts:
    from django_cachewarmers.models import HotKey

    now = timezone.now()
    # ``using``: the database of a save in progress (its transaction); else the router's choice.
    objects = HotKey.objects if using is None else HotKey.objects.using(using)
    rows = objects.filter(tracker=tracker).values_list("key", "count", "updated_at")
    return {
        key: count * 0.5 ** (max(0.0, (now - updated_at).total_seconds()) / HALF_LIFE_S)
        for key, count, updated_at in rows
    }


def _top_up(counts: Counts, persisted: Counts) -> Counts:
    # max, not a sum: the persisted set was itself made from live counts.
    for key, count in persisted.items():
        if count > counts.get(key, 0.0):
            counts[key] = count
    return counts


def hot_counts(tracker: str) -> Counts:
    """The cluster's live counts, topped up by the persisted hot set (the larger count wins).

    ``max``, not a sum: the persisted set was itself made from live counts, and adding them again
    would count the same accesses twice on every save.
    """
    return _top_up(cluster_counts(tracker), persisted_counts(tracker))


def persist(tracker: str, *, claim: bool = True) -> int:
    """Save ``tracker``'s hot set in the database; with ``claim``, one process per interval does.

    Returns how many keys were saved (0 when another process had the claim).
    """
    from django_cachewarmers.models import HotKey

    if claim:
        interval = conf.PERSIST_INTERVAL
        if interval <= 0:
            return 0
        cache = caches[conf.SNAPSHOT_CACHE]
        if not claims.Claims(cache, f"hotset.{tracker}").claim_slot(interval):
            return 0
    counts = cluster_counts(tracker)  # the cache's reads, before the database lock
    # Every query of the save, its reads too, on the database the router writes HotKey to, inside
    # a transaction on that database (not on "default", which may be empty or another database).
    alias = router.db_for_write(HotKey)
    objects = HotKey.objects.using(alias)
    try:
        with transaction.atomic(using=alias):
            # A write first takes the database's write lock (SQLite) or the rows' (PostgreSQL,
            # MySQL), so processes saving at once (every worker at a SIGTERM) take turns, and
            # each tops up what the one before it saved instead of overwriting it.
            objects.filter(tracker=tracker).update(updated_at=F("updated_at"))
            _top_up(counts, _read_persisted(tracker, using=alias))
            now = timezone.now()
            rows = [
                HotKey(tracker=tracker, key=key, count=float(count), updated_at=now)
                for key, count in heapq.nlargest(
                    conf.SNAPSHOT_SIZE, counts.items(), key=itemgetter(1)
                )
                if isinstance(key, str) and count > 0
            ]
            objects.filter(tracker=tracker).delete()
            objects.bulk_create(rows)
    except DatabaseError as exc:
        logger.warning("hot keys: could not save the hot set (%s: %s)", type(exc).__name__, exc)
        return 0
    return len(rows)


class ClusterKeyProvider(KeyProvider):
    """The hottest keys of a named tracker across the cluster (and from before a restart).

    It reads the tracker by name and never creates it: a process that only warms (a Celery
    worker, ``warm_cache``, the admin) counts nothing, so it starts no tracker and no publisher.
    """

    def __init__(
        self, tracker: str, threshold: int = DEFAULT_THRESHOLD, limit: int = DEFAULT_LIMIT
    ) -> None:
        check_threshold_and_limit(threshold, limit)
        self.tracker_name = tracker
        self.threshold = threshold
        self.limit = limit

    def _ranked(self, limit: int) -> list[tuple[Hashable, float]]:
        counts = hot_counts(self.tracker_name)
        return heapq.nlargest(limit, counts.items(), key=itemgetter(1))

    def get_keys(self) -> list[Hashable]:
        """Keys counted at least ``threshold`` times cluster-wide, hottest first."""
        return [key for key, count in self._ranked(self.limit) if count >= self.threshold]

    def top(self, limit: int = 20) -> list[tuple[Hashable, int]]:
        """The hot keys with their cluster-wide counts, for display."""
        return [(k, int(n)) for k, n in self._ranked(limit) if n >= self.threshold]

    def __repr__(self) -> str:
        return (
            f"ClusterKeyProvider({self.tracker_name!r}, threshold={self.threshold}, "
            f"limit={self.limit})"
        )


__all__ = [
    "ClusterKeyProvider",
    "cluster_counts",
    "hot_counts",
    "persist",
    "persisted_counts",
]
