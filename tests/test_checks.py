"""The system checks of CACHE_WARMERS and the CACHE_WARMERS_* app settings."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.cache.backends.filebased import FileBasedCache
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.core.checks.registry import registry
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import django_cachewarmers
import django_cachewarmers.checks  # registers the checks
from django_cachewarmers.check_messages import CHECK_IDS
from django_cachewarmers.checks import check_cache_warmers
from django_cachewarmers.core.config import DEFAULT_TIMEOUT
from django_cachewarmers.parsing import parse_warmer

DOCS = Path(__file__).resolve().parent.parent / "docs"
PREFIX = "django_cachewarmers."


# Real callables that the dotted paths below point to.
def product_keys() -> list[str]:
    return ["product:1"]


def load_product(key: Any) -> Any:
    return key


def load_products(keys: list[Any]) -> dict[Any, Any]:
    return dict.fromkeys(keys, 1)


NOT_CALLABLE = "a string"


class MyFileCache(FileBasedCache):
    """A project's own file cache: warned about like FileBasedCache."""


VALID: dict[str, Any] = {
    "keys": "tests.test_checks.product_keys",
    "batch_loader": "tests.test_checks.load_products",
}

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


def run(warmers: object, **app_settings: object) -> list[CheckMessage]:
    with override_settings(CACHE_WARMERS=warmers, **app_settings):
        return check_cache_warmers(app_configs=None)


def hint_of(message: CheckMessage) -> str:
    assert message.hint, message
    return message.hint


def of(messages: list[CheckMessage], code: str) -> list[CheckMessage]:
    return [m for m in messages if m.id == PREFIX + code]


