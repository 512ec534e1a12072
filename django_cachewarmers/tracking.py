"""The process's named access trackers: page URLs and application keys are counted apart."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.tracker import AccessTracker

#: The tracker the access-tracking middleware feeds with page URLs.
PAGES = "pages"
#: The default tracker of ``track()``: application-level keys such as "product:42".
KEYS = "keys"

_lock = threading.Lock()
_trackers: dict[str, AccessTracker] = {}
_on_created: list[Callable[[], None]] = []


def get_tracker(name: str = PAGES) -> AccessTracker:
    """The process's tracker called ``name``, created on first use."""
    tracker = _trackers.get(name)
    if tracker is not None:
        return tracker
    with _lock:
        tracker = _trackers.get(name)
        if tracker is None:
            tracker = _trackers[name] = AccessTracker(max_keys=conf.TRACKER_MAX_KEYS)
    for callback in list(_on_created):
        callback()
    return tracker


def on_tracker_created(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever a tracker is created (``hotkeys`` starts publishing its counts
    then: a process that counts nothing publishes nothing)."""
    if callback not in _on_created:
        _on_created.append(callback)


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


@after_fork_in_child
def _reset_after_fork() -> None:
    # A child's traffic is its own: counts copied from the parent would be published twice.
    global _lock
    _lock = threading.Lock()
    _trackers.clear()
