"""What a worker thread does in a run: load keys (or batches), retry with backoff, report back."""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from django_cachewarmers.core.collector import WAKE_EVERY
from django_cachewarmers.core.loaders import BatchValueLoader
from django_cachewarmers.core.pool import Run, backoff_delay

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
        """A worker's share of a per-key run: load keys from ``todo`` until it is empty."""
        load = self.value_loader.load
        append = run.results.append
        cancelled = run.cancelled.is_set

        def task() -> None:
            done = 0
            prepare = True
            try:
                while not cancelled():
                    try:
                        key = todo.popleft()
                    except IndexError:
                        return
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
                    append(("key", key, True, value))
                    done += 1
                    if done % WAKE_EVERY == 0:
                        run.wake.put(True)
            finally:
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
