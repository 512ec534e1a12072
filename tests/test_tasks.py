"""Django's Tasks framework in this process: Django's (or the backport's) ImmediateBackend, which
runs each chunk inside ``enqueue()``, and DummyBackend, which stores the tasks and never runs them;
the ``--tasks`` flags, the field ``via`` and its checks. Real processes: test_tasks_workers.py.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers.distributed import default_timeout
from django_cachewarmers.models import WarmingRun
from django_cachewarmers.parsing import validate_warmers
from django_cachewarmers.runner import run_warm
from django_cachewarmers.scheduler import elsewhere_for
from django_cachewarmers.task_fanout import BackendCannotWait, fan_out_tasks
from django_cachewarmers.tasks_framework import framework, get_backend

FRAMEWORK = framework().__name__  # "django.tasks" on Django >= 6.0, else "django_tasks"
IMMEDIATE = {"default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}}
DUMMY = {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}}

KEYS = [f"tk:{i}" for i in range(25)]


def batch(keys: list[str]) -> dict[str, str]:
    return {k: f"value of {k}" for k in keys if not k.endswith("7")}


WARMER = {
    "keys": KEYS,
    "batch_loader": "tests.test_tasks.batch",
    "strategy": "lazy",
    "batch_size": 2,
    "optional": True,
}


@pytest.fixture
def enqueued() -> Iterator[list[Any]]:
    """The TaskResults the framework's ``task_enqueued`` signal reports, in order."""
    signal = importlib.import_module(f"{FRAMEWORK}.signals").task_enqueued
    seen: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(task_result)

    signal.connect(receiver, weak=False)
    yield seen
    signal.disconnect(receiver)


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    caches["default"].clear()
    yield
    caches["default"].clear()


def _runs(name: str) -> list[tuple[str, int, int]]:
    return [
        (r.trigger, r.keys_warmed, r.keys_failed)
        for r in WarmingRun.objects.filter(warmer=name).order_by("started_at")
    ]


# -- ImmediateBackend: one run, in chunks --------------------------------------------------------


@pytest.mark.django_db
@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=IMMEDIATE)
def test_tasks_on_the_immediate_backend_record_one_run_of_all_chunks(enqueued: list[Any]) -> None:
    out = io.StringIO()
    call_command("warm_cache", "w", "--tasks", "--json", "--chunk-size", "10", stdout=out)
    report = json.loads(out.getvalue())["w"]
    # 25 keys, two of them (tk:7, tk:17) missing from the loader's answer.
    assert (report["keys_warmed"], report["keys_failed"]) == (23, 2)
    assert (report["keys_verified"], report["keys_lost"]) == (23, 0)
    assert any(e.startswith("tk:17: ") for e in report["errors"])
    assert _runs("w") == [("tasks", 23, 2)]
    # Three chunks of at most 10 keys, each one task, with JSON arguments only.
    assert [len(r.args[1]) for r in enqueued] == [10, 10, 5]
    assert [r.task.module_path for r in enqueued] == [
        "django_cachewarmers.task_chunks.warm_chunk"
    ] * 3
    assert [r.args[3:] for r in enqueued] == [[i, False, "tasks"] for i in range(3)]
    assert {r.status for r in enqueued} == {"SUCCESSFUL"}
    assert caches["default"].get("tk:3") == "value of tk:3"
    assert caches["default"].get("tk:7") is None


@pytest.mark.django_db(transaction=True)  # outside a transaction: warm() runs at once
@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=IMMEDIATE)
def test_warm_via_tasks_returns_the_run_and_keeps_the_given_trigger() -> None:
    stats = django_cachewarmers.warm("w", keys=["tk:1", "tk:2"], via="tasks")
    assert stats is not None
    assert (stats.keys_warmed, stats.keys_failed) == (2, 0)
    stats = django_cachewarmers.warm("w", keys=["tk:3"], via="tasks", trigger="admin")
    assert stats is not None
    assert stats.keys_warmed == 1
    assert _runs("w") == [("tasks", 2, 0), ("admin", 1, 0)]
    with pytest.raises(ValueError, match="via: must be 'local', 'celery' or 'tasks'"):
        django_cachewarmers.warm("w", via="rq")


