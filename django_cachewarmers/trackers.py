"""The process's named access trackers: page URLs and application keys are counted apart."""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable

from django_cachewarmers.conf import conf
from django_cachewarmers.tracker import AccessTracker

#: The tracker the access-tracking middleware feeds with page URLs.
PAGES = "pages"
#: The default tracker of ``track()``: application-level keys such as "product:42".
KEYS = "keys"

_lock = threading.Lock()
_trackers: dict[str, AccessTracker] = {}


def get_tracker(name: str = PAGES) -> AccessTracker:
    """The process's tracker called ``name``, created on first use."""
    tracker = _trackers.get(name)
    if tracker is not None:
        return tracker
    with _lock:
        tracker = _trackers.get(name)
        if tracker is None:
            tracker = _trackers[name] = AccessTracker(max_keys=conf.TRACKER_MAX_KEYS)
    from django_cachewarmers.hotkeys import ensure_publisher

    ensure_publisher()
    return tracker


def all_trackers() -> dict[str, AccessTracker]:
    """Every tracker of this process, by name."""
    return dict(_trackers)


def track(key: Hashable, tracker: str = KEYS) -> None:
    """Count one access to an application-level key, so adaptive warmers can warm hot data.

    Cheap enough for every cache read: no lock, no clock (``AccessTracker.record_access_later``).
    """
    found = _trackers.get(tracker)
    (get_tracker(tracker) if found is None else found).record_access_later(key)


def reset() -> None:
    """Forget every tracker and its counts (tests, and a forked child)."""
    with _lock:
        _trackers.clear()


def _reset_after_fork() -> None:
    # A child's traffic is its own: counts copied from the parent would be published twice.
    global _lock
    _lock = threading.Lock()
    _trackers.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)