# (check ID, CACHE_WARMERS value, the start of every message of that ID, substring of one of them)
CASES: list[tuple[str, object, str, str]] = [
    ("E001", None, "CACHE_WARMERS:", "got None"),
    ("E001", [VALID], "CACHE_WARMERS:", "must be a dict"),
    ("E001", "products", "CACHE_WARMERS:", "got 'products'"),
    ("E002", {"": VALID}, "CACHE_WARMERS['']", "name must be a non-empty string"),
    ("E002", {1: VALID}, "CACHE_WARMERS[1]", "got 1"),
    ("E002", {"my products": VALID}, "CACHE_WARMERS['my products']", "without whitespace"),
    ("E002", {"w": 5}, "CACHE_WARMERS['w']", "defined by a dict of fields, got 5"),
    ("E002", {"w": ["keys"]}, "CACHE_WARMERS['w']", "got list ['keys']"),
    ("E003", {"w": {**VALID, "batchsize": 5}}, "CACHE_WARMERS['w']['batchsize']", "unknown"),
    ("E003", {"w": {**VALID, 7: 5}}, "CACHE_WARMERS['w'][7]", "field names are strings"),
    ("E004", {"w": {**VALID, "cache": "foo"}}, "CACHE_WARMERS['w']['cache']", "alias 'foo'."),
    ("E004", {"w": {**VALID, "cache": 5}}, "CACHE_WARMERS['w']['cache']", "got 5"),
    ("E005", {"w": {"keys": ["a"]}}, "CACHE_WARMERS['w']", "neither 'loader' nor 'batch_loader'"),
    (
        "E005",
        {"w": {**VALID, "loader": "tests.test_checks.load_product"}},
        "CACHE_WARMERS['w']",
        "both 'loader' and 'batch_loader'",
    ),
    (
        "E006",
        {"w": {**VALID, "batch_loader": "tests.test_checks.missing"}},
        "CACHE_WARMERS['w']['batch_loader']",
        'does not define a "missing" attribute',
    ),
    (
        "E006",
        {"w": {"keys": ["a"], "loader": "no_such_module_for_cachewarmers.load"}},
        "CACHE_WARMERS['w']['loader']",
        "ModuleNotFoundError: No module named 'no_such_module_for_cachewarmers'",
    ),
    (
        "E006",
        {"w": {**VALID, "keys": "tests.test_checks.NOT_CALLABLE"}},
        "CACHE_WARMERS['w']['keys']",
        "'tests.test_checks.NOT_CALLABLE' is 'a string', which is not callable",
    ),
    ("E006", {"w": {"keys": ["a"], "loader": 5}}, "CACHE_WARMERS['w']['loader']", "got 5"),
    ("E006", {"w": {**VALID, "keys": "Adaptive"}}, "CACHE_WARMERS['w']['keys']", "cannot import"),
    ("E007", {"w": {"loader": load_product}}, "CACHE_WARMERS['w']['keys']", "missing"),
    ("E007", {"w": {**VALID, "keys": 5}}, "CACHE_WARMERS['w']['keys']", "invalid keys 5"),
    ("E007", {"w": {**VALID, "keys": {"a"}}}, "CACHE_WARMERS['w']['keys']", "invalid keys set"),
    ("E007", {"w": {**VALID, "keys": ["a", ["b"]]}}, "CACHE_WARMERS['w']['keys']", "index 1"),
    ("E007", {"w": {**VALID, "keys": {"hot": {}}}}, "CACHE_WARMERS['w']['keys']", "a dict must"),
    ("E008", {"w": {**VALID, "strategy": "often"}}, "CACHE_WARMERS['w']['strategy']", "'often'"),
    ("E008", {"w": {**VALID, "strategy": None}}, "CACHE_WARMERS['w']['strategy']", "None"),
    ("E009", {"w": {**VALID, "batch_size": 0}}, "CACHE_WARMERS['w']['batch_size']", ">= 1"),
    ("E010", {"w": {**VALID, "optional": "yes"}}, "CACHE_WARMERS['w']['optional']", "'yes'"),
    ("E010", {"w": {**VALID, "optional": 1}}, "CACHE_WARMERS['w']['optional']", "got 1"),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": 5}}},
        "CACHE_WARMERS['w']['keys']['adaptive']",
        "must be a dict of options",
    ),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": {"treshold": 3}}}},
        "CACHE_WARMERS['w']['keys']['adaptive']['treshold']",
        "unknown adaptive option",
    ),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": {"tracker": "my pages"}}}},
        "CACHE_WARMERS['w']['keys']['adaptive']['tracker']",
        "'my pages'",
    ),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": {"threshold": 0}}}},
        "CACHE_WARMERS['w']['keys']['adaptive']['threshold']",
        ">= 1, got 0",
    ),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": {"limit": True}}}},
        "CACHE_WARMERS['w']['keys']['adaptive']['limit']",
        "got True",
    ),
    (
        "E011",
        {"w": {**VALID, "keys": {"adaptive": {}, "limit": 5}}},
        "CACHE_WARMERS['w']['keys']['limit']",
        "beside 'adaptive'",
    ),
    (
        "E012",
        {"w": {**VALID, "strategy": "adaptive"}},
        "CACHE_WARMERS['w']['keys']",
        "keys are not adaptive",
    ),
]


