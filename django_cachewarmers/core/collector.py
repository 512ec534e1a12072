"""One run of the engine: hands out work, gathers results, writes batches, reads them back."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django_cachewarmers.core.loaders import (
    STORED_BY_LOADER,
    BatchValueLoader,
    loader_hook,
    stored_key,
)
from django_cachewarmers.core.pool import Run
from django_cachewarmers.core.stats import WarmingStats, exception_text

if TYPE_CHECKING:
    from django_cachewarmers.core.cache_io import CacheIO
    from django_cachewarmers.core.engine import CacheWarmer

logger = logging.getLogger("django_cachewarmers")

#: A worker signals the collector after this many results (and when it runs out of keys) ...
WAKE_EVERY = 1000
#: ... and the collector looks for results at least this often anyway.
_POLL_S = 0.05
#: Read-back verification checks every written key of a run up to this many; above it, a random
#: sample of this many (docs/guarantees.md, "Read-back verification").
VERIFY_ALL_UP_TO = 10_000
#: Keys per read-back round trip (one get_many call): what is cheapest per key while a reply
#: (get_many returns the values) stays small.
VERIFY_CHUNK = 1000
#: Batches a run keeps sent to the cache while it gathers the next one (where the backend can
#: send a batch without waiting for the answer: ``BackendAdapter.start_write``); the oldest is
#: finished (its answer read) as another one is sent.
WRITES_IN_FLIGHT = 2

T = TypeVar("T", bound=Hashable)


@dataclass
class ReadBack(Generic[T]):
    """What ``read_back`` found: the items it read back, and those a real read would miss."""

    #: The items read back: every one up to ``VERIFY_ALL_UP_TO``, else a random sample that big.
    sample: list[T]
    #: The sampled items a real read would not get a value for now, each with a reason of its
    #: own (a value that does not decode, a loader's ``check_stored`` answer) or None (simply not
    #: there: ``cause`` names the likely reason). Once a round trip raised, it and every later
    #: item read through the cache count as lost.
    lost: dict[T, str | None] = field(default_factory=dict)
    #: Why a round trip failed ("the read-back failed: ..."), None when every one answered.
    error: str | None = None

    @property
    def nothing_read_back(self) -> bool:
        """True when items were read and not one of them was in the cache."""
        return bool(self.sample) and len(self.lost) == len(self.sample)

    def cause(self, io: CacheIO, written: int) -> str:
        """The likely reason for the losses: the read's own failure; else, when some item is
        simply not there, ``CacheIO.loss_cause(written)`` (``written``: how many keys the run
        wrote); else the first item's own reason."""
        if self.error is not None:
            return self.error
        if any(reason is None for reason in self.lost.values()):
            return io.loss_cause(written)
        return next((reason for reason in self.lost.values() if reason is not None), "")

    def own_reason(self, item: T) -> str | None:
        """A lost ``item``'s own reason, or None when the run's ``cause`` explains it (always
        when the read itself failed)."""
        return None if self.error is not None else self.lost.get(item)

    def sample_note(self, written: int) -> str | None:
        """For a run's errors when only a sample of its ``written`` keys was read and part of it
        (not all) was lost: how many of the written keys that suggests are not cached."""
        if len(self.sample) >= written or not self.lost or self.nothing_read_back:
            return None
        estimate = round(len(self.lost) * written / len(self.sample))
        return (
            f"read-back sample: {len(self.lost)} of {len(self.sample)} checked keys were lost, "
            f"so about {estimate} of the {written} written keys are not cached"
        )


