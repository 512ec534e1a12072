"""What a worker thread does in a run: load keys (or batches), retry with backoff, report back."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from django_cachewarmers.core.collector import WAKE_EVERY
from django_cachewarmers.core.loaders import BatchValueLoader
from django_cachewarmers.core.pool import Run, backoff_delay

#: A worker hands its chunk of loaded keys to the collector at least this often (seconds since
#: the chunk's first key was taken): a cheap loader's keys go over in chunks, a slow one's at once.
HANDOFF_S = 0.002

if TYPE_CHECKING:
    from django_cachewarmers.core.engine import CacheWarmer

logger = logging.getLogger("django_cachewarmers")


class Work:
    """Builds the tasks of one warmer's runs; each task runs on a pool thread."""

    def __init__(self, warmer: CacheWarmer) -> None:
        self.warmer = warmer
        self.name = warmer.name
        self.config = warmer.config
        self.value_loader = warmer.value_loader
        self._before_load = warmer._before_load

    def _prepare_load(self) -> None:
        """Call the ``before_load`` hook; its failure is logged, the load goes ahead."""
        if self._before_load is None:
            return
        try:
            self._before_load()
        except Exception:
            logger.exception("cache warmer %s: before_load hook failed", self.name)

    def _retry(
        self, run: Run, deadline: float, label: object, func: Callable[[], Any], error: Exception
    ) -> Any:
        """After ``func`` failed with ``error``: retry with backoff; raise the last error."""
        config = self.config
        attempt = 1
        while True:
            if attempt >= config.attempts or run.cancelled.is_set():
                raise error
            delay = backoff_delay(attempt, config.retry_backoff_s, config.retry_backoff_max_s)
            if time.monotonic() + delay >= deadline:
                raise error
            logger.debug(
                "cache warmer %s: retrying %r in %.3fs (attempt %d of %d): %s",
                self.name,
                label,
                delay,
                attempt + 1,
                config.attempts,
                error,
            )
            attempt += 1
            if run.cancelled.wait(delay):
                raise error
            self._prepare_load()  # e.g. replace the database connection that just failed
            try:
                return func()
            except Exception as exc:
                error = exc

    def drain_task(self, run: Run, deadline: float, todo: deque[Hashable]) -> Callable[[], None]:
        """A worker's share of a per-key run: load keys from ``todo`` until it is empty.

        Keys are taken one at a time (slow loaders stay spread over the workers), and handed to
        the collector in chunks: a chunk goes over once it holds ``batch_size`` keys, or once
        ``HANDOFF_S`` has passed since its first key was taken (a slow loader's key goes over as
        soon as it is loaded), or when ``todo`` is empty. A key that fails goes over alone, with
        its error. Until it goes over, a chunk is in ``run.open_chunks``, where the collector
        takes it if the run ends first (a deadline while this worker hangs in a loader).
        """
        load = self.value_loader.load
        append = run.results.append
        cancelled = run.cancelled.is_set
        limit = self.config.batch_size
        clock = time.monotonic

        def task() -> None:
            slot = threading.get_ident()
            keys: list[Hashable] = []
            values: list[Any] = []
            run.open_chunks[slot] = (keys, values)
            handed = 0
            started = 0.0
            prepare = True

            def hand_over() -> None:
                nonlocal keys, values, handed
                if not keys:
                    return
                chunk = (keys, values)
                keys, values = [], []
                run.open_chunks[slot] = (keys, values)
                append(("keys", chunk[0], True, chunk[1]))
                before, handed = handed, handed + len(chunk[0])
                if handed // WAKE_EVERY != before // WAKE_EVERY:
                    run.wake.put(True)

            try:
                while not cancelled():
                    try:
                        key = todo.popleft()
                    except IndexError:
                        return
                    if not keys:
                        started = clock()
                    if prepare:  # at the start, and after a failed key
                        self._prepare_load()
                        prepare = False
                    try:
                        value = load(key)
                    except Exception as exc:
                        try:
                            value = self._retry(
                                run, deadline, key, functools.partial(load, key), exc
                            )
                        except Exception as final:
                            logger.debug("cache warmer %s: loading %r failed", self.name, key)
                            append(("key", key, False, final))
                            prepare = True
                            continue
                    keys.append(key)
                    values.append(value)
                    if len(keys) >= limit or clock() - started >= HANDOFF_S:
                        hand_over()
            finally:
                hand_over()
                run.wake.put(True)

        return task

    def batch_task(
        self, run: Run, deadline: float, batch: list[Hashable], loader: BatchValueLoader
    ) -> Callable[[], None]:
        def task() -> None:
            if run.cancelled.is_set():
                return
            label = f"batch of {len(batch)}"
            self._prepare_load()
            try:
                try:
                    values = loader.load_batch(batch)
                except Exception as exc:
                    values = self._retry(
                        run, deadline, label, lambda: loader.load_batch(batch), exc
                    )
            except Exception as final:
                logger.debug("cache warmer %s: %s failed", self.name, label)
                run.results.append(("batch", batch, False, final))
            else:
                run.results.append(("batch", batch, True, values))
            run.wake.put(True)

        return task
