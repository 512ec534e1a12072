"""Coverage: the share of reads that hit while a scheduled warmer keeps 1,000 keys warm.

A scheduled warmer with ``timeout == refresh_interval`` (2 s) and 1,000 keys, served by gunicorn
with 2 workers on one redis-server (started here on a free port, never the user's Redis). Once the
startup warm has finished, a prober reads a random key every 20 ms straight from that Redis (the
cache every request reads) for 15 intervals, and the server is restarted (SIGTERM, then a new
gunicorn) after 6 of them. A probe hits when the key holds its value.

Side by side:

- ours, defaults: ``warmup_timeout`` 60 s, so the TTL grace writes with a TTL of 62 s;
- ours, ``warmup_timeout: 1``: a TTL of 3 s (refresh_interval + warmup_timeout);
- the baseline, what users write without this app: a loop that sets the 1,000 keys every
  interval with the same 2 s TTL (``cache.set_many(values, timeout=2); time.sleep(2)``), paused
  for as long as our restart took (the loop lives in the server, so a restart stops it too).

Not a timed test: ``python -m benchmarks --only coverage``.
"""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.processes import Project

N_KEYS = 1000
INTERVAL_S = 2.0
PROBE_EVERY_S = 0.02
INTERVALS = 15
RESTART_AFTER = 6  # intervals

KEYS = [f"item:{i}" for i in range(N_KEYS)]


def _warmer(**extra: Any) -> dict[str, Any]:
    return {
        "keys": "tests.testapp.warming.item_keys",
        "loader": "tests.testapp.warming.load_item",
        "strategy": "scheduled",
        "refresh_interval": INTERVAL_S,
        "timeout": INTERVAL_S,
        **extra,
    }