@pytest.mark.django_db(transaction=True)
@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=IMMEDIATE)
def test_warm_via_tasks_inside_a_transaction_enqueues_after_the_commit(
    enqueued: list[Any],
) -> None:
    with transaction.atomic():
        assert django_cachewarmers.warm("w", via="tasks") is None
        assert enqueued == []
    assert len(enqueued) == 2  # 25 keys in chunks of batch_size 2 x 10
    assert _runs("w") == [("tasks", 23, 2)]
    with transaction.atomic():
        django_cachewarmers.warm("w", via="tasks")
        transaction.set_rollback(True)
    assert len(enqueued) == 2  # rolled back: nothing enqueued
    assert len(_runs("w")) == 1


@pytest.mark.django_db
@override_settings(CACHE_WARMERS={"w": {**WARMER, "keys": [("t", 1)]}}, TASKS=IMMEDIATE)
def test_a_key_json_cannot_carry_is_refused_before_anything_is_enqueued(
    enqueued: list[Any],
) -> None:
    with pytest.raises(CommandError, match=r"key \('t', 1\) \(tuple\) cannot be sent to task"):
        call_command("warm_cache", "w", "--tasks", stdout=io.StringIO())
    assert enqueued == []
    assert _runs("w") == []


# -- a backend that cannot return results --------------------------------------------------------


@pytest.mark.django_db
@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=DUMMY)
def test_a_backend_without_results_gets_chunks_that_record_their_own_runs() -> None:
    backend = get_backend()
    backend.clear()
    out = io.StringIO()
    call_command("warm_cache", "w", "--tasks", "--json", stdout=out)
    assert json.loads(out.getvalue())["w"]["enqueued"] is True
    assert _runs("w") == []  # nothing ran: a DummyBackend never runs a task
    # Each chunk is told to record its own run, with the trigger.
    assert [r.args[4:] for r in backend.results] == [[True, "tasks"], [True, "tasks"]]
    assert sorted(k for r in backend.results for k in r.args[1]) == sorted(KEYS)
    # What a worker would do with one of them: warm and record that chunk as a run.
    first = backend.results[0]
    data = first.task.call(*first.args)
    assert (data["keys_warmed"], data["keys_failed"]) == (18, 2)  # tk:7, tk:17
    assert _runs("w") == [("tasks", 18, 2)]
    backend.clear()


@pytest.mark.django_db
@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=DUMMY)
def test_waiting_on_a_backend_without_results_is_a_clear_error() -> None:
    backend = get_backend()
    backend.clear()
    with pytest.raises(CommandError, match=r"--timeout: task backend 'default' \(DummyBackend\)"):
        call_command("warm_cache", "w", "--tasks", "--timeout", "5", stdout=io.StringIO())
    with pytest.raises(BackendCannotWait, match="cannot return results"):
        fan_out_tasks("w", wait=True)
    assert backend.results == []


@override_settings(CACHE_WARMERS={"w": WARMER}, TASKS=IMMEDIATE)
def test_tasks_flags_are_checked() -> None:
    with pytest.raises(CommandError, match="task backend 'nope' is not usable"):
        call_command("warm_cache", "w", "--tasks", "--task-backend", "nope")
    with pytest.raises(CommandError, match="--task-backend only goes with --tasks"):
        call_command("warm_cache", "w", "--task-backend", "default")
    with pytest.raises(CommandError, match="--tasks and --celery cannot be combined"):
        call_command("warm_cache", "w", "--tasks", "--celery")
    with pytest.raises(CommandError, match="--tasks cannot be combined with --dry-run"):
        call_command("warm_cache", "w", "--tasks", "--dry-run")
    with pytest.raises(CommandError, match="--celery-app only goes with --celery"):
        call_command("warm_cache", "w", "--tasks", "--celery-app", "x")


# -- the field via ------------------------------------------------------------------------------


def _ids(warmer: dict[str, Any]) -> list[str]:
    return [m.id for m in validate_warmers({"w": warmer}) if m.id]