def read_back(
    io: CacheIO,
    items: Sequence[T],
    key: Callable[[T], Hashable] | None = None,
    *,
    checked_by_loader: Collection[T] = (),
    check_stored: Callable[[list[T]], Mapping[T, object]] | None = None,
) -> ReadBack[T]:
    """Read written entries back with the read-back policy: every item up to
    ``VERIFY_ALL_UP_TO``, a random sample of that many above it, in round trips of
    ``VERIFY_CHUNK`` keys through the cache (``CacheIO.misses``: a real read, as a request's).

    ``key(item)``: the cache key an item is read back under (default: the item itself). The items
    in ``checked_by_loader`` (entries a loader stored itself) are asked of the loader's
    ``check_stored(items)`` hook instead: it maps each item to None when its entry is held, else
    to the reason. Used by a run's collector after its last write and by the Celery fan-out after
    its last chunk, so both count the same way. Never raises: a failing round trip is in
    ``ReadBack.error``, a failing ``check_stored`` fails its items with the reason.
    """
    key_of = key or (lambda item: item)
    sample = (
        list(items) if len(items) <= VERIFY_ALL_UP_TO else random.sample(items, VERIFY_ALL_UP_TO)
    )
    found = ReadBack(sample=sample)
    if checked_by_loader and check_stored is not None:
        asked = set(checked_by_loader)
        ours = [item for item in sample if item not in asked]
        theirs = [item for item in sample if item in asked]
    else:
        ours, theirs = sample, []
    for start in range(0, len(ours), VERIFY_CHUNK):
        part = ours[start : start + VERIFY_CHUNK]
        try:
            misses = io.misses([key_of(item) for item in part])
        except Exception as exc:
            found.error = f"the read-back failed: {exception_text(exc)}"
            logger.debug("cache warmer %s: read-back failed", io.name, exc_info=True)
            found.lost.update(dict.fromkeys(ours[start:]))
            break
        for item in part:
            target = key_of(item)
            if target in misses:
                found.lost[item] = misses[target]
    for start in range(0, len(theirs), VERIFY_CHUNK):
        assert check_stored is not None  # narrowed for mypy: theirs is empty without it
        found.lost.update(_ask_loader(io.name, check_stored, theirs[start : start + VERIFY_CHUNK]))
    return found


def _ask_loader(
    name: str, check_stored: Callable[[list[T]], Mapping[T, object]], items: list[T]
) -> dict[T, str | None]:
    """The loader's ``check_stored`` answer for ``items``: the ones not held, with a reason."""
    try:
        answer = check_stored(list(items))
    except Exception as exc:
        logger.debug("cache warmer %s: check_stored failed", name, exc_info=True)
        return dict.fromkeys(items, f"the loader's check_stored raised {exception_text(exc)}")
    lost: dict[T, str | None] = {}
    for item in items:
        if item not in answer:
            lost[item] = "the loader's check_stored gave no answer for this key"
        elif answer[item] is not None:
            lost[item] = str(answer[item])
    return lost


