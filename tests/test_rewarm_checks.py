"""System checks of ``rewarm_on``, ``rewarm_delay`` and ``CACHE_WARMERS_REWARM_QUEUE_SIZE``: each
problem names the warmer, the field and the offending value, with a hint."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import CheckMessage
from django.test import override_settings

from django_cachewarmers.checks import check_cache_warmers
from django_cachewarmers.parsing import parse_warmer
from tests.testapp import rewarming as app

PREFIX = "django_cachewarmers."
REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # never connected to: checks only read settings
    },
}


def warmer(**fields: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "keys": "tests.testapp.rewarming.all_group_keys",
        "batch_loader": "tests.testapp.rewarming.load_groups",
        "cache": "shared",
        "rewarm_on": {"auth.Group": "tests.testapp.rewarming.group_keys"},
    }
    definition.update(fields)
    return definition


def messages(**fields: Any) -> list[CheckMessage]:
    with override_settings(CACHES=REDIS, CACHE_WARMERS={"groups": warmer(**fields)}):
        return check_cache_warmers()


def only(found: list[CheckMessage], check_id: str) -> CheckMessage:
    matching = [m for m in found if m.id == PREFIX + check_id]
    assert len(matching) == 1, [(m.id, m.msg) for m in found]
    return matching[0]


def test_a_valid_rewarm_on_parses_to_the_models_label_and_the_callable() -> None:
    assert messages() == []
    with override_settings(CACHES=REDIS):
        spec = parse_warmer("groups", warmer(rewarm_on={"auth.GROUP": app.group_keys}))
    assert dict(spec.rewarm_on) == {"auth.Group": app.group_keys}
    assert spec.rewarm_delay == 1.0
    with override_settings(CACHES=REDIS):
        assert parse_warmer("groups", warmer(rewarm_delay=0)).rewarm_delay == 0.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [(["auth.Group"], "list ['auth.Group']"), ("auth.Group", "'auth.Group'")],
)
def test_rewarm_on_that_is_not_a_dict_is_e040(value: object, shown: str) -> None:
    message = only(messages(rewarm_on=value), "E040")
    assert message.msg.startswith("CACHE_WARMERS['groups']['rewarm_on']: must be a dict")
    assert shown in message.msg
    assert "shop.warming.product_keys_for" in str(message.hint)


def test_a_label_that_is_not_a_string_is_e040() -> None:
    message = only(messages(rewarm_on={42: "tests.testapp.rewarming.group_keys"}), "E040")
    assert message.msg.startswith("CACHE_WARMERS['groups']['rewarm_on'][42]: a model label")


def test_an_unknown_model_label_is_e041_with_the_closest_label() -> None:
    found = messages(rewarm_on={"auth.Grop": "tests.testapp.rewarming.group_keys"})
    message = only(found, "E041")
    assert message.msg == (
        "CACHE_WARMERS['groups']['rewarm_on']['auth.Grop']: unknown model label 'auth.Grop': "
        "no installed model has it."
    )
    assert str(message.hint).startswith("Did you mean 'auth.Group'?")
    assert "Model._meta.label" in str(message.hint)
    message = only(messages(rewarm_on={"Group": app.group_keys}), "E041")
    assert "'Group'" in message.msg


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tests.testapp.rewarming.no_such_function", "cannot import"),
        ("no_such_module_anywhere.keys_for", "cannot import"),
        ("tests.testapp.rewarming.NOT_CALLABLE", "is 42, which is not callable"),
        (42, "must be a callable or its dotted path, got 42"),
    ],
)
def test_a_callable_that_cannot_be_imported_is_e042(value: object, problem: str) -> None:
    message = only(messages(rewarm_on={"auth.Group": value}), "E042")
    assert message.msg.startswith("CACHE_WARMERS['groups']['rewarm_on']['auth.Group']: ")
    assert problem in message.msg
    if isinstance(value, str):
        assert repr(value) in message.msg
    assert "function(instance)" in str(message.hint)


def test_a_warmer_without_a_loader_is_e043_beside_e005() -> None:
    found = messages(batch_loader=None)
    message = only(found, "E043")
    assert message.msg == (
        "CACHE_WARMERS['groups']['rewarm_on']: the warmer re-warms on changes of 'auth.Group' but "
        "has no 'loader' or 'batch_loader' to load the changed keys with."
    )
    assert "batch_loader" in str(message.hint)
    only(found, "E005")


@pytest.mark.parametrize("value", [-1, "1", float("nan"), True, 10**9])
def test_a_bad_rewarm_delay_is_e009(value: object) -> None:
    message = only(messages(rewarm_delay=value), "E009")
    assert message.msg.startswith("CACHE_WARMERS['groups']['rewarm_delay']: must be a finite")
    assert "default 1.0" in str(message.hint)


def test_a_per_process_cache_is_w010() -> None:
    message = only(messages(cache="default"), "W010")
    assert message.msg.startswith(
        "CACHE_WARMERS['groups']['rewarm_on']: cache 'default' is a LocMemCache, one per process"
    )
    assert "'auth.Group'" in message.msg
    assert "SILENCED_SYSTEM_CHECKS" in str(message.hint)
    assert messages(cache="default", rewarm_on={}) == []  # no rewarm_on, no warning


@pytest.mark.parametrize("value", [0, -5, "100", 2.5, None])
def test_a_bad_queue_size_is_e044(value: object) -> None:
    with override_settings(CACHE_WARMERS={}, CACHE_WARMERS_REWARM_QUEUE_SIZE=value):
        found = check_cache_warmers()
    message = only(found, "E044")
    assert message.msg.startswith("CACHE_WARMERS_REWARM_QUEUE_SIZE: must be an integer >= 1")
    assert "10000" in str(message.hint)
    with override_settings(CACHE_WARMERS={}, CACHE_WARMERS_REWARM_QUEUE_SIZE=50):
        assert check_cache_warmers() == []