@pytest.mark.parametrize(
    ("code", "warmers", "where", "text"),
    CASES,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)],
)
def test_error(code: str, warmers: object, where: str, text: str) -> None:
    messages = of(run(warmers), code)
    assert messages, run(warmers)
    for message in messages:
        assert isinstance(message, Error)
        assert message.msg.startswith(where + ":" if not where.endswith(":") else where)
        assert message.hint
    assert any(text in m.msg for m in messages), [m.msg for m in messages]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", True),
        ("batch_size", 1.5),
        ("batch_size", "100"),
        ("max_workers", 0),
        ("max_workers", -1),
        ("max_retries", -1),
        ("max_retries", False),
        ("refresh_interval", 0),
        ("refresh_interval", -5),
        ("refresh_interval", float("nan")),
        ("refresh_interval", float("inf")),
        ("refresh_interval", True),
        ("refresh_interval", "300"),
        ("refresh_interval", None),
        ("warmup_timeout", 0),
        ("warmup_timeout", 10**400),
        ("timeout", -1),
        ("timeout", "600"),
        ("timeout", True),
        ("timeout", float("inf")),
        ("timeout_jitter", -0.1),
        ("timeout_jitter", float("nan")),
        ("retry_backoff", -1),
        ("retry_backoff", [0.1]),
    ],
)
def test_e009_invalid_numbers(field: str, value: object) -> None:
    messages = run({"w": {**VALID, field: value}})
    assert [m.id for m in messages] == [PREFIX + "E009"]
    assert messages[0].msg.startswith(f"CACHE_WARMERS['w'][{field!r}]: ")
    assert messages[0].hint


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 1),
        ("max_retries", 0),
        ("refresh_interval", 0.5),
        ("warmup_timeout", 1),
        ("timeout", 1),
        ("timeout", None),
        ("timeout", 86400.5),
        ("timeout_jitter", 0),
        ("retry_backoff", 0),
    ],
)
def test_numbers_at_their_bounds_are_valid(field: str, value: object) -> None:
    assert run({"w": {**VALID, field: value}}) == []


def test_unknown_field_hint_suggests_the_closest_name() -> None:
    (message,) = run({"products": {**VALID, "refresh_intervall": 60}})
    assert message.id == PREFIX + "E003"
    assert message.msg == (
        "CACHE_WARMERS['products']['refresh_intervall']: unknown field 'refresh_intervall'."
    )
    assert hint_of(message).startswith("Did you mean 'refresh_interval'? Valid fields: keys, ")
    (message,) = run({"products": {**VALID, "zzz": 60}})
    assert hint_of(message).startswith("Valid fields: keys, loader, batch_loader, cache, ")


def test_unknown_cache_alias_message_and_hint() -> None:
    (message,) = run({"products": {**VALID, "cache": "foo"}})
    assert message.id == PREFIX + "E004"
    assert message.msg == "CACHE_WARMERS['products']['cache']: unknown cache alias 'foo'."
    assert message.hint == "Use one of the aliases in CACHES: 'default', 'db'."
    (message,) = run({"products": {**VALID, "cache": "defualt"}})
    assert (
        message.hint == "Did you mean 'default'? Use one of the aliases in CACHES: 'default', 'db'."
    )


def test_unknown_strategy_hint_lists_the_strategies() -> None:
    (message,) = run({"w": {**VALID, "strategy": "Sheduled"}})
    assert "'eager', 'lazy', 'scheduled', 'adaptive'" in hint_of(message)
    assert hint_of(message).startswith("Did you mean 'scheduled'?")


def test_import_error_text_is_in_the_message() -> None:
    (message,) = run({"w": {**VALID, "keys": "no_such_module_for_cachewarmers.keys"}})
    assert message.id == PREFIX + "E006"
    assert message.msg == (
        "CACHE_WARMERS['w']['keys']: cannot import 'no_such_module_for_cachewarmers.keys': "
        "ModuleNotFoundError: No module named 'no_such_module_for_cachewarmers'."
    )


def test_every_error_of_a_warmer_is_reported() -> None:
    messages = run(
        {
            "w": {
                "keys": 5,
                "cache": "nope",
                "strategy": "often",
                "batch_size": 0,
                "max_workers": "4",
                "timeout": -1,
                "optional": "no",
                "bogus": 1,
            },
            "ok": VALID,
            "other": {**VALID, "cache": "nope2"},
        }
    )
    codes = sorted({m.id for m in messages if m.id})
    assert codes == [PREFIX + c for c in ("E003", "E004", "E005", "E007", "E008", "E009", "E010")]
    assert len(of(messages, "E009")) == 3
    assert len(of(messages, "E004")) == 2
    assert all(m.msg.startswith(("CACHE_WARMERS['w']", "CACHE_WARMERS['other']")) for m in messages)