class Collector:
    """Runs one warm: hands out work, gathers results, writes batches, keeps the deadline."""

    def __init__(self, warmer: CacheWarmer, run: Run, stats: WarmingStats, deadline: float) -> None:
        self.warmer = warmer
        self.run = run
        self.stats = stats
        self.deadline = deadline
        #: Loaded keys not written yet, and their values, in the same order.
        self.pending_keys: list[Hashable] = []
        self.pending_values: list[Any] = []
        self.batch_size = warmer.config.batch_size
        #: Keys done with (failed, or warmed one by one); keys written a batch at a time are only
        #: in ``written``, counted in ``written_in_bulk``.
        self.finished: set[Hashable] = set()
        self.written_in_bulk = 0
        self.received = 0
        self.collect_keys: list[Hashable] = []
        self.todo: deque[Hashable] = deque()
        self.write_failed = False
        #: Keys this run wrote (or the loader stored itself), for the read-back verification.
        self.written: list[Hashable] = []
        self.alias: dict[Hashable, Hashable] = {}  # read-back key -> warmer key (``stored_key``)
        #: Keys the loader stored itself and checks with its ``check_stored`` hook.
        self.checked_by_loader: list[Hashable] = []
        self.check_stored = loader_hook(warmer.value_loader, "check_stored")
        self.key_problem = warmer.backend.key_problem
        self.backend = warmer.backend
        self.has_keys = getattr(warmer.cache, "make_key", None) is not None
        #: Batches sent to the cache whose answer is not read yet, oldest first: their values and
        #: the function that finishes the write (``CacheIO.start_write``).
        self.in_flight: deque[tuple[dict[Hashable, Any], Callable[[], dict[Hashable, str]]]] = (
            deque()
        )

    def collect(self, keys: list[Hashable]) -> None:
        self.collect_keys = keys
        warmer, run = self.warmer, self.run
        config = warmer.config
        loader = warmer.value_loader
        if isinstance(loader, BatchValueLoader):
            size = config.batch_size
            tasks = [
                warmer._work.batch_task(run, self.deadline, keys[i : i + size], loader)
                for i in range(0, len(keys), size)
            ]
        else:
            todo = deque(keys)
            self.todo = todo
            tasks = [
                warmer._work.drain_task(run, self.deadline, todo)
                for _ in range(min(config.max_workers, len(keys)))
            ]
        warmer._pool.submit_many(run, tasks)
        expected = len(keys)
        try:
            while self.received < expected and not run.cancelled.is_set():
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    run.cancel(f"timed out after {config.warmup_timeout_s:g}s")
                    break
                with contextlib.suppress(queue.Empty):
                    run.wake.get(timeout=min(remaining, _POLL_S))
                self._take_results()
            self._take_results()  # what finished before a cut-off counts, a hung worker's too
            if self.received < expected:
                self._take_open_chunks()
            self._flush(everything=True)
        finally:
            self._finish_writes()  # no batch stays unanswered, whatever happened
        self._verify()  # after the run's last write: culling caused by later batches counts
        self._report_progress(expected)
        # Nothing of this run may outlive it: tasks no thread took, and keys a hung worker holds.
        warmer._pool.discard(run)
        self.todo.clear()
        if len(self.finished) + self.written_in_bulk < expected:
            run.cancel(run.cancel_reason)  # stop workers still busy with this run
            done = self.finished.union(self.written)
            for key in keys:
                if key not in done:
                    self._fail(key, f"not warmed: {run.cancel_reason}")

    def _take_results(self) -> None:
        results = self.run.results
        if not results:
            return
        while results:
            self._handle(results.popleft())
        self._report_progress(len(self.collect_keys))

    def _take_open_chunks(self) -> None:
        """When a run ends before its workers handed everything over (a deadline, a
        cancellation): take the keys each worker has loaded but not handed over yet (its open
        chunk, ``Run.open_chunks``), and what was handed over meanwhile, each key once."""
        self._flush(everything=True)
        self._finish_writes()  # every key received so far is now finished (written or failed)
        seen = self.finished.union(self.written)
        seen.update(self.pending_keys)
        for keys, values in list(self.run.open_chunks.values()):
            # As they are now (a worker may go on; its key goes in before its value).
            taken = list(zip(list(keys), list(values), strict=False))
            fresh = [(key, value) for key, value in taken if key not in seen]
            seen.update(key for key, _ in fresh)
            self.received += len(fresh)
            self.pending_keys.extend(key for key, _ in fresh)
            self.pending_values.extend(value for _, value in fresh)
        results = self.run.results
        while results:
            kind, subject, ok, payload = results.popleft()
            if kind == "keys":  # a chunk handed over while the open ones were taken
                fresh = [(k, v) for k, v in zip(subject, payload, strict=True) if k not in seen]
                seen.update(key for key, _ in fresh)
                subject, payload = [k for k, _ in fresh], [v for _, v in fresh]
            self._handle((kind, subject, ok, payload))

    def _report_progress(self, total: int) -> None:
        progress = self.run.progress
        if progress is None:
            return
        try:
            progress(min(self.received, total), total)
        except Exception:
            logger.exception("cache warmer %s: progress callback failed", self.warmer.name)

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind, subject, ok, payload = item
        if kind == "keys":  # a worker's chunk of loaded keys: their values, in order
            self.received += len(subject)
            self.pending_keys.extend(subject)
            self.pending_values.extend(payload)
            if len(self.pending_keys) >= self.batch_size:
                self._flush()
            return
        if kind == "key":  # a key that failed to load
            self.received += 1
            self._fail(subject, exception_text(payload))
            return
        batch: list[Hashable] = subject
        self.received += len(batch)
        if not ok:
            message = f"batch load failed: {exception_text(payload)}"
            for key in batch:
                self._fail(key, message)
            return
        values: dict[Hashable, Any] = payload
        try:
            loaded = [values[key] for key in batch]
        except KeyError:
            keys = []
            for key in batch:
                if key in values:
                    keys.append(key)
                else:
                    self._fail(key, "batch loader returned no value for this key")
            loaded = [values[key] for key in keys]
            batch = keys
        self.pending_keys.extend(batch)
        self.pending_values.extend(loaded)
        self._flush(everything=True)

    def _flush(self, *, everything: bool = False) -> None:
        """Write the pending values in batches of ``batch_size`` (``everything``: the rest too,
        as a smaller batch)."""
        size = self.batch_size
        keys, loaded = self.pending_keys, self.pending_values
        if len(keys) < size and not (everything and keys):
            return
        self.pending_keys, self.pending_values = [], []
        for start in range(0, len(keys), size):
            if start + size > len(keys) and not everything:  # not a full batch: it waits
                self.pending_keys, self.pending_values = keys[start:], loaded[start:]
                break
            end = start + size
            self._write_batch(dict(zip(keys[start:end], loaded[start:end], strict=True)))

    def _write_batch(self, values: dict[Hashable, Any]) -> None:
        """Check ``values`` as a batch and start writing them (``CacheIO.start_write``); the
        write of the batch before is finished then, while this one is sent: the cache stores one
        batch while the next one is gathered (``WRITES_IN_FLIGHT``)."""
        ids = list(map(id, values.values()))  # by identity: a value's own == is not asked
        if _NONE_ID in ids or _STORED_ID in ids:
            for key in [k for k, v in values.items() if v is STORED_BY_LOADER or v is None]:
                if values.pop(key) is None:
                    # Nothing written: the good value cached before stays (a None reads as a miss).
                    self._fail(key, _LOADED_NONE)
                else:  # the loader warmed it itself: nothing to write, but verified too
                    self._stored_by_loader(key)
        full_keys: dict[Hashable, str] | None = None
        if self.has_keys:  # a Django cache; a plain mapping takes any hashable key
            full_keys = self._made_keys(values)
        if not values:
            return
        if self.write_failed:
            for key in values:
                self._fail(key, "not written: the cache was unavailable earlier in this run")
            return
        if self.warmer.io.explicit_ttl_zero():
            # Django reads TTL 0 as "don't cache" and DELETES the key: keep the good old value.
            for key in values:
                self._fail(key, f"not written: {_TTL_ZERO}")
            self.stats.run_error = f"nothing was cached: {_TTL_ZERO}"
            return
        try:
            finish = self.warmer.io.start_write(self._with_companions(values, full_keys), full_keys)
        except Exception as exc:
            self._write_failed(values, exc)
            return
        self.in_flight.append((values, finish))
        while len(self.in_flight) > WRITES_IN_FLIGHT:
            self._finish_write()

    def _made_keys(self, values: dict[Hashable, Any]) -> dict[Hashable, str]:
        """The made keys of ``values``' keys (made once, for the check and the write), checked
        per batch with the backend's key rules; a refused key is failed and taken out."""
        keys = list(values)
        if set(map(type, keys)) == _STR_ONLY:
            names = self.backend.make_keys(keys)  # type: ignore[arg-type]
            problems = self.backend.key_problems(names)
            full_keys = dict(zip(keys, names, strict=True))
            for index, refused in problems.items():
                del values[keys[index]]
                self._fail(keys[index], f"invalid cache key: {refused}")
            return full_keys
        full_keys = {}
        make_key = self.warmer.cache.make_key  # type: ignore[union-attr]
        problem: str | None
        for key in keys:
            if isinstance(key, str):
                full = full_keys[key] = make_key(key)
                problem = self.key_problem(full)
            else:
                problem = f"keys of a Django cache must be strings, got {type(key).__name__}"
            if problem is not None:
                del values[key]
                self._fail(key, f"invalid cache key: {problem}")
        return full_keys

    def _finish_write(self) -> None:
        """Finish the oldest write in flight: its keys are written, or failed with the reason."""
        values, finish = self.in_flight.popleft()
        try:
            refused = finish()
        except Exception as exc:
            self._write_failed(values, exc)
            return
        if not refused:
            self._written_many(values)
            return
        for key in values:
            if key in refused:
                self._fail(key, refused[key])
            else:
                self._written(key)

    def _finish_writes(self) -> None:
        """Finish every write in flight (before the read-back, and when a run ends)."""
        while self.in_flight:
            self._finish_write()

    def _write_failed(self, values: dict[Hashable, Any], exc: Exception) -> None:
        """A batch write raised: the cache no longer answers (``CacheIO.write``). The first such
        batch of a run logs one line, sets ``run_error`` and stops the run; a batch in flight that
        fails after it just fails its keys."""
        reason = f"cache write failed: {type(exc).__name__}: {exc}"
        if not self.write_failed:
            self.write_failed = True
            self.stats.run_error = f"the cache was unavailable ({reason})"
            # One clear line per run for an outage, not a traceback and not a line per key.
            logger.error("cache warmer %s: %s; stopping this run", self.warmer.name, reason)
            logger.debug("cache warmer %s: cache write failure", self.warmer.name, exc_info=True)
            self.run.cancel("the cache was unavailable")
        for key in values:
            self._fail(key, reason)

    def _with_companions(
        self, values: dict[Hashable, Any], full_keys: dict[Hashable, str] | None
    ) -> dict[Hashable, Any]:
        """``values`` and the warmer's ``companions`` of them, to write in the same write (their
        made keys added to ``full_keys``); just ``values`` when there are none or the hook fails."""
        companions = self.warmer.companions
        if companions is None:
            return values
        try:
            extra = companions(values)
            if full_keys is not None and extra:
                make_key = self.warmer.cache.make_key  # type: ignore[union-attr]
                for key in extra:
                    full_keys[key] = make_key(key)
        except Exception:
            logger.warning("cache warmer %s: companions failed", self.warmer.name, exc_info=True)
            return values
        return {**values, **extra}

    def _stored_by_loader(self, key: Hashable) -> None:
        """A ``STORED_BY_LOADER`` key: the loader stored the entry itself. The read-back asks the
        loader's ``check_stored(keys)`` hook when it has one (``pages.render_page``: is the page
        cache that served the page still holding it?). Else it reads back under the key the
        loader says it stored (``core.loaders.stored_key``: by default the warmer's key; a loader,
        or its function, may define ``stored_key(key)`` returning another key of the same cache,
        or None when the entry cannot be looked up there)."""
        if self.check_stored is not None:
            self.finished.add(key)
            self.stats.keys_warmed += 1
            self.checked_by_loader.append(key)
            return
        target = stored_key(self.warmer.value_loader, key)
        make_key = getattr(self.warmer.cache, "make_key", None)
        # A key this cache cannot address (too long, not a string) was stored elsewhere.
        if (
            make_key is not None
            and target is not None
            and (not isinstance(target, str) or self.key_problem(make_key(target)))
        ):
            target = None
        if target is None:
            self.finished.add(key)
            self.stats.keys_warmed += 1
            return
        self._written(target)
        if target != key:  # a failed read-back must name the warmer's key
            self.alias[target] = key

    def _written(self, key: Hashable) -> None:
        self.finished.add(key)
        self.stats.keys_warmed += 1
        self.written.append(key)

    def _written_many(self, keys: Collection[Hashable]) -> None:
        """``_written`` for a whole batch, none of whose keys is finished yet: only in
        ``written`` (counted in ``written_in_bulk``), not in ``finished`` too."""
        self.written_in_bulk += len(keys)
        self.stats.keys_warmed += len(keys)
        self.written.extend(keys)

    def _verify(self) -> None:
        """Read the written keys back (``read_back``); the ones a real read would miss become
        failed keys. Keys a loader stored itself are asked of its ``check_stored`` hook instead.
        When nothing reads back, every written key fails and the run gets a ``run_error``.
        """
        written = self.written + self.checked_by_loader
        if not written:
            return
        stats, warmer = self.stats, self.warmer
        found = read_back(
            warmer.io,
            written,
            checked_by_loader=self.checked_by_loader,
            check_stored=self.check_stored,
        )
        stats.keys_verified += len(found.sample)
        if not found.lost:
            return
        lost_in_sample = len(found.lost)
        stats.keys_lost += lost_in_sample
        cause = found.cause(warmer.io, len(written))
        lost = list(found.lost)
        if found.nothing_read_back:
            # Nothing reads back: no written key can be counted warmed, sampled or not.
            if stats.run_error is None:  # an outage seen while writing keeps its own message
                stats.run_error = f"nothing read back: {cause}"
            lost = written
        note = found.sample_note(len(written))
        if note is not None:  # first, so that the bounded error list always keeps it
            stats.add_error_text(note)
        reason = f"not in the cache when read back: {cause}"
        for key in lost:
            stats.keys_warmed -= 1
            stats.keys_failed += 1
            stats.add_error(self.alias.get(key, key), found.own_reason(key) or reason)
        if not self.write_failed:  # an outage already had its one line
            logger.warning(
                "cache warmer %s: %d of %d keys read back were not in the cache: %s",
                warmer.name,
                lost_in_sample,
                len(found.sample),
                cause,
            )

    def _fail(self, key: Hashable, message: str) -> None:
        if key in self.finished:
            return
        self.finished.add(key)
        self.stats.keys_failed += 1
        self.stats.add_error(key, message)


_STR_ONLY = {str}
_NONE_ID = id(None)
_STORED_ID = id(STORED_BY_LOADER)
_TTL_ZERO = "timeout 0 means don't cache (None means never expire)"
_LOADED_NONE = "the loader returned None, which cache.get() cannot tell from a miss"
