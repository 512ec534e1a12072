"""What a read of a warmer's keys finds in its cache now, in this process (the admin shows it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.utils.translation import gettext

from django_cachewarmers.backends import is_per_process, max_entries
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.forks import after_fork_in_child
from django_cachewarmers.core.providers import CallableKeyProvider, StaticKeyProvider

logger = logging.getLogger("django_cachewarmers")

#: Most keys of one warmer read back per view of the overview (one ``get_many``).
PROBE_SAMPLE = 100
#: A warmer whose keys come from a function: the overview calls it at most once per this many
#: seconds per process to pick the keys it probes (never once per page view).
KEY_SAMPLE_TTL_S = 300.0


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


#: ``is_cached(key)`` for ``probe``: True / False when this process can tell whether the next
#: real read of the key's entry would hit, None when it cannot.
EntryLookup = Callable[[Hashable], "bool | None"]


def probe(
    name: str,
    warmer: CacheWarmer,
    hot: list[Hashable] | None = None,
    *,
    is_cached: EntryLookup | None = None,
    not_probed: str = "",
) -> Presence:
    """Read back a sample of the warmer's keys (at most ``PROBE_SAMPLE``, one ``get_many``)
    through the warmer's cache in this process: what a request served here would find.

    ``hot``: an adaptive warmer's hot keys, already read. ``is_cached``: for a warmer whose
    entries are not stored under its keys (page warmers: the page cache keys pages its own way),
    asked for each sampled key instead of looking the keys up; only the keys it answers True or
    False for are counted, and when it answers None for all, nothing is claimed: the note is
    ``not_probed``. Never raises: a failing key provider, cache or ``is_cached`` is reported in
    ``note`` or ``error``.
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
    if is_cached is not None:
        return _probe_each(name, keys, replace(base, total=total), is_cached, not_probed)
    try:
        if hasattr(cache, "get_many"):
            found = len(cache.get_many(keys))
        else:
            found = sum(1 for key in keys if key in cache)
    except Exception as exc:
        logger.warning("cache warmer %s: the probe could not read its cache", name, exc_info=True)
        return replace(base, total=total, error=f"{type(exc).__name__}: {exc}")
    return replace(base, checked=len(keys), present=found, total=total)


def _probe_each(
    name: str, keys: list[Hashable], base: Presence, is_cached: EntryLookup, not_probed: str
) -> Presence:
    try:
        answers = [is_cached(key) for key in keys]
    except Exception as exc:
        logger.warning("cache warmer %s: the probe failed", name, exc_info=True)
        return replace(base, error=f"{type(exc).__name__}: {exc}")
    known = [answer for answer in answers if answer is not None]
    if not known:
        return replace(base, note=not_probed)
    # Only the keys this process could answer for were checked (the display says "sampled"
    # when that is fewer than the warmer's keys).
    return replace(base, checked=len(known), present=sum(1 for answer in known if answer))


@after_fork_in_child
def _forget_after_fork() -> None:
    # The lock may have been held by a thread of the parent.
    global _samples_lock
    _samples_lock = threading.Lock()
