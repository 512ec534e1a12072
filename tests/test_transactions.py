"""warm() inside an open transaction runs after the commit (``transaction.on_commit``), and not at
all on rollback: the loaders read through connections of their own, which cannot see rows the
caller has not committed yet.

``transaction=True`` tests, so commits are real; a real model is saved, and a ``post_save`` handler
calls ``warm()`` as a project would (the admin and ``ATOMIC_REQUESTS`` save inside a transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.db import transaction
from django.db.models.signals import post_save
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers.core.stats import WarmingStats
from django_cachewarmers.models import WarmingRun

pytestmark = pytest.mark.django_db(transaction=True)

WARMERS = {
    "groups": {
        "keys": "tests.test_transactions.group_keys",
        "loader": "tests.test_transactions.load_group",
        "strategy": "lazy",
    }
}
#: The threads the loader ran on.
LOADER_THREADS: list[str] = []


def group_keys() -> list[str]:
    return [f"group:{pk}" for pk in Group.objects.values_list("pk", flat=True)]


def load_group(key: str) -> str:
    LOADER_THREADS.append(threading.current_thread().name)
    name: str = Group.objects.values_list("name", flat=True).get(pk=int(key.split(":")[1]))
    return name


@pytest.fixture
def returned() -> Iterator[list[WarmingStats | None]]:
    """What warm() returned to a post_save handler of Group that warms the saved group."""
    results: list[WarmingStats | None] = []

    def saved(sender: Any, instance: Group, **kwargs: Any) -> None:
        results.append(django_cachewarmers.warm("groups", keys=[f"group:{instance.pk}"]))

    caches["default"].clear()
    LOADER_THREADS.clear()
    with override_settings(CACHE_WARMERS=WARMERS):
        post_save.connect(saved, sender=Group)
        try:
            yield results
        finally:
            post_save.disconnect(saved, sender=Group)
    caches["default"].clear()


def test_outside_a_transaction_warm_runs_at_once_and_returns_its_stats(
    returned: list[WarmingStats | None],
) -> None:
    group = Group.objects.create(name="cards v1")
    [stats] = returned
    assert stats is not None
    assert stats.keys_warmed == 1
    assert caches["default"].get(f"group:{group.pk}") == "cards v1"


def test_inside_a_transaction_warm_runs_after_the_commit(
    returned: list[WarmingStats | None],
) -> None:
    group = Group.objects.create(name="cards v1")
    returned.clear()
    with transaction.atomic():
        group.name = "cards v2"
        group.save()
        assert caches["default"].get(f"group:{group.pk}") == "cards v1"
    # After the commit: the loader, on a thread and connection of its own, read the new row.
    assert caches["default"].get(f"group:{group.pk}") == "cards v2"
    assert returned == [None]  # deferred: warm() returned no stats
    assert LOADER_THREADS[-1] != threading.current_thread().name
    run = WarmingRun.objects.latest("started_at")
    assert (run.warmer, run.trigger, run.keys_warmed, run.keys_failed) == ("groups", "api", 1, 0)


def test_inside_a_transaction_that_rolls_back_warm_never_runs(
    returned: list[WarmingStats | None],
) -> None:
    group = Group.objects.create(name="cards v1")
    runs = WarmingRun.objects.count()
    loads = len(LOADER_THREADS)
    try:
        with transaction.atomic():
            group.name = "never committed"
            group.save()
            raise RuntimeError("abandoned")
    except RuntimeError:
        pass  # the transaction rolled back
    # A savepoint rolled back inside a transaction that commits: that warm never runs either.
    with transaction.atomic():
        try:
            with transaction.atomic():
                Group.objects.create(name="rolled back too")
                raise RuntimeError("inner")
        except RuntimeError:
            pass
    assert returned[1:] == [None, None]
    assert caches["default"].get(f"group:{group.pk}") == "cards v1"
    assert (WarmingRun.objects.count(), len(LOADER_THREADS)) == (runs, loads)


def test_a_bad_warmer_name_fails_at_the_call_even_inside_a_transaction() -> None:
    from django_cachewarmers.registry import UnknownWarmer

    with (
        override_settings(CACHE_WARMERS=WARMERS),
        pytest.raises(UnknownWarmer, match="'nope'"),
        transaction.atomic(),
    ):
        django_cachewarmers.warm("nope")
