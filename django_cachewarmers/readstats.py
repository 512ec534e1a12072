"""The read path's counts per warmer (hits, misses, stale served, refreshes, refresh failures):
this process's, and the cluster's, shared the way the hot set is.

Each process counts in its own ``ReadCounts`` per warmer (``counts(name)``, no lock on the
request path), and its publisher thread (``publisher``) writes them every
``CACHE_WARMERS_SNAPSHOT_INTERVAL`` seconds under an expiring key of its own in the shared snapshot
cache (``publish``). ``cluster_counts()`` adds this process's live counts to every other live
process's snapshot; a dead process's snapshot expires with it. Counts are since each process
started.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib

from django.core.cache import caches

from django_cachewarmers import claims
from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.readcounts import EVENTS, ReadCounts
from django_cachewarmers.hotkeys import SLOTS, snapshot_ttl

__all__ = ["cluster_counts", "counts", "local_counts", "publish", "slot_key"]

logger = logging.getLogger("django_cachewarmers")

SNAPSHOT_VERSION = 1
#: A count above this in a snapshot is not believed.
MAX_COUNT = 10**15

_lock = threading.Lock()
_counts: dict[str, ReadCounts] = {}
_slot: int | None = None


def counts(name: str) -> ReadCounts:
    """This process's counts of warmer ``name``'s reads (kept across settings changes)."""
    found = _counts.get(name)
    if found is not None:
        return found
    with _lock:
        return _counts.setdefault(name, ReadCounts())


def zero() -> dict[str, int]:
    """Every count at 0, by name (``core.readcounts.EVENTS``)."""
    return dict.fromkeys(EVENTS, 0)


def local_counts() -> dict[str, dict[str, int]]:
    """This process's counts, by warmer name."""
    return {name: found.totals() for name, found in list(_counts.items())}


def slot_key(slot: int) -> str:
    return f"{conf.KEY_PREFIX}:reads:{slot}"


def publish() -> bool:
    """Write this process's counts to its slot of the snapshot cache (claimed with ``add``);
    False when it has none to share or no slot could be had. Raises what the cache raises."""
    global _slot
    if not _counts:
        return False
    cache = caches[conf.SNAPSHOT_CACHE]
    record = {
        "v": SNAPSHOT_VERSION,
        "owner": claims.OWNER,
        "at": time.time(),
        "counts": {
            name: [totals[event] for event in EVENTS] for name, totals in local_counts().items()
        },
    }
    ttl = snapshot_ttl()
    if _slot is not None:
        current = cache.get(slot_key(_slot))
        if current is None or (isinstance(current, dict) and current.get("owner") == claims.OWNER):
            cache.set(slot_key(_slot), record, ttl)
            return True
        _slot = None  # our slot expired and another process took it
    start = zlib.crc32(claims.OWNER.encode()) % SLOTS
    for offset in range(SLOTS):
        slot = (start + offset) % SLOTS
        if cache.add(slot_key(slot), record, ttl):
            _slot = slot
            return True
    logger.warning("read counts: all %d snapshot slots are taken", SLOTS)
    return False


def _valid_counts(record: object) -> dict[str, list[int]]:
    """The counts of another process's snapshot, by warmer; {} if malformed or this process's."""
    if not isinstance(record, dict) or record.get("v") != SNAPSHOT_VERSION:
        return {}
    if record.get("owner") == claims.OWNER:
        return {}  # this process's own counts come live from its counters
    found = record.get("counts")
    if not isinstance(found, dict):
        return {}
    valid: dict[str, list[int]] = {}
    for name, values in found.items():
        if (
            isinstance(name, str)
            and isinstance(values, list)
            and len(values) == len(EVENTS)
            and all(type(v) is int and 0 <= v <= MAX_COUNT for v in values)
        ):
            valid[name] = values
    return valid


def cluster_counts() -> dict[str, dict[str, int]]:
    """This process's counts plus every live snapshot of the other processes, by warmer name.

    An unreadable snapshot cache is logged and leaves this process's counts alone.
    """
    merged = local_counts()
    try:
        records = caches[conf.SNAPSHOT_CACHE].get_many([slot_key(slot) for slot in range(SLOTS)])
    except Exception as exc:
        logger.warning("read counts: snapshots unreadable (%s: %s)", type(exc).__name__, exc)
        records = {}
    for record in records.values():
        for name, values in _valid_counts(record).items():
            totals = merged.setdefault(name, zero())
            for event, value in zip(EVENTS, values, strict=True):
                totals[event] += value
    return merged


def reset() -> None:
    """Forget every count (tests, and a forked child)."""
    global _slot
    with _lock:
        _counts.clear()
        _slot = None


@after_fork_in_child
def _reset_after_fork() -> None:
    # A child's reads are its own: counts copied from the parent would be published twice.
    global _lock, _slot
    _lock = threading.Lock()
    _counts.clear()
    _slot = None
