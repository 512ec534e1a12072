"""A process's warming schedule: startup warms, then scheduled and adaptive warmers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable

from django.db import close_old_connections

from django_cachewarmers.core.schedule import next_slot, wait_until
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.core.threads import ThreadPerName
from django_cachewarmers.distributed import default_timeout, fan_out
from django_cachewarmers.parsing import get_specs
from django_cachewarmers.registry import get_entry
from django_cachewarmers.runner import ClaimKind, Elsewhere, Trigger, run_logged
from django_cachewarmers.spec import WarmerSpec
from django_cachewarmers.task_fanout import fan_out_tasks

logger = logging.getLogger("django_cachewarmers")


def first_slots(specs: Iterable[WarmerSpec], started: float) -> dict[str, float]:
    """When each scheduled or adaptive warmer first runs after a start at ``started`` (epoch s).

    The first slot after ``started``, the moment the startup warms began: so the first refresh
    starts within one ``refresh_interval`` of the start of the startup warm, and an entry it wrote
    (TTL at least ``refresh_interval + warmup_timeout``, see ``spec.refresh_ttl``) is rewritten
    before it expires. Slots stay aligned to the wall clock so that every process's claims meet.
    """
    return {
        spec.name: next_slot(spec.refresh_interval, started) for spec in specs if spec.is_scheduled
    }


def elsewhere_for(name: str) -> Elsewhere | None:
    """How a startup or scheduled run of warmer ``name`` is sent to workers (its ``via``):
    fanned out through Django's Tasks framework ("tasks", on the default task backend) or Celery
    ("celery"), under the run's claims; None to warm in this process ("local", or a warmer that
    is not valid: ``run_logged`` reports that)."""
    try:
        spec = get_entry(name)[0]
    except Exception:
        return None
    if spec.via not in ("tasks", "celery"):
        return None
    fan = fan_out_tasks if spec.via == "tasks" else fan_out

    def run(keys: list[Hashable] | None, trigger: str, hold_mark: bool) -> WarmingStats | None:
        return fan(name, keys=keys, trigger=trigger, hold_mark=hold_mark)

    return Elsewhere(run=run, wait_s=default_timeout(spec.config.warmup_timeout_s))


class WarmingScheduler:
    """Runs startup warms, then every scheduled and adaptive warmer once per interval.

    Each run happens on its own daemon thread through ``run_warm`` (which takes the cluster claim
    and records the run), so a slow warmer never delays another's schedule; a warmer whose previous
    run is still going skips its slot.
    """

    def __init__(
        self,
        names: Iterable[str] | None = None,
        *,
        startup: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.names = None if names is None else set(names)
        self.startup = startup
        #: The wall clock (epoch seconds) slots are computed with; tests inject their own.
        self.clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runs = ThreadPerName()
        self._thread: threading.Thread | None = None

    def _specs(self) -> dict[str, WarmerSpec]:
        return {n: s for n, s in get_specs().items() if self.names is None or n in self.names}

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Run the schedule on a daemon thread; False if it is already running."""
        with self._lock:
            if self.running:
                return False
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run, name="cachewarmer-scheduler", daemon=True
            )
        self._thread.start()
        return True

    def run(self) -> None:
        """Run the schedule in the calling thread until ``stop()``."""
        try:
            self._loop()
        except Exception:
            logger.exception("cache warming scheduler stopped by an unexpected error")

    def _loop(self) -> None:
        specs = self._specs()
        # Taken before the startup warms begin: the first refresh is counted from their start.
        started = self.clock()
        if self.startup:
            for spec in specs.values():
                if spec.warms_at_startup:
                    self._dispatch(spec.name, "startup", "startup")
        due = first_slots(specs.values(), started)
        while due:
            name, at = min(due.items(), key=lambda item: item[1])
            if self._wait_until(at):
                return
            close_old_connections()
            self._dispatch(name, "schedule", "schedule")
            due[name] = next_slot(specs[name].refresh_interval, max(at, self.clock()))
        self._stop.wait()

    def _wait_until(self, at: float) -> bool:
        """Wait until ``self.clock()`` reaches ``at``; True if the schedule was stopped."""
        return wait_until(self._stop, at, self.clock)

    def _dispatch(self, name: str, trigger: Trigger, claim: ClaimKind) -> None:
        started = self._runs.start(
            name, self._run_one, name, trigger, claim, thread_name=f"cachewarmer[{name}]-{trigger}"
        )
        if not started:
            logger.info(
                "cache warmer %s: %s run skipped: the last run is still going", name, trigger
            )

    def _run_one(self, name: str, trigger: Trigger, claim: ClaimKind) -> None:
        close_old_connections()
        if not self._stop.is_set():
            run_logged(name, trigger, claim, elsewhere_for(name))

    def request_stop(self) -> None:
        """Ask the schedule to end soon; safe to call from a signal handler."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the schedule, cancel runs in flight (they are recorded as cut short), and join."""
        self._stop.set()
        runs = self._runs.alive()
        with self._lock:
            thread = self._thread
        for name in runs:
            try:
                get_entry(name)[1].cancel("shutting down")
            except Exception:
                logger.debug("cache warmer %s: could not cancel its run", name, exc_info=True)
        deadline = time.monotonic() + timeout
        self._runs.join(timeout)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
