"""The Django layer in process: registry, warm() API, signals, runs recorded, warm_cache flags."""

from __future__ import annotations

import io
import json
from types import MappingProxyType
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers import CacheWarmer, WarmingStats
from django_cachewarmers.models import WarmingRun
from django_cachewarmers.parsing import get_specs, validate_warmers
from django_cachewarmers.registry import UnknownWarmer
from django_cachewarmers.signals import warming_finished, warming_started
from tests.testapp import warming

ITEMS = {
    "keys": "tests.testapp.warming.item_keys",
    "loader": "tests.testapp.warming.load_item",
    "cache": "default",
    "timeout": 600,
}
WARMERS = {
    "items": ITEMS,
    "batched": {
        "keys": ["b:1", "b:2", "b:3"],
        "batch_loader": "tests.testapp.warming.load_items",
        "strategy": "scheduled",
        "refresh_interval": 60,
    },
    "flaky": {**ITEMS, "loader": "tests.testapp.warming.load_item_failing_3", "max_retries": 0},
    "flaky_optional": {
        **ITEMS,
        "loader": "tests.testapp.warming.load_item_failing_3",
        "max_retries": 0,
        "optional": True,
        "strategy": "lazy",
    },
}

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("warmers")]


@pytest.fixture
def warmers() -> Any:
    caches["default"].clear()
    warming.CALLS.clear()
    with override_settings(CACHE_WARMERS=WARMERS):
        yield
    caches["default"].clear()


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("warm_cache", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# -- registry and API ------------------------------------------------------------------------


def test_get_warmer_builds_once_from_settings() -> None:
    warmer = django_cachewarmers.get_warmer("items")
    assert isinstance(warmer, CacheWarmer)
    assert warmer.name == "items"
    assert warmer.config.cache_timeout == 600
    assert django_cachewarmers.get_warmer("items") is warmer
    assert set(django_cachewarmers.get_warmers()) == set(WARMERS)


def test_registry_is_rebuilt_when_the_setting_changes() -> None:
    before = django_cachewarmers.get_warmer("items")
    with override_settings(CACHE_WARMERS={"items": {**ITEMS, "batch_size": 7}}):
        inside = django_cachewarmers.get_warmer("items")
        assert inside is not before
        assert inside.config.batch_size == 7
    assert django_cachewarmers.get_warmer("items").config.batch_size == 100


def test_any_mapping_serves_as_cache_warmers_as_the_checks_accept() -> None:
    with override_settings(CACHE_WARMERS=MappingProxyType(WARMERS)):
        assert validate_warmers(settings.CACHE_WARMERS) == []
        assert list(get_specs()) == list(WARMERS)
        assert django_cachewarmers.get_warmer("items").name == "items"
        assert set(django_cachewarmers.get_warmers()) == set(WARMERS)


def test_unknown_warmer_lists_the_known_names() -> None:
    with pytest.raises(UnknownWarmer, match=r"'nope'.*known warmers: 'items', 'batched'"):
        django_cachewarmers.get_warmer("nope")


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction: it runs at once
def test_warm_api_warms_records_and_signals() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def started(sender: Any, **kwargs: Any) -> None:
        seen.append(("started", kwargs))

    def finished(sender: Any, **kwargs: Any) -> None:
        seen.append(("finished", kwargs))

    warming_started.connect(started)
    warming_finished.connect(finished)
    try:
        stats = django_cachewarmers.warm("items")
    finally:
        warming_started.disconnect(started)
        warming_finished.disconnect(finished)
    assert isinstance(stats, WarmingStats)
    assert stats.keys_warmed == 20
    assert caches["default"].get("item:7") == "value of item:7"
    run = WarmingRun.objects.get()
    assert (run.warmer, run.trigger, run.keys_warmed, run.keys_failed) == ("items", "api", 20, 0)
    assert [event for event, _ in seen] == ["started", "finished"]
    assert seen[0][1]["name"] == "items"
    assert seen[0][1]["trigger"] == "api"
    assert seen[0][1]["keys"] is None
    assert seen[1][1]["stats"] is stats
    assert seen[1][1]["run"] == run


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction: it runs at once
def test_warm_api_with_keys_and_trigger() -> None:
    stats = django_cachewarmers.warm("items", keys=["item:1", "item:2"], trigger="admin")
    assert stats is not None  # run at once: no transaction is open
    assert stats.keys_warmed == 2
    assert dict(warming.CALLS) == {"item:1": 1, "item:2": 1}
    assert WarmingRun.objects.get().trigger == "admin"
    with pytest.raises(ValueError, match="trigger"):
        django_cachewarmers.warm("items", trigger="cron")


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction: it runs at once
def test_a_failing_signal_receiver_does_not_fail_the_warm(caplog: pytest.LogCaptureFixture) -> None:
    def bad(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    warming_finished.connect(bad)
    try:
        stats = django_cachewarmers.warm("items")
    finally:
        warming_finished.disconnect(bad)
    assert stats is not None  # run at once: no transaction is open
    assert stats.ok
    assert "receiver bug" in caplog.text


def test_required_warmer_failure_logs_an_error_optional_a_warning(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    # Inside the test's transaction warm() runs at the commit, which the fixture stands for.
    with django_capture_on_commit_callbacks(execute=True):
        django_cachewarmers.warm("flaky")
        django_cachewarmers.warm("flaky_optional")
    failures = [r for r in caplog.records if "keys failed" in r.getMessage()]
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in failures] == [
        ("ERROR", "cache warmer flaky"),
        ("WARNING", "cache warmer flaky_optional"),
    ]


# -- claims through the runner ---------------------------------------------------------------


def test_claimed_runs_happen_once_per_window() -> None:
    from django_cachewarmers.runner import run_warm

    first = run_warm("items", trigger="startup", claim="startup")
    second = run_warm("items", trigger="startup", claim="startup")
    assert first is not None
    assert first.keys_warmed == 20
    assert second is None  # the window's claim is taken: nothing warmed, nothing recorded
    assert WarmingRun.objects.count() == 1
    assert run_warm("batched", trigger="schedule", claim="schedule") is not None
    assert run_warm("batched", trigger="schedule", claim="schedule") is None


@pytest.mark.django_db(transaction=True)  # warm() outside a transaction: it runs at once
def test_a_claimed_run_is_skipped_while_another_process_runs_the_warmer() -> None:
    from django_cachewarmers.claims import Claims
    from django_cachewarmers.runner import run_warm

    warmer = django_cachewarmers.get_warmer("items")
    other = Claims(warmer.cache, "items")
    assert other.acquire_running(ttl=60)
    try:
        assert run_warm("items", trigger="startup", claim="startup") is None
        assert warming.CALLS == {}
    finally:
        other.release_running()
    stats = django_cachewarmers.warm("items")
    assert stats is not None
    assert stats.keys_warmed == 20  # unclaimed runs are not blocked


# -- warm_cache ------------------------------------------------------------------------------


def test_command_warms_every_required_warmer_and_exits_1_on_failure() -> None:
    with pytest.raises(CommandError) as excinfo:
        run_command()
    assert excinfo.value.returncode == 1
    assert "required warmer(s): flaky" in str(excinfo.value)
    assert caches["default"].get("b:2") == "value of b:2"
    assert sorted(WarmingRun.objects.values_list("warmer", flat=True)) == sorted(WARMERS)
    assert set(WarmingRun.objects.values_list("trigger", flat=True)) == {"command"}


def test_command_named_warmers_print_one_line_each_and_exit_0() -> None:
    out, err = run_command("items", "batched")
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("items: 20 warmed, 0 failed, success rate 100.0%, ")
    assert lines[1].startswith("batched: 3 warmed, 0 failed")
    # Nothing else on stderr than the warning that a LocMem cache is this process's own copy.
    assert [line for line in err.splitlines() if "is a LocMemCache, local to" not in line] == []
    # Once per cache, naming both of its warmers.
    assert err.count("is a LocMemCache, local to each process") == 1
    assert "Warning: items, batched: cache 'default' is a LocMemCache" in err


def test_command_optional_failure_does_not_fail_the_exit_status() -> None:
    out, err = run_command("items", "flaky_optional")
    assert "flaky_optional: 19 warmed, 1 failed, success rate 95.0%" in out
    assert "(optional)" in out
    assert "item:3: LookupError: item 3 is missing upstream" in err


def test_command_unknown_name_is_a_command_error_listing_known_names() -> None:
    with pytest.raises(CommandError, match="unknown cache warmer 'nope'; known warmers: 'items'"):
        run_command("items", "nope")
    assert WarmingRun.objects.count() == 0  # nothing ran before the bad name was refused


def test_command_keys_of_one_warmer() -> None:
    out, _ = run_command("items", "--keys", "item:1", "item:5")
    assert out.startswith("items: 2 warmed")
    assert dict(warming.CALLS) == {"item:1": 1, "item:5": 1}


@pytest.mark.parametrize("args", [["--keys", "a"], ["items", "batched", "--keys", "a"]])
def test_command_keys_needs_exactly_one_name(args: list[str]) -> None:
    with pytest.raises(CommandError, match="--keys needs exactly one warmer name"):
        run_command(*args)


def test_command_json_output() -> None:
    with pytest.raises(CommandError):
        run_command("--json")
    out, _ = run_command("items", "batched", "--json")
    data = json.loads(out)
    assert set(data) == {"items", "batched"}
    assert data["items"]["keys_warmed"] == 20
    assert data["items"]["keys_failed"] == 0
    assert (data["items"]["keys_verified"], data["items"]["keys_lost"]) == (20, 0)
    assert data["items"]["success_rate"] == 1.0
    assert data["items"]["errors"] == []
    assert data["items"]["total_time_ms"] >= 0


def test_command_json_reports_errors() -> None:
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("warm_cache", "flaky", "--json", stdout=out, stderr=io.StringIO())
    data = json.loads(out.getvalue())
    assert data["flaky"]["errors"] == ["item:3: LookupError: item 3 is missing upstream"]


def test_command_dry_run_counts_and_writes_nothing() -> None:
    out, _ = run_command("--dry-run")
    assert "items: would warm 20 keys" in out
    assert "batched: would warm 3 keys" in out
    assert warming.CALLS == {}
    assert caches["default"].get("item:1") is None
    assert WarmingRun.objects.count() == 0
    out, _ = run_command("items", "--dry-run", "--json")
    assert json.loads(out) == {"items": {"keys": 20}}


def test_command_list_shows_warmers_and_last_runs(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # the test's transaction commits
        django_cachewarmers.warm("items")
    out, _ = run_command("--list")
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STRATEGY",
        "CACHE",
        "INTERVAL",
        "LAST",
        "RUN",
        "LAST",
        "RESULT",
    ]
    items = next(line for line in lines if line.startswith("items "))
    assert "eager" in items
    assert "20 warmed, 0 failed (api)" in items
    batched = next(line for line in lines if line.startswith("batched "))
    assert "scheduled" in batched
    assert "60s" in batched
    assert "never" in batched
    assert {f"item:{i}": 1 for i in range(20)} == warming.CALLS  # --list warmed nothing


def test_command_progress_bar_only_on_a_terminal() -> None:
    err = TTY()
    call_command("warm_cache", "items", stdout=io.StringIO(), stderr=err)
    assert "items [" in err.getvalue()
    assert "20/20" in err.getvalue()
    err = TTY()
    call_command("warm_cache", "items", "--no-progress", stdout=io.StringIO(), stderr=err)
    assert "[" not in err.getvalue()
    _, piped = run_command("items")
    assert "[" not in piped


def test_command_modes_cannot_be_combined() -> None:
    with pytest.raises(CommandError, match="--list and --dry-run cannot be combined"):
        run_command("--list", "--dry-run")


def test_command_reports_an_invalid_warmer_as_a_command_error() -> None:
    with (
        override_settings(CACHE_WARMERS={"bad": {"keys": ["a"], "loader": "no.such.module.func"}}),
        pytest.raises(CommandError, match="cache warmer 'bad' is not usable"),
    ):
        run_command("bad")


def test_command_with_no_warmers_configured() -> None:
    with override_settings(CACHE_WARMERS={}):
        out, err = run_command()
    assert out == ""
    assert "No cache warmers are configured" in err


def test_command_bad_argument_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="unrecognized arguments: --frobnicate"):
        run_command("--frobnicate")
