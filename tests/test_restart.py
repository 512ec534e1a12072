"""A restart soon after the last warm: the startup warm is skipped only when the cache stays warm.

In process, through ``run_warm`` on the real LocMem cache: every complete run records when it
started, and a startup run is skipped only when that run's entries outlive the process's first
refresh (``claims.startup_is_covered``, whose arithmetic tests/test_claims.py covers with an
injected clock). The two-process case (gunicorn restarted just before a slot) is in
tests/test_restart_servers.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_cachewarmers.claims import Claims
from django_cachewarmers.runner import run_warm
from tests.testapp import warming

LOAD = "tests.testapp.warming.load_item"
WARMERS = {
    # refresh_interval 4, warmup_timeout 1: written with a TTL of 5 s (the grace, W003).
    "ticker": {
        "keys": ["tick:1", "tick:2"],
        "loader": LOAD,
        "strategy": "scheduled",
        "refresh_interval": 4,
        "timeout": 4,
        "warmup_timeout": 1,
    },
    "items": {"keys": "tests.testapp.warming.item_keys", "loader": LOAD, "timeout": 600},
    "flaky": {
        "keys": "tests.testapp.warming.item_keys",
        "loader": "tests.testapp.warming.load_item_failing_3",
        "max_retries": 0,
        "timeout": 600,
    },
}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("warmers")]


@pytest.fixture
def warmers() -> Iterator[None]:
    caches["default"].clear()
    warming.CALLS.clear()
    with override_settings(CACHE_WARMERS=WARMERS):
        yield
    caches["default"].clear()


def last_run(name: str) -> float | None:
    return Claims(caches["default"], name).last_run_started()


def test_a_complete_run_records_its_start() -> None:
    before = time.time()
    stats = run_warm("items", trigger="startup", claim="startup")
    assert stats is not None
    assert stats.ok
    recorded = last_run("items")
    assert recorded is not None
    assert before <= recorded <= time.time()


def test_partial_and_failing_runs_record_nothing() -> None:
    assert run_warm("items", keys=["item:1"], trigger="api") is not None
    assert last_run("items") is None  # only some keys: the others may be old
    stats = run_warm("flaky", trigger="api")
    assert stats is not None
    assert stats.keys_failed > 0
    assert last_run("flaky") is None  # a failed key keeps its older entry


def test_a_restart_whose_entries_would_expire_warms_again() -> None:
    # The previous generation warmed (startup claim taken, run recorded) ...
    assert run_warm("ticker", trigger="startup", claim="startup") is not None
    # ... and its last complete run started 10 s ago: with a TTL of 5 s its entries are gone
    # before this process's first slot. The old code skipped here ("another process has it").
    Claims(caches["default"], "ticker").record_run_started(time.time() - 10, ttl=5)
    warming.CALLS.clear()
    stats = run_warm("ticker", trigger="startup", claim="startup")
    assert stats is not None
    assert stats.keys_warmed == 2
    assert caches["default"].get("tick:1") == "value of tick:1"
    # A process starting a moment later sees that fresh run and skips.
    assert run_warm("items", trigger="startup", claim="startup") is not None
    assert run_warm("items", trigger="startup", claim="startup") is None


def test_processes_starting_together_warm_once_even_when_the_last_run_is_stale() -> None:
    stale = time.time() - 100
    claims = Claims(caches["default"], "ticker")
    claims.record_run_started(stale, ttl=None)  # kept, but "ticker" writes with a TTL of 5 s
    # Another process starting now saw the same stale run and took the startup warm.
    assert Claims(caches.create_connection("default"), "ticker").claim_startup(stale, 60.0)
    assert run_warm("ticker", trigger="startup", claim="startup") is None
    assert warming.CALLS == {}


def _away_from_a_slot_boundary(interval: float = 4.0) -> None:
    """Sleep past the next boundary if it is less than a second away (the test reads one slot)."""
    left = interval - time.time() % interval
    if left < 1.0:
        time.sleep(left + 0.05)


def test_a_sibling_refreshing_the_current_slot_makes_a_new_process_skip() -> None:
    # A sibling started a moment ago, warmed, and (a slot boundary passed since) took the slot
    # and is refreshing now: its run is in flight, so this process need not warm at start.
    other = Claims(caches.create_connection("default"), "ticker")
    other.record_run_started(time.time() - 10, ttl=None)  # its startup warm, 10 s ago
    _away_from_a_slot_boundary()
    assert other.claim_slot(4.0)
    assert other.acquire_running(ttl=60)
    try:
        assert run_warm("ticker", trigger="startup", claim="startup") is None
        assert warming.CALLS == {}
    finally:
        other.release_running()
    # The same slot claim without a run in flight (cut short, or failed): warm at start.
    assert run_warm("ticker", trigger="startup", claim="startup") is not None
    assert caches["default"].get("tick:2") == "value of tick:2"
