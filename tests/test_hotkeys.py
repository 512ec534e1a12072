"""The cluster's hot set: snapshots published, validated and merged; the hot set persisted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

from django_cachewarmers import claims, hotkeys, tracking
from django_cachewarmers.hotkeys import (
    ClusterKeyProvider,
    cluster_counts,
    hot_counts,
    persist,
    persisted_counts,
)
from django_cachewarmers.models import HotKey
from django_cachewarmers.publisher import Publisher
from tests.processes import wait_until


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    tracking.reset()
    caches["default"].clear()
    yield
    tracking.reset()
    caches["default"].clear()


def other_process(tracker: str, items: list[Any], slot: int = 40, **extra: Any) -> None:
    """Write a snapshot as another process would."""
    record = {"v": 1, "tracker": tracker, "owner": f"host:{slot}:x", "at": 0.0, "items": items}
    record.update(extra)
    caches["default"].set(hotkeys.slot_key(tracker, slot), record, 60)


def hit(key: str, times: int, tracker: str = "pages") -> None:
    for _ in range(times):
        tracking.get_tracker(tracker).record_access(key)


def test_own_counts_plus_other_processes_snapshots() -> None:
    hit("/a", 4)
    other_process("pages", [["/a", 10], ["/b", 3]], slot=1)
    other_process("pages", [["/b", 2]], slot=2)
    assert cluster_counts("pages") == {"/a": 14, "/b": 5}


def test_publish_then_merge_in_another_process_and_own_snapshot_not_double_counted() -> None:
    hit("/a", 5)
    publisher = Publisher()
    assert publisher.publish("pages", tracking.get_tracker("pages").top(10))
    # This process reads its own live counts, not its published copy of them.
    assert cluster_counts("pages") == {"/a": 5}
    stored = caches["default"].get(hotkeys.slot_key("pages", publisher._slots["pages"]))
    assert stored["owner"] == claims.OWNER
    assert stored["items"] == [["/a", 5]]


@override_settings(CACHE_WARMERS_SNAPSHOT_INTERVAL=0, CACHE_WARMERS_PERSIST_INTERVAL=3600)
def test_the_publisher_thread_counts_the_backlogs_also_when_only_persisting() -> None:
    tracker = tracking.get_tracker("pages")
    tracker.record_access_later("/quiet")  # one access: far from the backlog's limit
    publisher = Publisher()
    publisher.start()
    try:
        # Its wake-up (every second when snapshots are off) counts it; nothing here reads.
        wait_until(lambda: not tracker._backlog, 10, "the publisher to count the backlog")
    finally:
        publisher.stop()
    assert tracker._entries["/quiet"][0] == 1


def test_publishing_reuses_its_slot_and_moves_when_taken_over() -> None:
    publisher = Publisher()
    publisher.publish("pages", [("/a", 1)])
    slot = publisher._slots["pages"]
    publisher.publish("pages", [("/a", 2)])
    assert publisher._slots["pages"] == slot
    other_process("pages", [["/x", 1]], slot=slot)  # its key expired and another process took it
    publisher.publish("pages", [("/a", 3)])
    assert publisher._slots["pages"] != slot
    assert cluster_counts("pages") == {"/x": 1}  # the other process's snapshot survived


@pytest.mark.parametrize(
    "record",
    [
        "not a dict",
        {"v": 2, "tracker": "pages", "owner": "o", "items": [["/evil", 99]]},
        {"v": 1, "tracker": "keys", "owner": "o", "items": [["/evil", 99]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": "nope"},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/evil", "99"]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/evil", True]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/evil", -5]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/evil", 10**15]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [[["not", "a", "str"], 5]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/" + "x" * 3000, 5]]},
        {"v": 1, "tracker": "pages", "owner": "o", "items": [["/evil", 5, "extra"]]},
    ],
)
def test_malformed_or_foreign_snapshots_are_ignored(record: Any) -> None:
    caches["default"].set(hotkeys.slot_key("pages", 7), record, 60)
    assert cluster_counts("pages") == {}


def test_snapshots_of_another_tracker_never_reach_this_one() -> None:
    other_process("keys", [["product:1", 50]])
    other_process("pages", [["http://site/a/", 5]], slot=41)
    assert cluster_counts("pages") == {"http://site/a/": 5}
    assert cluster_counts("keys") == {"product:1": 50}


@pytest.mark.django_db
def test_cluster_provider_applies_threshold_and_limit() -> None:
    hit("product:1", 6, "keys")
    other_process("keys", [["product:2", 9], ["product:3", 2]])
    provider = ClusterKeyProvider("keys", threshold=5, limit=10)
    assert provider.get_keys() == ["product:2", "product:1"]
    assert provider.top() == [("product:2", 9), ("product:1", 6)]
    assert ClusterKeyProvider("keys", threshold=1, limit=1).get_keys() == ["product:2"]


@pytest.mark.django_db
def test_reading_the_hot_set_creates_no_tracker_in_a_process_that_counts_nothing() -> None:
    # A Celery worker or `warm_cache` warms adaptive warmers: creating a tracker there would
    # start a publisher of empty snapshots (get_tracker starts it).
    other_process("keys", [["product:2", 9]])
    provider = ClusterKeyProvider("keys", threshold=1, limit=10)
    assert provider.get_keys() == ["product:2"]
    assert provider.top() == [("product:2", 9)]
    assert cluster_counts("pages") == {}
    assert tracking.all_trackers() == {}


@pytest.mark.django_db
def test_persist_and_read_back_decayed_and_never_compounding() -> None:
    hit("/a", 8)
    other_process("pages", [["/b", 4]])
    assert persist("pages", claim=False) == 2
    assert dict(HotKey.objects.values_list("key", "count")) == {"/a": 8.0, "/b": 4.0}
    # Saving again merges with max(), it does not add the saved counts to the live ones.
    assert persist("pages", claim=False) == 2
    assert dict(HotKey.objects.values_list("key", "count")) == {"/a": 8.0, "/b": 4.0}
    # After a restart: no live counts, the persisted ones (decayed by age) stand in.
    tracking.reset()
    caches["default"].clear()
    HotKey.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    # rel=1e-4: the persisted counts decay by their age, which grows while the test runs (a
    # loaded machine's few milliseconds show in the sixth digit).
    assert persisted_counts("pages") == pytest.approx({"/a": 4.0, "/b": 2.0}, rel=1e-4)
    hit("/b", 3)
    assert hot_counts("pages") == pytest.approx({"/a": 4.0, "/b": 3.0}, rel=1e-4)


@pytest.mark.django_db
def test_only_one_process_per_interval_persists() -> None:
    hit("/a", 3)
    with override_settings(CACHE_WARMERS_PERSIST_INTERVAL=3600):
        assert persist("pages", claim=True) == 1
        assert persist("pages", claim=True) == 0  # the interval's claim is taken


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction: it runs at once
def test_an_adaptive_warmer_warms_from_the_persisted_hot_set_after_a_restart() -> None:
    import django_cachewarmers
    from tests.testapp import warming

    hit("product:1", 5, "keys")
    hit("product:2", 5, "keys")
    persist("keys", claim=False)
    tracking.reset()  # the restart: this process has seen nothing yet
    warming.CALLS.clear()
    warmers = {
        "hot_products": {
            "keys": {"adaptive": {"tracker": "keys", "threshold": 3}},
            "loader": "tests.testapp.warming.load_item",
            "strategy": "adaptive",
        }
    }
    with override_settings(CACHE_WARMERS=warmers):
        stats = django_cachewarmers.warm("hot_products", trigger="startup")
    assert stats is not None  # run at once: no transaction is open
    assert stats.keys_warmed == 2
    assert sorted(warming.CALLS) == ["product:1", "product:2"]
    assert caches["default"].get("product:1") == "value of product:1"
