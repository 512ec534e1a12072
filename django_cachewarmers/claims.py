"""Once per cluster: claims in a warmer's own cache so N processes sharing it warm it once.

Every claim is a ``cache.add`` (atomic on Redis and Memcached) of a key named for its time window,
so a key is never reused: on the database cache an expired-but-present key could otherwise give
several winners or none. A slot claim also looks at the previous window's claim, so two processes
whose timers straddle a window boundary by a moment do not both win. With a per-process cache
(LocMem) each process claims in its own copy, which is right: each process has its own cache to
fill.

Startup warms are skipped only when they are not needed: every complete run records when it
started (``record_run_started``), and a starting process skips its startup warm only if the
entries of that run outlive its own first refresh (``startup_is_covered``). Otherwise one of the
processes starting together warms: they compete for a key named for the last run they saw.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from typing import Any

from django_cachewarmers.conf import conf
from django_cachewarmers.core.forks import after_fork_in_child

logger = logging.getLogger("django_cachewarmers")

#: Identifies this process in the claims it takes.
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@after_fork_in_child
def _refresh_owner_after_fork() -> None:
    global OWNER
    OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CacheUnreachable(Exception):
    """A claim could not be taken and is not held by anyone: the cache stores nothing right now.

    A cache that swallows its errors (django-redis ``IGNORE_EXCEPTIONS``) answers ``add()`` with
    False when it is down, which would otherwise read as "another process has it".
    """


def startup_is_covered(
    last_run: float | None,
    *,
    now: float,
    ttl: float | None,
    warmup_timeout: float,
    refresh_interval: float | None,
    margin: float,
) -> bool:
    """Whether a new process may skip its startup warm: the last complete run's entries last.

    ``last_run`` is when the last complete run started (epoch s; its entries were written at or
    after it), ``ttl`` their TTL in seconds (None: never expire). For a scheduled or adaptive
    warmer (``refresh_interval`` given) the entries must outlive this process's first refresh,
    which starts at the next wall-clock slot after ``now`` and writes within ``warmup_timeout``:
    ``last_run + ttl >= first_slot + warmup_timeout``; with the TTL grace (``ttl = interval +
    warmup_timeout``) that is ``last_run >= first_slot - interval``. An eager warmer is never
    refreshed, so its entries must still have more than ``margin`` seconds to live.
    """
    if last_run is None:
        return False
    if ttl is None:
        return True
    # Redis and Memcached keep whole seconds (a fraction is truncated).
    ttl = float(math.floor(ttl)) if ttl >= 1 else 0.0
    if refresh_interval is not None:
        first_slot = (math.floor(now / refresh_interval) + 1) * refresh_interval
        return last_run + ttl >= first_slot + warmup_timeout
    return last_run + ttl > now + margin


class Claims:
    """The coordination keys of one warmer in its target cache."""

    def __init__(self, cache: Any, warmer: str) -> None:
        self.cache = cache
        self.warmer = warmer

    def key(self, *parts: object) -> str:
        return ":".join([conf.KEY_PREFIX, self.warmer, *map(str, parts)])

    def claim_window(self, kind: str, length: float, gap: float, now: float | None = None) -> bool:
        """Take the ``kind`` claim of the current window of ``length`` seconds.

        Fails if another process holds it, or took the previous window's claim less than ``gap``
        seconds ago. Raises if the cache cannot be reached, ``CacheUnreachable`` when it only says
        so by storing nothing (the caller logs and skips).
        """
        now = time.time() if now is None else now
        window = math.floor(now / length)
        previous = self.cache.get(self.key(kind, window - 1))
        if isinstance(previous, dict) and now - float(previous.get("at", 0)) < gap:
            return False
        record = {"at": now, "owner": OWNER}
        return self._add(self.key(kind, window), record, math.ceil(length * 2))

    def _add(self, key: str, value: object, timeout: int) -> bool:
        """``cache.add``; False only when someone else holds ``key``.

        Raises ``CacheUnreachable`` when ``add`` says no but the key is not there either.
        """
        if self.cache.add(key, value, timeout=timeout):
            return True
        # Refused: held by someone, or the cache stores nothing. The database cache also refuses
        # an add() for up to a second after the holder's claim expired (it compares whole
        # seconds) while get() already misses it, so ask the cache itself whether it answers.
        if self.cache.get(key) is None and not self._answers():
            raise CacheUnreachable(
                f"claim {key!r} was refused but nobody holds it, and the cache does not store a "
                "probe value: it is unreachable or ignores its errors (e.g. django-redis "
                "IGNORE_EXCEPTIONS)"
            )
        return False

    def _answers(self) -> bool:
        """Whether the cache stores and returns a probe value now (a write, a read, a delete)."""
        key = self.key("probe", OWNER)
        token = uuid.uuid4().hex
        self.cache.set(key, token, timeout=30)
        answered = self.cache.get(key) == token
        self.cache.delete(key)
        return bool(answered)

    def last_run_started(self) -> float | None:
        """When the last complete run of this warmer started (epoch s); None if unknown.

        Written by ``record_run_started`` after a run that warmed every key; a lower bound of
        when each of its entries was written.
        """
        record = self.cache.get(self.key("last-run"))
        if isinstance(record, dict) and isinstance(record.get("at"), (int, float)):
            return float(record["at"])
        return None

    def slot_claimed_at(self, interval: float, now: float | None = None) -> float | None:
        """When the current slot's claim (``claim_slot``) was taken; None if nobody took it."""
        now = time.time() if now is None else now
        record = self.cache.get(self.key("slot", math.floor(now / interval)))
        if isinstance(record, dict) and isinstance(record.get("at"), (int, float)):
            return float(record["at"])
        return None

    def record_run_started(self, started: float, ttl: float | None) -> None:
        """Record that a run which started at ``started`` warmed every key.

        Kept as long as its entries (``ttl`` seconds, None: never expire), so an expired record
        never vouches for entries, and a forgotten one only makes the next start warm again.
        """
        timeout = None if ttl is None else max(1, math.ceil(ttl))
        self.cache.set(self.key("last-run"), {"at": started, "owner": OWNER}, timeout=timeout)

    def claim_startup(
        self, last_run: float | None, window: float, now: float | None = None
    ) -> bool:
        """Take the right to run the startup warm that replaces the run started at ``last_run``.

        Called when that run's entries may not outlive this process's first refresh (see
        ``startup_is_covered``). Every process that sees the same last run competes for one key,
        so processes starting together warm once; the key lasts ``window`` seconds, so a start
        later than that tries again if no complete run was recorded since. Raises like
        ``claim_window``.
        """
        now = time.time() if now is None else now
        seen = "none" if last_run is None else repr(last_run)
        record = {"at": now, "owner": OWNER}
        return self._add(self.key("startup", seen), record, math.ceil(window))

    def claim_slot(self, interval: float, now: float | None = None) -> bool:
        """One run per ``interval`` across every process sharing the cache."""
        return self.claim_window("slot", interval, gap=interval / 2, now=now)

    def acquire_running(self, ttl: float) -> bool:
        """Mark the warmer as running; fails while another process's run holds the mark.

        The mark expires after ``ttl`` seconds, so a crashed holder's claim does not last. Raises
        like ``claim_window``.
        """
        return self._add(self.key("running"), OWNER, math.ceil(ttl))

    def running_holder(self) -> object:
        """Who holds the running mark (None: nobody, or the cache could not be read)."""
        try:
            return self.cache.get(self.key("running"))
        except Exception:
            logger.debug(
                "cache warmer %s: its running mark could not be read", self.warmer, exc_info=True
            )
            return None

    def release_running(self) -> None:
        """Drop the running mark if this process still holds it."""
        key = self.key("running")
        if self.cache.get(key) == OWNER:
            self.cache.delete(key)
