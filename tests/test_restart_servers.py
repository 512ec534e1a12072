"""Real processes: gunicorn (2 workers, shared Redis) restarted just before a slot stays warm.

A scheduled warmer with refresh_interval 8, warmup_timeout 3 and timeout 8 writes with a TTL of
11 s (the grace). Its last slot ran at S - 8, so its entries expire at S + 3; gunicorn is stopped
0.3 s before the slot S and started again at once, so the new workers' first slot is S + 8.
Before the fix they skipped their startup warm (the old generation's startup claim was less than
CACHE_WARMERS_STARTUP_WINDOW old) and every read missed from S + 3 to S + 8. Now the last
complete run is too old to outlive the first refresh, so one of the new workers warms at start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.processes import Project, started_at, wait_until

pytestmark = pytest.mark.slow

INTERVAL = 8.0
TICKER = {
    "keys": ["tick:1", "tick:2"],
    "loader": "tests.testapp.warming.load_item",
    "strategy": "scheduled",
    "refresh_interval": INTERVAL,
    "timeout": INTERVAL,
    "warmup_timeout": 3,
}


def test_gunicorn_restarted_just_before_a_slot_leaves_no_miss(
    projects: Callable[..., Project],
) -> None:
    p = projects({"ticker": TICKER})
    old, _ = p.start_gunicorn("old.log")
    wait_until(
        lambda: any(r["trigger"] == "schedule" for r in p.runs()), 3 * INTERVAL, "a slot run"
    )
    # Just before the next slot boundary S (at least 1 s ahead).
    slot = (time.time() // INTERVAL + 1) * INTERVAL
    if slot - time.time() < 1.0:
        slot += INTERVAL
    time.sleep(max(0.0, slot - 0.3 - time.time()))
    restarted = time.time()
    # Probe from the restart (through the shutdown and the new start) until the new workers'
    # first slot (S + 8) has rewritten the keys.
    probed: list[bool] = []
    miss_times: list[float] = []

    def probe() -> None:
        while time.time() < slot + INTERVAL + 1.5:
            hit = p.warmed("tick:1", "tick:2")
            probed.append(hit)
            if not hit:
                miss_times.append(round(time.time() - slot, 2))
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    p.stop(old)
    p.start_gunicorn("new.log")
    prober.join()
    probes, misses = len(probed), probed.count(False)
    assert probes > 100
    assert misses == 0, f"{misses} of {probes} probes missed, at S + {miss_times[:5]} s"
    runs = [r for r in p.runs() if started_at(r).timestamp() >= restarted]
    startup = [r for r in runs if r["trigger"] == "startup"]
    # Once per cluster: the two new workers warmed at start once between them.
    assert len(startup) == 1, runs
    assert startup[0]["keys_warmed"] == 2
    assert "startup run skipped" in p.log("new.log")  # the other worker's, as it should