def test_valid_settings_have_no_messages() -> None:
    warmers = {
        "products": {
            "keys": "tests.test_checks.product_keys",
            "batch_loader": "tests.test_checks.load_products",
            "cache": "db",
            "timeout": 600,
            "timeout_jitter": 0.1,
            "strategy": "scheduled",
            "refresh_interval": 300,
            "batch_size": 100,
            "max_workers": 4,
            "max_retries": 3,
            "warmup_timeout": 60,
            "retry_backoff": 0.1,
            "optional": False,
        },
        "hot": {
            "keys": {"adaptive": {"tracker": "pages", "threshold": 5, "limit": 100}},
            "loader": load_product,
            "strategy": "adaptive",
        },
        "lazy": {"keys": ["a", ("b", 1)], "loader": "tests.test_checks.load_product"},
    }
    assert run(warmers) == []
    assert run({}) == []


# --------------------------------------------------------------------------- app settings


@pytest.mark.parametrize(
    ("code", "setting", "bad", "good"),
    [
        ("E013", "CACHE_WARMERS_AUTOSTART", "yes", False),
        ("E013", "CACHE_WARMERS_AUTOSTART", 1, True),
        ("E014", "CACHE_WARMERS_HISTORY_LIMIT", 0, 1),
        ("E014", "CACHE_WARMERS_HISTORY_LIMIT", "100", 1000),
        ("E014", "CACHE_WARMERS_HISTORY_LIMIT", True, 5),
        ("E015", "CACHE_WARMERS_STARTUP_WINDOW", 0, 0.5),
        ("E015", "CACHE_WARMERS_STARTUP_WINDOW", float("nan"), 30),
        ("E015", "CACHE_WARMERS_STARTUP_WINDOW", "60", 60.0),
        ("E016", "CACHE_WARMERS_KEY_PREFIX", "", "cw"),
        ("E016", "CACHE_WARMERS_KEY_PREFIX", "my prefix", "my:prefix"),
        ("E016", "CACHE_WARMERS_KEY_PREFIX", None, "x"),
        ("E018", "CACHE_WARMERS_TRACKER_MAX_KEYS", 0, 500),
        ("E018", "CACHE_WARMERS_TRACKER_MAX_KEYS", "1000", 1000),
        ("E019", "CACHE_WARMERS_TRACK_AUTHENTICATED", "no", True),
        ("E020", "CACHE_WARMERS_TRACK_EXCLUDE", r"^/admin/", [r"^/admin/"]),
        ("E020", "CACHE_WARMERS_TRACK_EXCLUDE", ["^/admin/("], None),
        ("E020", "CACHE_WARMERS_TRACK_EXCLUDE", [5], []),
        ("E021", "CACHE_WARMERS_TRACK_SAMPLE_RATE", 1.5, 0.25),
        ("E021", "CACHE_WARMERS_TRACK_SAMPLE_RATE", -0.1, 0),
        ("E022", "CACHE_WARMERS_SNAPSHOT_CACHE", "nope", "db"),
        ("E023", "CACHE_WARMERS_SNAPSHOT_INTERVAL", -1, 0),
        ("E023", "CACHE_WARMERS_PERSIST_INTERVAL", "10", 5.5),
        ("E024", "CACHE_WARMERS_SNAPSHOT_SIZE", 0, 10),
    ],
)
def test_app_settings(code: str, setting: str, bad: object, good: object) -> None:
    (message,) = run({}, **{setting: bad})
    assert isinstance(message, Error)
    assert message.id == PREFIX + code
    assert message.msg.startswith(f"{setting}: ")
    assert message.hint
    assert run({}, **{setting: good}) == []


# --------------------------------------------------------------------------- E017


