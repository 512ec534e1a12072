"""The framework-free parts of the read path: ``SingleFlight``, ``Refresher``, ``ReadCounts``, and
``ReadThrough`` on a plain dict-like store (no Django): the core works on any Django-style cache."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from django_cachewarmers.core.config import WarmingConfig
from django_cachewarmers.core.loaders import CallableValueLoader
from django_cachewarmers.core.readcounts import BACKLOG_LIMIT, HIT, MISS, STALE, ReadCounts
from django_cachewarmers.core.readthrough import KeyNames, ReadThrough, key_problem, write_times
from django_cachewarmers.core.refresher import Refresher
from django_cachewarmers.core.singleflight import SingleFlight
from tests.processes import wait_until


def test_single_flight_shares_one_call_and_its_exception(release: threading.Event) -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls: list[int] = []
    results: list[Any] = []

    def fn() -> int:
        calls.append(1)
        release.wait(30)
        raise RuntimeError("boom")

    def caller() -> None:
        try:
            results.append(flight.do("k", fn))
        except RuntimeError as exc:
            results.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: flight.waiters("k") == 7, 30, "7 waiters")
    release.set()
    for thread in threads:
        thread.join(30)
    assert calls == [1]
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert not flight.in_flight("k")
    assert flight.do("k", lambda: 5) == 5  # the next call runs anew


def test_a_waiter_stops_waiting_after_wait_and_calls_itself(release: threading.Event) -> None:
    flight: SingleFlight[str] = SingleFlight()
    started = threading.Event()

    def hung() -> str:
        started.set()
        release.wait(30)
        return "late"

    leader = threading.Thread(target=lambda: flight.do("k", hung))
    leader.start()
    assert started.wait(30)
    assert flight.do("k", lambda: "own", wait=0.01) == "own"
    release.set()
    leader.join(30)


def test_refresher_runs_one_task_per_key_and_never_raises(release: threading.Event) -> None:
    exits: list[int] = []
    refresher = Refresher("t", max_threads=2, on_thread_exit=lambda: exits.append(1))
    runs: list[str] = []

    def task(name: str) -> None:
        runs.append(name)
        release.wait(30)
        if name == "bad":
            raise RuntimeError("refresh failed")

    assert refresher.submit("a", lambda: task("a"))
    assert not refresher.submit("a", lambda: task("a"))  # already queued or running
    assert refresher.submit("bad", lambda: task("bad"))
    assert refresher.pending("a")
    release.set()
    assert refresher.wait_idle(30)
    assert sorted(runs) == ["a", "bad"]
    assert refresher.submit("a", lambda: task("a"))  # done: may run again
    assert refresher.wait_idle(30)


def test_refresher_drops_keys_beyond_its_backlog(release: threading.Event) -> None:
    refresher = Refresher("t", max_threads=1, max_pending=2)
    assert refresher.submit(1, lambda: release.wait(30))
    assert refresher.submit(2, lambda: None)
    assert not refresher.submit(3, lambda: None)
    release.set()
    assert refresher.wait_idle(30)


def test_read_counts_are_exact_across_threads() -> None:
    counts = ReadCounts()

    def record() -> None:
        for _ in range(BACKLOG_LIMIT * 3 + 7):
            counts.record(HIT)
        counts.record(MISS)
        counts.record(STALE)

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts.totals() == {
        "hits": 8 * (BACKLOG_LIMIT * 3 + 7),
        "misses": 8,
        "stale": 8,
        "refreshes": 0,
        "refresh_failures": 0,
    }


class Store(dict[str, Any]):
    """A minimal Django-style cache without key rules (no ``make_key``): the core needs no more."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, default)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return {key: self[key] for key in keys if key in self}

    def set(self, key: str, value: Any, timeout: Any = None) -> None:
        self[key] = value

    def set_many(self, data: dict[str, Any], timeout: Any = None) -> list[str]:
        self.update(data)
        return []

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        return self.setdefault(key, value) is value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def test_read_through_on_any_django_style_cache() -> None:
    store = Store()
    loads: list[str] = []

    def load(key: str) -> str:
        loads.append(key)
        return key.upper()

    now = [1000.0]
    reader = ReadThrough(
        "t",
        lambda: store,
        CallableValueLoader(load),
        WarmingConfig(),
        fresh_for=10,
        prefix="p",
        clock=lambda: now[0],
    )
    assert reader.get("a") == "A"
    assert store == {"a": "A", "p:written:a": 1000.0}
    assert reader.get("a") == "A"
    assert loads == ["a"]
    now[0] += 11  # older than fresh_for: served stale, refreshed in the background
    assert reader.get("a") == "A"
    assert reader.refresher.wait_idle(30)
    assert loads == ["a", "a"]
    assert store["p:written:a"] == 1011.0
    assert reader.counts.totals()["refreshes"] == 1


def test_coordination_keys_that_would_break_key_rules_are_hashed() -> None:
    names = KeyNames("p", lambda name: len(name) <= 40)
    assert names.companion("short") == "p:written:short"
    hashed = names.companion("x" * 40)
    assert hashed.startswith("p:written:#")
    assert len(hashed) == len("p:written:#") + 64
    companions = write_times(names, clock=lambda: 5.0)({"short": 1, 7: 2})
    assert companions == {"p:written:short": 5.0}  # not a string key: nothing for it


def test_key_problem_follows_the_warms_rules() -> None:
    from django_cachewarmers.core.backends import BackendAdapter

    assert key_problem({}, BackendAdapter(None), ("any", "hashable")) is None
    assert key_problem({}, BackendAdapter(None), ["unhashable"]) == "key is not hashable (list)"


def test_fresh_for_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fresh_for"):
        ReadThrough("t", Store, CallableValueLoader(str), WarmingConfig(), fresh_for=0)