@dataclass
class Probes:
    """Reads of random keys; the longest run of consecutive misses, in seconds."""

    hits: int = 0
    misses: int = 0
    longest_gap_s: float = 0.0
    _gap_start: float | None = None
    during_restart: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def total(self) -> int:
        return self.hits + self.misses

    @property
    def share(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def record(self, hit: bool, now: float) -> None:
        if hit:
            self.hits += 1
            if self._gap_start is not None:
                self.longest_gap_s = max(self.longest_gap_s, now - self._gap_start)
                self._gap_start = None
        else:
            self.misses += 1
            if self._gap_start is None:
                self._gap_start = now

    def summary(self) -> str:
        gap = f", longest miss streak {self.longest_gap_s:.2f} s" if self.misses else ""
        return f"{self.share:.3%} ({self.misses:,} misses of {self.total:,}{gap})"


def _probe(cache: Any, stop: threading.Event, probes: Probes) -> None:
    rng = random.Random(14)
    next_at = time.monotonic()
    while not stop.is_set():
        key = rng.choice(KEYS)
        probes.record(cache.get(key) == f"value of {key}", time.monotonic())
        next_at += PROBE_EVERY_S
        stop.wait(max(0.0, next_at - time.monotonic()))


def _measure(project: Project, restart: Any) -> tuple[Probes, float]:
    """Probe for INTERVALS intervals, calling ``restart()`` (returns its downtime) on the way."""
    from django.core.cache.backends.redis import RedisCache

    from tests.redis_server import close_redis

    reader = RedisCache(project.redis_url, {"KEY_PREFIX": project.prefix})
    probes = Probes()
    stop = threading.Event()
    thread = threading.Thread(target=_probe, args=(reader, stop, probes), daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        time.sleep(RESTART_AFTER * INTERVAL_S)
        downtime = restart()
        time.sleep(max(0.0, started + INTERVALS * INTERVAL_S - time.monotonic()))
    finally:
        stop.set()
        thread.join(10)
        close_redis(reader)
    return probes, downtime


def _ours(tmp: Path, server: Any, **extra: Any) -> tuple[Probes, float, int]:
    from tests.processes import Project, wait_until

    project = Project(tmp, server, {"coverage": _warmer(**extra)})
    project.env.update(CW_N_KEYS=str(N_KEYS), CW_LOG_LEVEL="WARNING")
    try:
        migrated = project.manage("migrate", "--noinput", "--skip-checks")
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        gunicorn, port = project.start_gunicorn("gunicorn-1.log", workers=2)
        wait_until(
            lambda: any(r["trigger"] == "startup" for r in project.runs()),
            60,
            "the startup warm to finish",
        )
        servers = [gunicorn]

        def restart() -> float:
            down = time.monotonic()
            project.stop(servers[0], signal.SIGTERM)
            servers[0], _ = project.start_gunicorn("gunicorn-2.log", workers=2, port=port)
            return time.monotonic() - down

        probes, downtime = _measure(project, restart)
        refreshes = sum(1 for r in project.runs() if r["trigger"] == "schedule")
        project.stop(servers[0], signal.SIGTERM)
        return probes, downtime, refreshes
    finally:
        project.cache.clear()  # only the redis-server started here
        project.cleanup()


def _baseline(tmp: Path, server: Any, downtime: float) -> Probes:
    """The user's own loop: set every key with a TTL of one interval, every interval."""
    from django.core.cache.backends.redis import RedisCache

    from tests.processes import Project
    from tests.redis_server import close_redis

    project = Project(tmp, server, {})
    writer = RedisCache(project.redis_url, {"KEY_PREFIX": project.prefix})
    values = {key: f"value of {key}" for key in KEYS}
    stop = threading.Event()
    paused = threading.Event()
    resume = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if paused.is_set():  # the server is down: so is its loop
                resume.wait()
                paused.clear()
            writer.set_many(values, timeout=INTERVAL_S)
            stop.wait(INTERVAL_S)

    writer.set_many(values, timeout=INTERVAL_S)  # its "startup warm"
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def restart() -> float:
        paused.set()
        time.sleep(downtime)
        resume.set()
        return downtime

    try:
        probes, _ = _measure(project, restart)
    finally:
        stop.set()
        resume.set()
        thread.join(10)
        writer.clear()  # only the redis-server started here
        close_redis(writer)
        project.cleanup()
    return probes


def run() -> list[dict[str, str]]:
    """One row per configuration of ours, each beside the user's loop."""
    from tests.redis_server import RedisServer

    label = (
        f"coverage: {N_KEYS:,} keys, scheduled every {INTERVAL_S:g} s with timeout "
        f"{INTERVAL_S:g} s, gunicorn 2 workers, 1 probe / {PROBE_EVERY_S * 1000:g} ms for "
        f"{INTERVALS} intervals across a restart (hits after the startup warm)"
    )
    if shutil.which("redis-server") is None:
        skipped = "skipped: no redis-server (`bash .ci/run` installs it)"
        return [{"benchmark": label, "ours": skipped, "baseline": "-", "ratio": "-"}]
    server = RedisServer()
    tmp = Path(tempfile.mkdtemp(prefix="cachewarmers-coverage-bench-"))
    server.start()
    try:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        (tmp / "c").mkdir()
        ours, downtime, refreshes = _ours(tmp / "a", server)
        tight, tight_downtime, tight_refreshes = _ours(tmp / "b", server, warmup_timeout=1)
        baseline = _baseline(tmp / "c", server, max(downtime, tight_downtime))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    loop = (
        f"{baseline.summary()} (set_many every {INTERVAL_S:g} s, TTL {INTERVAL_S:g} s, paused "
        f"{max(downtime, tight_downtime):.1f} s for the restart)"
    )
    return [
        {
            "benchmark": f"{label}; ours with defaults (TTL grace: 62 s)",
            "ours": (
                f"{ours.summary()}; {refreshes} scheduled runs, restart down {downtime:.1f} s"
            ),
            "baseline": loop,
            "ratio": f"{ours.misses:,} vs {baseline.misses:,} misses",
        },
        {
            "benchmark": f"{label}; ours with warmup_timeout 1 s (TTL grace: 3 s)",
            "ours": (
                f"{tight.summary()}; {tight_refreshes} scheduled runs, restart down "
                f"{tight_downtime:.1f} s"
            ),
            "baseline": loop,
            "ratio": f"{tight.misses:,} vs {baseline.misses:,} misses",
        },
    ]
