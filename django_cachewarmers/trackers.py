"""The process's named access trackers: page URLs and application keys are counted apart."""

from __future__ import annotations

import threading
from collections.abc import Hashable

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
    if tracker is None:
        with _lock:
            tracker = _trackers.setdefault(name, AccessTracker())
    return tracker


def track(key: Hashable, tracker: str = KEYS) -> None:
    """Count one access to an application-level key, so adaptive warmers can warm hot data."""
    get_tracker(tracker).record_access(key)
