"""Re-warm on change (``rewarm_on``): a saved row's cached entries are rewritten in place after
the commit, coalesced and batched on a background thread; a deleted row's are deleted.

Real parts: ``auth.Group`` rows saved in ``transaction=True`` tests (real commits and
rollbacks), Django's signals and ``on_commit``, the suite's LocMemCache read through
``caches["default"]`` as a request would, the warmer's real batch loader (one query per batch).
Timing is never asserted: waits are bounded only to fail instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.db import transaction
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers import rewarming
from django_cachewarmers.core.coalescing import DELETE, WRITE, CoalescingQueue, Op
from django_cachewarmers.models import WarmingRun
from tests.testapp import rewarming as app

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_S = 60  # a bound to fail rather than hang; never a timing assertion


class Rollback(Exception):
    """Raised inside an atomic block to roll it back."""


def groups_warmer(**fields: Any) -> dict[str, dict[str, Any]]:
    definition: dict[str, Any] = {
        "keys": "tests.testapp.rewarming.all_group_keys",
        "batch_loader": "tests.testapp.rewarming.load_groups",
        "strategy": "lazy",
        "rewarm_on": {"auth.Group": "tests.testapp.rewarming.group_keys"},
        "rewarm_delay": 0.05,
    }
    definition.update(fields)
    return {"groups": definition}


@pytest.fixture
def cache() -> Iterator[Any]:
    cache = caches["default"]
    cache.clear()
    app.batch_calls.clear()
    yield cache
    assert rewarming.flush(timeout=WAIT_S)
    cache.clear()


def use(**fields: Any) -> Any:
    return override_settings(CACHE_WARMERS=groups_warmer(**fields))


def idle() -> None:
    assert rewarming.wait_until_idle(WAIT_S), rewarming.pending()


def change_runs() -> list[WarmingRun]:
    return list(WarmingRun.objects.filter(trigger="change").order_by("started_at"))


def test_a_save_rewrites_the_key_in_place_after_the_commit(cache: Any) -> None:
    with use():
        group = Group.objects.create(name="before")  # a creation is a save too
        idle()
        assert cache.get(f"group:{group.pk}") == "before"
        app.batch_calls.clear()

        with transaction.atomic():
            group.name = "after"
            group.save()
            assert rewarming.pending() == {}  # nothing before the commit
            assert cache.get(f"group:{group.pk}") == "before"
        idle()
    assert cache.get(f"group:{group.pk}") == "after"
    assert [[f"group:{group.pk}"]] == app.batch_calls
    runs = change_runs()
    assert [(r.warmer, r.keys_warmed, r.keys_failed) for r in runs] == [
        ("groups", 1, 0),
        ("groups", 1, 0),
    ]


def test_a_rollback_writes_nothing(cache: Any) -> None:
    with use():
        group = Group.objects.create(name="kept")
        idle()
        app.batch_calls.clear()
        runs_before = len(change_runs())

        with contextlib.suppress(Rollback), transaction.atomic():
            group.name = "rolled back"
            group.save()
            raise Rollback
        assert rewarming.pending() == {}
        # A savepoint rolled back inside a transaction that commits: its delete is not applied
        # to the cache; the outer transaction's own save is.
        with transaction.atomic():
            other = Group.objects.create(name="committed")
            with contextlib.suppress(Rollback), transaction.atomic():
                Group.objects.filter(pk=group.pk).get().delete()
                raise Rollback
        assert rewarming.pending() == {"groups": 1}
        idle()
    assert app.batch_calls == [[f"group:{other.pk}"]]
    assert len(change_runs()) == runs_before + 1
    assert cache.get(f"group:{group.pk}") == "kept"


def test_a_reader_polling_the_key_through_100_saves_never_misses(cache: Any) -> None:
    with use(rewarm_delay=0.01):
        group = Group.objects.create(name="n-start")
        idle()
        key = f"group:{group.pk}"
        seen: list[object] = []
        stop = threading.Event()
        reader_cache = caches.create_connection("default")  # another connection, as a request

        def read() -> None:
            while not stop.is_set():
                value = reader_cache.get(key)
                if not seen or seen[-1] != value:
                    seen.append(value)
                if value == "n-99":
                    return

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(100):
                group.name = f"n-{i}"
                group.save()
            idle()
            reader.join(WAIT_S)
        finally:
            stop.set()
            reader.join()
    assert None not in seen, seen
    assert seen[0] == "n-start"
    assert seen[-1] == "n-99"
    assert cache.get(key) == "n-99"
    assert len(change_runs()) >= 2  # the saves were re-warmed in several flushes meanwhile


def test_1000_saves_in_a_loop_take_a_handful_of_batch_loads(
    cache: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # bulk_create sends no post_save: these 1,000 rows are not re-warmed on creation.
    Group.objects.bulk_create(Group(name=f"g-{i}") for i in range(1000))
    groups = list(Group.objects.order_by("pk"))
    big = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "rewarm-1000",
        "OPTIONS": {"MAX_ENTRIES": 5000},  # LocMem's default 300 would cull them
    }
    with (
        override_settings(CACHES={**settings.CACHES, "big": big}),
        use(rewarm_delay=1.0, batch_size=100, cache="big"),  # the default delay and batch size
    ):
        idle()
        assert app.batch_calls == []
        for group in groups:
            group.name = f"{group.name}-renamed"
            group.save()
        idle()
        cached = caches["big"].get_many([f"group:{g.pk}" for g in groups])
        caches["big"].clear()
    calls = len(app.batch_calls)
    flushes = len(change_runs())
    with capsys.disabled():
        print(f"\n1,000 saves in a loop: {calls} batch loader calls in {flushes} flushes")
    assert 10 <= calls <= 20
    assert sorted(k for batch in app.batch_calls for k in batch) == sorted(
        f"group:{g.pk}" for g in groups
    )
    assert all(len(batch) <= 100 for batch in app.batch_calls)
    assert cached == {f"group:{g.pk}": g.name for g in groups}
    assert sum(r.keys_warmed for r in change_runs()) == 1000


def test_changes_of_one_row_within_the_window_are_loaded_once(cache: Any) -> None:
    with use(rewarm_delay=300):  # nothing flushes on its own during the test
        group = Group.objects.create(name="v0")
        for i in range(1, 50):
            group.name = f"v{i}"
            group.save()
        assert rewarming.pending() == {"groups": 1}
        assert rewarming.flush(timeout=WAIT_S)
    assert [[f"group:{group.pk}"]] == app.batch_calls
    assert cache.get(f"group:{group.pk}") == "v49"


def test_a_delete_removes_the_key_after_the_commit(cache: Any) -> None:
    with use():
        one = Group.objects.create(name="one")
        two = Group.objects.create(name="two")
        idle()
        key_one, key_two = f"group:{one.pk}", f"group:{two.pk}"
        assert cache.get(key_one) == "one"
        with transaction.atomic():
            one.delete()
            assert cache.get(key_one) == "one"
        # QuerySet.delete() sends post_delete for each row too.
        Group.objects.filter(pk=two.pk).delete()
        idle()
    assert cache.get(key_one) is None
    assert cache.get(key_two) is None


def test_a_full_queue_is_logged_not_a_crash(cache: Any, caplog: pytest.LogCaptureFixture) -> None:
    groups = [Group.objects.create(name=f"q{i}") for i in range(8)]
    with (
        use(rewarm_delay=300),
        override_settings(CACHE_WARMERS_REWARM_QUEUE_SIZE=5),
        caplog.at_level(logging.WARNING, logger="django_cachewarmers"),
    ):
        for group in groups:
            group.name += "-new"
            group.save()  # no exception, whatever the queue holds
        groups[0].save()  # already waiting: accepted again, no new drop
        assert rewarming.pending() == {"groups": 5}
        full = [r for r in caplog.records if "re-warm queue is full" in r.getMessage()]
        assert len(full) == 1, caplog.text
        assert "CACHE_WARMERS_REWARM_QUEUE_SIZE=5" in full[0].getMessage()
        assert rewarming.flush(timeout=WAIT_S)
    written = cache.get_many([f"group:{g.pk}" for g in groups])
    assert written == {f"group:{g.pk}": g.name for g in groups[:5]}


def test_rewarm_api_runs_in_the_callers_thread_or_right_after_the_commit(cache: Any) -> None:
    with use():
        group = Group.objects.create(name="api")
        idle()
        key = f"group:{group.pk}"
        Group.objects.filter(pk=group.pk).update(name="updated")  # sends no post_save
        assert rewarming.pending() == {}
        stats = django_cachewarmers.rewarm("groups", [key])
        assert stats is not None
        assert stats.keys_warmed == 1
        assert cache.get(key) == "updated"  # at once: written by this thread

        with transaction.atomic():
            Group.objects.filter(pk=group.pk).update(name="in a transaction")
            assert django_cachewarmers.rewarm("groups", [key]) is None
            assert cache.get(key) == "updated"
        assert cache.get(key) == "in a transaction"  # right after the commit

        with contextlib.suppress(Rollback), transaction.atomic():
            Group.objects.filter(pk=group.pk).update(name="never")
            django_cachewarmers.rewarm("groups", [key])
            raise Rollback
        assert cache.get(key) == "in a transaction"
        with pytest.raises(TypeError, match="iterable of keys, got str"):
            django_cachewarmers.rewarm("groups", key)
    assert [r.trigger for r in WarmingRun.objects.order_by("started_at")][-2:] == [
        "change",
        "change",
    ]


@pytest.mark.parametrize("strategy", ["lazy", "eager", "scheduled"])
def test_every_strategy_and_a_per_key_loader(cache: Any, strategy: str) -> None:
    fields: dict[str, Any] = {"strategy": strategy, "batch_loader": None}
    fields["loader"] = "tests.testapp.rewarming.load_group"
    fields["rewarm_on"] = {"auth.group": "tests.testapp.rewarming.group_key_str"}  # any case
    with use(**fields):
        group = Group.objects.create(name="first")
        group.name = "second"
        group.save()
        idle()
    assert cache.get(f"group:{group.pk}") == "second"


def test_a_failing_keys_function_is_logged_and_the_save_goes_on(
    cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        use(rewarm_on={"auth.Group": "tests.testapp.rewarming.broken_keys_for"}),
        caplog.at_level(logging.ERROR, logger="django_cachewarmers"),
    ):
        group = Group.objects.create(name="saved anyway")
    assert Group.objects.filter(pk=group.pk, name="saved anyway").exists()
    assert "rewarm_on['auth.Group'] failed" in caplog.text
    assert "the keys function is broken" in caplog.text
    assert rewarming.pending() == {}


def test_only_the_declared_models_get_receivers() -> None:
    from django.contrib.auth.models import Permission
    from django.db.models.signals import post_delete

    with use():
        assert post_delete.has_listeners(Group)
        # No receiver on other models: their QuerySet.delete() keeps Django's fast delete.
        assert not post_delete.has_listeners(Permission)
    with override_settings(CACHE_WARMERS={}):
        assert not post_delete.has_listeners(Group)


# --------------------------------------------------------------------------- the queue itself


def test_the_window_starts_at_the_first_change_and_later_changes_do_not_move_it() -> None:
    flushed: list[dict[Hashable, Op]] = []
    queue = CoalescingQueue(lambda name, ops: flushed.append(dict(ops)), lambda: 1000)
    # A change every 20 ms for 1.2 s, in a window of 0.3 s: were the window reset by each
    # change, nothing would flush before the changes stop.
    for i in range(60):
        queue.add("w", [f"k{i % 7}"], WRITE, 0.3)
        time.sleep(0.02)
    flushes_while_changing = len(flushed)
    assert queue.wait_idle(WAIT_S)
    assert flushes_while_changing >= 1
    assert len(flushed) >= 2
    for ops in flushed:
        assert len(ops) <= 7  # de-duplicated within a batch


def test_the_last_op_of_a_key_wins_within_a_batch() -> None:
    flushed: list[dict[Hashable, Op]] = []
    queue = CoalescingQueue(lambda name, ops: flushed.append(dict(ops)), lambda: 1000)
    queue.add("w", ["a", "b"], WRITE, 300)
    queue.add("w", ["a"], DELETE, 300)
    queue.add("w", ["b"], DELETE, 300)
    queue.add("w", ["b"], WRITE, 300)
    assert queue.pending() == {"w": 2}
    assert queue.flush_now(WAIT_S)
    assert flushed == [{"a": DELETE, "b": WRITE}]


def test_a_failing_flush_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def flush(name: str, ops: dict[Hashable, Op]) -> None:
        calls.append(name)
        if name == "bad":
            raise RuntimeError("cache down")

    queue = CoalescingQueue(flush, lambda: 1000)
    with caplog.at_level(logging.ERROR, logger="django_cachewarmers"):
        queue.add("bad", ["x"], WRITE, 0)
        assert queue.wait_idle(WAIT_S)
        queue.add("good", ["y"], WRITE, 0)
        assert queue.wait_idle(WAIT_S)
    assert calls == ["bad", "good"]
    assert "flushing 1 changed keys of bad failed" in caplog.text


CHROME = {"Accept-Encoding": "gzip, deflate, br, zstd"}


def test_a_page_warmer_renders_the_changed_page_again_in_place(cache: Any) -> None:
    """A page warmer with ``rewarm_on``: after a save the cached page is rendered again and
    replaced in every declared variant (``render_page`` refreshes in place), so the next visitor
    gets the new page from the cache, never a miss; after a delete the page is gone from the page
    cache (the next visitor gets the view's 404, not the deleted row's page)."""
    from django.test import Client

    from tests.testapp import views

    warmers = {
        "group_pages": {
            "keys": [],
            "loader": "django_cachewarmers.pages.render_page",
            "strategy": "lazy",
            "variants": [{}, CHROME],
            "rewarm_on": {"auth.Group": "tests.testapp.rewarming.group_page_keys"},
            "rewarm_delay": 0.05,
        }
    }
    with override_settings(CACHE_WARMERS=warmers):
        group = Group.objects.create(name="before")
        idle()
        page = f"group:{group.pk}"
        path = f"/groups/{group.pk}/"
        rendered = views.EXECUTIONS[page]
        assert Client().get(path).content == b"group before"
        assert Client(headers=CHROME).get(path).content == b"group before"
        assert views.EXECUTIONS[page] == rendered, "the page was not warm after the creation"
        group.name = "after"
        group.save()
        idle()
        rendered = views.EXECUTIONS[page]
        assert Client().get(path).content == b"group after"
        assert Client(headers=CHROME).get(path).content == b"group after"
        assert views.EXECUTIONS[page] == rendered, "a visitor's request rendered the page"
        assert [run.keys_warmed for run in change_runs()][-1] == 2  # both variants
        group.delete()
        idle()
        assert Client().get(path).status_code == 404
        assert Client(headers=CHROME).get(path).status_code == 404


def test_a_delete_also_removes_the_write_time_of_a_fresh_for_warmer(cache: Any) -> None:
    """With ``fresh_for``, each entry's write time lives in a companion key; a deleted row's
    entry loses it too (else a later plain ``cache.set`` of the key would read as fresh)."""
    with use(timeout=600, fresh_for=60):
        group = Group.objects.create(name="g")
        idle()
        written = f"django_cachewarmers:written:group:{group.pk}"
        assert cache.get(f"group:{group.pk}") == "g"
        assert cache.get(written) is not None
        group.delete()
        idle()
        assert cache.get(f"group:{group.pk}") is None
        assert cache.get(written) is None