SHARED = {**WARMER, "strategy": "scheduled", "cache": "db"}


@override_settings(TASKS=IMMEDIATE)
def test_via_checks() -> None:
    assert _ids({**SHARED, "via": "local"}) == []
    messages = validate_warmers({"w": {**SHARED, "via": "Tasks"}})
    assert [m.id for m in messages] == ["django_cachewarmers.E035"]
    assert messages[0].msg == "CACHE_WARMERS['w']['via']: unknown value 'Tasks'."
    assert "Did you mean 'tasks'?" in (messages[0].hint or "")
    assert _ids({**SHARED, "via": 1}) == ["django_cachewarmers.E035"]
    assert _ids({**SHARED, "via": "tasks", "cache": "default"}) == [
        "django_cachewarmers.E036",
        "django_cachewarmers.W008",
    ]
    assert _ids({**SHARED, "via": "celery", "cache": "default"}) == ["django_cachewarmers.E036"]
    assert _ids({**SHARED, "via": "tasks"}) == ["django_cachewarmers.W008"]
    assert _ids({**SHARED, "via": "celery", "strategy": "lazy"}) == ["django_cachewarmers.W009"]


def test_via_tasks_on_a_backend_that_never_runs_or_cannot_load_is_an_error() -> None:
    with override_settings(TASKS=DUMMY):
        messages = validate_warmers({"w": {**SHARED, "via": "tasks"}})
        assert [m.id for m in messages] == ["django_cachewarmers.E039"]
        assert "a DummyBackend, which never runs a task" in messages[0].msg
    with override_settings(TASKS={"default": {"BACKEND": "no_such_module.Backend"}}):
        messages = validate_warmers({"w": {**SHARED, "via": "tasks"}})
        assert [m.id for m in messages] == ["django_cachewarmers.E039"]
        assert "not usable" in messages[0].msg


def test_via_without_the_framework_or_celery_installed_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "django.tasks", None)
    monkeypatch.setitem(sys.modules, "django_tasks", None)
    monkeypatch.setitem(sys.modules, "celery", None)
    messages = validate_warmers({"w": {**SHARED, "via": "tasks"}})
    assert [m.id for m in messages] == ["django_cachewarmers.E037"]
    assert "install the django-tasks backport" in messages[0].msg
    assert _ids({**SHARED, "via": "celery"}) == ["django_cachewarmers.E038"]
    with (
        override_settings(CACHE_WARMERS={"w": WARMER}),
        pytest.raises(CommandError, match="--tasks: Django's Tasks framework is not available"),
    ):
        call_command("warm_cache", "w", "--tasks")


# -- the scheduler's runs of a "via": "tasks" warmer ---------------------------------------------


@pytest.mark.django_db
@override_settings(
    CACHE_WARMERS={
        "sent": {**SHARED, "strategy": "eager", "via": "tasks"},
        "here": {**SHARED, "strategy": "eager"},
    },
    TASKS=IMMEDIATE,
    SILENCED_SYSTEM_CHECKS=["django_cachewarmers.W008"],
)
def test_a_startup_run_of_a_via_tasks_warmer_is_sent_once_under_its_claim(
    enqueued: list[Any],
) -> None:
    caches["db"].clear()
    assert elsewhere_for("here") is None
    assert elsewhere_for("missing") is None
    sent = elsewhere_for("sent")
    assert sent is not None
    assert sent.wait_s == default_timeout(60.0)
    stats = run_warm("sent", trigger="startup", claim="startup", elsewhere=sent)
    assert stats is not None
    assert (stats.keys_warmed, stats.keys_failed) == (23, 2)
    assert len(enqueued) == 2  # chunks, not a load in this process's own pool
    assert _runs("sent") == [("startup", 23, 2)]
    # Once per cluster: the startup claim is taken, a second process's startup run skips.
    assert run_warm("sent", trigger="startup", claim="startup", elsewhere=sent) is None
    assert len(enqueued) == 2
    assert caches["db"].get("tk:3") == "value of tk:3"
    caches["db"].clear()