class ExplodingMapping(Mapping[str, Any]):
    """A Mapping that fails when read: validation reports it instead of crashing."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("warmers", "where"),
    [
        (ExplodingMapping(), "CACHE_WARMERS:"),
        ({"w": ExplodingMapping()}, "CACHE_WARMERS['w']:"),
    ],
)
def test_e017_validation_that_fails_is_reported(warmers: object, where: str) -> None:
    (message,) = run(warmers)
    assert message.id == PREFIX + "E017"
    assert message.msg == f"{where} could not be validated (RuntimeError: boom)."
    assert message.hint


# --------------------------------------------------------------------------- warnings


def caches_with(backend: str, **options: object) -> dict[str, Any]:
    return {"default": {"BACKEND": LOCMEM}, "warmed": {"BACKEND": backend, **options}}


FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
DUMMY = "django.core.cache.backends.dummy.DummyCache"


@pytest.mark.parametrize("backend", [FILE_BASED, "tests.test_checks.MyFileCache"])
@pytest.mark.parametrize("strategy", ["scheduled", "adaptive"])
def test_w001_scheduled_warmer_on_file_based_cache(backend: str, strategy: str) -> None:
    keys = "adaptive" if strategy == "adaptive" else VALID["keys"]
    warmers = {"w": {**VALID, "keys": keys, "cache": "warmed", "strategy": strategy}}
    with override_settings(CACHES=caches_with(backend, LOCATION="/tmp/unused")):
        (message,) = run(warmers)
    assert isinstance(message, CheckWarning)
    assert message.id == PREFIX + "W001"
    assert message.msg.startswith("CACHE_WARMERS['w']['cache']: ")
    assert "every server process may warm it every 300 seconds" in message.msg
    assert "Redis" in hint_of(message)
    assert "Memcached" in hint_of(message)
    assert "DatabaseCache" in hint_of(message)


@pytest.mark.parametrize("strategy", ["eager", "lazy"])
def test_no_w001_for_eager_or_lazy_on_file_based_cache(strategy: str) -> None:
    with override_settings(CACHES=caches_with(FILE_BASED, LOCATION="/tmp/unused")):
        assert run({"w": {**VALID, "cache": "warmed", "strategy": strategy}}) == []


@pytest.mark.parametrize(
    "backend",
    [
        LOCMEM,
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.redis.RedisCache",
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "django.core.cache.backends.memcached.PyLibMCCache",
        "django_redis.cache.RedisCache",
        "no_such_module_for_cachewarmers.Cache",
    ],
)
def test_no_warning_for_caches_that_coordinate(backend: str) -> None:
    # Only the BACKEND string is read: these caches are never instantiated.
    warmers = {"w": {**VALID, "cache": "warmed", "strategy": "scheduled"}}
    with override_settings(CACHES=caches_with(backend)):
        assert run(warmers) == []


@pytest.mark.parametrize("strategy", ["eager", "lazy", "scheduled"])
def test_w002_dummy_cache(strategy: str) -> None:
    with override_settings(CACHES=caches_with(DUMMY)):
        (message,) = run({"w": {**VALID, "cache": "warmed", "strategy": strategy}})
    assert isinstance(message, CheckWarning)
    assert message.id == PREFIX + "W002"
    assert message.msg == (
        "CACHE_WARMERS['w']['cache']: cache 'warmed' is a DummyCache, which stores nothing: "
        "warming it loads every value and throws it away."
    )
    assert "SILENCED_SYSTEM_CHECKS" in hint_of(message)


@pytest.mark.parametrize("strategy", ["eager", "lazy", "scheduled", "adaptive"])
@pytest.mark.parametrize("zero", [0, 0.0])
def test_e025_timeout_zero(strategy: str, zero: float) -> None:
    keys = "adaptive" if strategy == "adaptive" else VALID["keys"]
    (message,) = run({"w": {**VALID, "keys": keys, "strategy": strategy, "timeout": zero}})
    assert isinstance(message, Error)
    assert message.id == PREFIX + "E025"
    assert message.msg.startswith("CACHE_WARMERS['w']['timeout']: 0 means don't cache")
    assert hint_of(message).startswith("0 means don't cache; None means never expire.")
    with (
        override_settings(CACHE_WARMERS={"w": {**VALID, "timeout": zero}}),
        pytest.raises(ImproperlyConfigured, match="E025"),
    ):
        parse_warmer("w", {**VALID, "timeout": zero})


@pytest.mark.parametrize("strategy", ["eager", "lazy", "scheduled", "adaptive"])
@pytest.mark.parametrize("zero", [0, 0.0, -5])
def test_e025_cache_timeout_zero_with_timeout_left_out(strategy: str, zero: float) -> None:
    # Django reads a cache TIMEOUT <= 0 as "don't cache": the warmer's writes would delete the
    # good values. The TTL grace must not turn it into a positive TTL (it used to write 65 s).
    keys = "adaptive" if strategy == "adaptive" else VALID["keys"]
    raw = {**VALID, "keys": keys, "strategy": strategy, "cache": "warmed"}
    if strategy == "scheduled":
        raw.update(refresh_interval=4, warmup_timeout=1)
    with override_settings(CACHES=caches_with(LOCMEM, TIMEOUT=zero)):
        (message,) = run({"w": raw})
        assert isinstance(message, Error)
        assert message.id == PREFIX + "E025"
        assert message.msg.startswith(
            "CACHE_WARMERS['w']['timeout']: left out, so the TIMEOUT of cache 'warmed' is used, "
            f"and CACHES['warmed']['TIMEOUT'] is {zero!r}: 0 means don't cache"
        )
        assert "CACHES['warmed']['TIMEOUT']" in hint_of(message)
        with pytest.raises(ImproperlyConfigured, match="E025"):
            parse_warmer("w", raw)
        # An explicit timeout on the warmer is what it writes with: no error.
        assert run({"w": {**raw, "timeout": 400}}) == []


def test_ttl_grace_never_turns_zero_into_a_positive_ttl() -> None:
    from django_cachewarmers.check_messages import Report
    from django_cachewarmers.parsing.caches import ttl_grace

    with override_settings(CACHES=caches_with(LOCMEM, TIMEOUT=0)):
        ttl = ttl_grace(Report(), "w", {}, "warmed", DEFAULT_TIMEOUT, 4.0, 1.0)
    assert ttl is DEFAULT_TIMEOUT  # left as the cache's 0 (E025 stops the warmer), not 5


@pytest.mark.parametrize(
    ("backend", "behaviour"),
    [
        (LOCMEM, "LocMem, database and file caches keep it as given"),
        ("django.core.cache.backends.db.DatabaseCache", "keep it as given"),
        ("django.core.cache.backends.redis.RedisCache", "the warmer writes it as 1 s"),
        ("django_redis.cache.RedisCache", "django-redis writes it in milliseconds"),
        ("django.core.cache.backends.memcached.PyMemcacheCache", "'never expire'"),
    ],
)
@pytest.mark.parametrize("where", ["timeout", "TIMEOUT"])
def test_w004_subsecond_ttl_names_the_backend_behaviour(
    backend: str, behaviour: str, where: str
) -> None:
    raw: dict[str, Any] = {**VALID, "cache": "warmed"}
    options: dict[str, Any] = {}
    if where == "timeout":
        raw["timeout"] = 0.5
    else:
        options["TIMEOUT"] = 0.5
    with override_settings(CACHES=caches_with(backend, **options)):
        (message,) = run({"w": raw})
        assert isinstance(message, CheckWarning)
        assert message.id == PREFIX + "W004"
        assert "0.5 s is less than one second: " in message.msg
        assert behaviour in message.msg
        assert "e.g. 300, not 0.3" in hint_of(message)
        assert parse_warmer("w", raw).config.cache_timeout == raw.get("timeout", DEFAULT_TIMEOUT)
        # A scheduled warmer's TTL grace makes it whole seconds: no W004 (W003 names the TTL).
        scheduled = {**raw, "strategy": "scheduled", "refresh_interval": 4, "warmup_timeout": 1}
        assert [m.id for m in run({"w": scheduled})] == (
            [PREFIX + "W003"] if where == "timeout" else []
        )
        assert run({"w": {**raw, "timeout": 1}}) == []


def test_w003_ttl_grace_names_the_numbers() -> None:
    warmers = {"w": {**VALID, "strategy": "scheduled", "refresh_interval": 4, "timeout": 4}}
    (message,) = run(warmers)
    assert isinstance(message, CheckWarning)
    assert message.id == PREFIX + "W003"
    assert message.msg == (
        "CACHE_WARMERS['w']['timeout']: 4 s is shorter than refresh_interval (4 s) plus the "
        "longest a run may take (warmup_timeout, 60 s): an entry could expire before the next "
        "refresh rewrote it, so warmed entries are written with a TTL of 64 s instead."
    )
    assert "Set 'timeout' to 64 or more" in hint_of(message)
    assert "lower 'warmup_timeout'" in hint_of(message)
    with override_settings(CACHE_WARMERS=warmers):
        assert parse_warmer("w", warmers["w"]).config.cache_timeout == 64


@pytest.mark.parametrize(
    ("definition", "ttl"),
    [
        ({"refresh_interval": 4, "timeout": 4, "warmup_timeout": 1}, 5),
        ({"refresh_interval": 2, "timeout": 2, "warmup_timeout": 0.5}, 3),  # rounded up
        ({"refresh_interval": 300, "timeout": 300}, 360),
        ({"strategy": "adaptive", "keys": "adaptive", "refresh_interval": 10, "timeout": 1}, 70),
    ],
)
def test_w003_adjusted_ttl(definition: dict[str, Any], ttl: int) -> None:
    raw = {**VALID, "strategy": "scheduled", **definition}
    (message,) = run({"w": raw})
    assert message.id == PREFIX + "W003"
    assert f"with a TTL of {ttl} s instead" in message.msg
    assert parse_warmer("w", raw).config.cache_timeout == ttl


@pytest.mark.parametrize(
    "definition",
    [
        {"strategy": "scheduled", "refresh_interval": 4, "timeout": 64},  # long enough already
        {"strategy": "scheduled", "refresh_interval": 4, "timeout": None},  # never expires
        {"strategy": "eager", "refresh_interval": 4, "timeout": 4},  # no refresh to outlive
        {"strategy": "lazy", "timeout": 1},
    ],
)
def test_no_w003_when_no_refresh_can_be_outlived(definition: dict[str, Any]) -> None:
    raw = {**VALID, **definition}
    assert run({"w": raw}) == []
    assert parse_warmer("w", raw).config.cache_timeout == definition["timeout"]


def test_omitted_timeout_gets_the_grace_silently() -> None:
    # The cache's own TIMEOUT (Django's default 300) is what "omitted" means; a scheduled warmer
    # refreshing every 300 s needs 360 s: raised without a warning, as docs/settings.md says.
    raw = {**VALID, "strategy": "scheduled"}
    assert run({"w": raw}) == []
    assert parse_warmer("w", raw).config.cache_timeout == 360
    with override_settings(CACHES=caches_with(LOCMEM, TIMEOUT=3600)):
        raw = {**raw, "cache": "warmed"}
        assert parse_warmer("w", raw).config.cache_timeout is DEFAULT_TIMEOUT
    with override_settings(CACHES=caches_with(LOCMEM, TIMEOUT=None)):
        assert parse_warmer("w", raw).config.cache_timeout is DEFAULT_TIMEOUT
    with override_settings(CACHES=caches_with(LOCMEM, TIMEOUT=10)):
        assert parse_warmer("w", raw).config.cache_timeout == 360


def test_malformed_caches_setting_does_not_crash() -> None:
    with override_settings(CACHES={"default": {"BACKEND": LOCMEM}, "odd": "x", "odder": {}}):
        assert run({"w": {**VALID, "cache": "odd", "strategy": "scheduled"}}) == []
        assert run({"w": {**VALID, "cache": "odder", "strategy": "scheduled"}}) == []
    with override_settings(CACHES={}):
        (message,) = run({"w": VALID})
    assert message.id == PREFIX + "E004"
    assert message.hint == "CACHES defines no cache; define one in CACHES."


# --------------------------------------------------------------------------- registration


def test_check_is_registered_with_the_caches_tag() -> None:
    assert check_cache_warmers in registry.get_checks()
    assert "caches" in check_cache_warmers.tags


@pytest.mark.django_db  # Django 6.1's check command also runs the database checks
def test_check_command_fails_on_a_bad_setting() -> None:
    out, err = StringIO(), StringIO()
    with (
        override_settings(CACHE_WARMERS={"products": {**VALID, "cache": "foo"}}),
        pytest.raises(SystemCheckError) as excinfo,
    ):
        call_command("check", stdout=out, stderr=err)
    text = str(excinfo.value)
    assert "(django_cachewarmers.E004) CACHE_WARMERS['products']['cache']: unknown cache" in text
    assert "HINT: Use one of the aliases in CACHES: 'default', 'db'." in text


@pytest.mark.django_db  # Django 6.1's check command also runs the database checks
def test_check_command_fails_on_a_bad_app_setting() -> None:
    with (
        override_settings(CACHE_WARMERS={}, CACHE_WARMERS_AUTOSTART="no"),
        pytest.raises(SystemCheckError, match=re.escape("django_cachewarmers.E013")),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db  # Django 6.1's check command also runs the database checks
def test_check_command_passes_on_a_good_setting() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(CACHE_WARMERS={"products": VALID, "lazy": {**VALID, "cache": "db"}}):
        call_command("check", stdout=out, stderr=err)
    assert "System check identified no issues" in out.getvalue()
    assert "django_cachewarmers" not in out.getvalue() + err.getvalue()


@pytest.mark.django_db  # Django 6.1's check command also runs the database checks
def test_check_command_reports_warnings_without_failing(tmp_path: Path) -> None:
    caches = caches_with(FILE_BASED, LOCATION=str(tmp_path))
    warmers = {"w": {**VALID, "cache": "warmed", "strategy": "scheduled"}}
    out, err = StringIO(), StringIO()
    with override_settings(CACHES=caches, CACHE_WARMERS=warmers):
        call_command("check", stdout=out, stderr=err)
        with pytest.raises(SystemCheckError, match=re.escape("django_cachewarmers.W001")):
            call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())
    assert "django_cachewarmers.W001" in out.getvalue() + err.getvalue()


@pytest.mark.django_db  # Django 6.1's check command also runs the database checks
def test_silenced_warning() -> None:
    caches = caches_with(DUMMY)
    warmers = {"w": {**VALID, "cache": "warmed"}}
    with override_settings(
        CACHES=caches, CACHE_WARMERS=warmers, SILENCED_SYSTEM_CHECKS=[PREFIX + "W002"]
    ):
        call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())


# --------------------------------------------------------------------------- the ID list


def _ids_the_code_reports() -> set[str]:
    """Every check ID a message is made with in the package's source: the code read with ``ast``
    (``error(N, ...)``, ``warning(N, ...)``, ``report.error(N, ...)``, ...), not a list kept by
    hand."""
    package = Path(django_cachewarmers.__file__).resolve().parent
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            code = node.args[0]
            if (
                name in ("error", "warning")
                and isinstance(code, ast.Constant)
                and isinstance(code.value, int)
            ):
                found.add(f"{PREFIX}{name[0].upper()}{code.value:03d}")
    return found


def test_the_id_list_is_the_ids_the_code_reports_and_the_docs_list() -> None:
    reported = _ids_the_code_reports()
    assert reported == set(CHECK_IDS)
    docs = (DOCS / "checks.md").read_text(encoding="utf-8")
    assert set(re.findall(r"django_cachewarmers\.[EW]\d{3}", docs)) == set(CHECK_IDS)
