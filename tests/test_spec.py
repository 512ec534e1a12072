"""conf.py (lazily read settings) and spec.py (CACHE_WARMERS parsed into WarmerSpec)."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_cachewarmers.checks import validate_app_settings
from django_cachewarmers.conf import Settings, conf
from django_cachewarmers.core.config import DEFAULT_TIMEOUT, WarmingStrategy
from django_cachewarmers.parsing import get_specs, parse_warmer, validate_warmers
from django_cachewarmers.spec import (
    ADAPTIVE_FIELDS,
    DEFAULTS,
    FIELDS,
    AdaptiveKeys,
    WarmerSpec,
    refresh_ttl,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


# Real callables that the dotted paths below point to.
def product_keys() -> list[str]:
    return ["product:1", "product:2"]


def load_product(key: Hashable) -> dict[str, Any]:
    return {"key": key}


def load_products(keys: list[Any]) -> dict[Any, Any]:
    return {key: {"key": key} for key in keys}


NOT_CALLABLE = 42

VALID: dict[str, Any] = {
    "keys": "tests.test_spec.product_keys",
    "batch_loader": "tests.test_spec.load_products",
}


def ids(messages: list[CheckMessage]) -> list[str | None]:
    return [m.id for m in messages]


# --------------------------------------------------------------------------- conf


APP_SETTINGS = [
    ("AUTOSTART", "CACHE_WARMERS_AUTOSTART", True, False),
    ("HISTORY_LIMIT", "CACHE_WARMERS_HISTORY_LIMIT", 100, 7),
    ("STARTUP_WINDOW", "CACHE_WARMERS_STARTUP_WINDOW", 60.0, 2.5),
    ("KEY_PREFIX", "CACHE_WARMERS_KEY_PREFIX", "django_cachewarmers", "myprefix"),
]


@pytest.mark.parametrize(("prop", "setting", "default", "other"), APP_SETTINGS)
def test_conf_default_when_unset(prop: str, setting: str, default: object, other: object) -> None:
    with override_settings():
        if hasattr(settings, setting):
            delattr(settings, setting)
        assert getattr(conf, prop) == default


@pytest.mark.parametrize(("prop", "setting", "default", "other"), APP_SETTINGS)
def test_conf_reads_settings_on_every_access(
    prop: str, setting: str, default: object, other: object
) -> None:
    with override_settings(**{setting: other}):
        assert getattr(conf, prop) == other
    with override_settings(**{setting: default}):
        assert getattr(conf, prop) == default


def test_conf_cache_warmers_is_returned_raw() -> None:
    garbage = object()
    with override_settings(CACHE_WARMERS=garbage):
        assert conf.CACHE_WARMERS is garbage
    with override_settings():
        del settings.CACHE_WARMERS
        assert conf.CACHE_WARMERS == {}
    assert isinstance(conf, Settings)


# --------------------------------------------------------------------------- parse_warmer


def test_parse_full_definition() -> None:
    raw = {
        "keys": "tests.test_spec.product_keys",
        "batch_loader": "tests.test_spec.load_products",
        "cache": "db",
        "timeout": 600,
        "timeout_jitter": 0.1,
        "strategy": "scheduled",
        "refresh_interval": 120,
        "batch_size": 50,
        "max_workers": 2,
        "max_retries": 0,
        "warmup_timeout": 30,
        "retry_backoff": 0.5,
        "optional": True,
    }
    spec = parse_warmer("products", raw)
    assert isinstance(spec, WarmerSpec)
    assert spec.name == "products"
    assert spec.keys is product_keys
    assert spec.batch_loader is load_products
    assert spec.loader is None
    assert spec.cache == "db"
    assert spec.strategy is WarmingStrategy.SCHEDULED
    assert spec.refresh_interval == 120.0
    assert isinstance(spec.refresh_interval, float)
    assert spec.optional is True
    assert spec.raw is raw
    config = spec.config
    assert config.strategy is WarmingStrategy.SCHEDULED
    assert config.batch_size == 50
    assert config.max_workers == 2
    assert config.max_retries == 0
    assert config.refresh_interval_s == 120.0
    assert config.warmup_timeout_s == 30.0
    assert config.cache_timeout == 600
    assert config.timeout_jitter == 0.1
    assert config.retry_backoff_s == 0.5
    assert config.retry_on_failure is True


def test_parse_defaults() -> None:
    spec = parse_warmer("w", {"keys": ["a", "b"], "loader": "tests.test_spec.load_product"})
    assert spec.keys == ("a", "b")
    assert spec.loader is load_product
    assert spec.batch_loader is None
    assert spec.cache == "default"
    assert spec.strategy is WarmingStrategy.EAGER
    assert spec.refresh_interval == 300.0
    assert spec.optional is False
    config = spec.config
    assert config.strategy is WarmingStrategy.EAGER
    assert config.batch_size == 100
    assert config.max_workers == 4
    assert config.max_retries == 3
    assert config.refresh_interval_s == 300.0
    assert config.warmup_timeout_s == 60.0
    assert config.cache_timeout is DEFAULT_TIMEOUT
    assert config.timeout_jitter == 0.0
    assert config.retry_backoff_s == 0.1
    assert config.retry_backoff_max_s == 10.0
    assert DEFAULTS["strategy"] == "eager"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, DEFAULT_TIMEOUT),
        ({"timeout": None}, None),
        ({"timeout": 600}, 600),
        ({"timeout": 0.5}, 0.5),
    ],
)
def test_timeout(extra: dict[str, Any], expected: object) -> None:
    spec = parse_warmer("w", {**VALID, **extra})
    if expected is DEFAULT_TIMEOUT or expected is None:
        assert spec.config.cache_timeout is expected
    else:
        assert spec.config.cache_timeout == expected


def test_callables_given_directly() -> None:
    spec = parse_warmer("w", {"keys": product_keys, "loader": load_product})
    assert spec.keys is product_keys
    assert spec.loader is load_product
    spec = parse_warmer("w", {"keys": ("x", 1, (2, 3)), "batch_loader": load_products})
    assert spec.keys == ("x", 1, (2, 3))
    assert spec.batch_loader is load_products


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("adaptive", AdaptiveKeys()),
        ({"adaptive": {}}, AdaptiveKeys()),
        (
            {"adaptive": {"tracker": "api-v2.hits", "threshold": 1, "limit": 7}},
            AdaptiveKeys("api-v2.hits", 1, 7),
        ),
        (AdaptiveKeys(threshold=9), AdaptiveKeys(threshold=9)),
    ],
)
def test_adaptive_keys(keys: object, expected: AdaptiveKeys) -> None:
    spec = parse_warmer("hot", {**VALID, "keys": keys, "strategy": "adaptive"})
    assert spec.keys == expected
    assert AdaptiveKeys() == AdaptiveKeys(tracker="pages", threshold=5, limit=100)


@pytest.mark.parametrize(
    ("strategy", "scheduled", "at_startup"),
    [("eager", False, True), ("lazy", False, False), ("scheduled", True, True)],
)
def test_strategy_properties(strategy: str, scheduled: bool, at_startup: bool) -> None:
    spec = parse_warmer("w", {**VALID, "strategy": strategy})
    assert spec.is_scheduled is scheduled
    assert spec.warms_at_startup is at_startup
    assert spec.config.strategy.value == strategy


def test_adaptive_strategy_properties() -> None:
    spec = parse_warmer("w", {**VALID, "keys": "adaptive", "strategy": WarmingStrategy.ADAPTIVE})
    assert spec.is_scheduled is True
    assert spec.warms_at_startup is True


def test_large_retry_backoff_raises_the_backoff_cap() -> None:
    spec = parse_warmer("w", {**VALID, "retry_backoff": 30})
    assert spec.config.retry_backoff_s == 30.0
    assert spec.config.retry_backoff_max_s == 30.0


def test_loader_none_counts_as_not_set() -> None:
    spec = parse_warmer("w", {**VALID, "loader": None})
    assert spec.loader is None
    assert spec.batch_loader is load_products


def test_parse_raises_with_every_error() -> None:
    raw = {
        "keys": "tests.test_spec.missing",
        "loader": "tests.test_spec.load_product",
        "cache": "nope",
        "batch_size": 0,
        "strategy": "often",
        "optinal": True,
    }
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_warmer("products", raw)
    text = str(excinfo.value)
    for code in ("E003", "E004", "E006", "E008", "E009"):
        assert f"django_cachewarmers.{code}" in text
    assert "CACHE_WARMERS['products']['cache']: unknown cache alias 'nope'." in text
    assert "HINT: Use one of the aliases in CACHES: 'default', 'db'." in text
    assert "Did you mean 'optional'?" in text


@pytest.mark.parametrize("name", ["", "  ", "a b", "tab\t", "nul\x00", 5, None])
def test_parse_rejects_bad_names(name: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match=re.escape("django_cachewarmers.E002")):
        parse_warmer(name, VALID)


def test_parse_keeps_warnings_only_warmers() -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    with override_settings(CACHES=caches):
        assert ids(validate_warmers({"w": {**VALID, "cache": "dummy"}})) == [
            "django_cachewarmers.W002"
        ]
        assert parse_warmer("w", {**VALID, "cache": "dummy"}).cache == "dummy"


def test_cache_aliases_are_read_at_call_time() -> None:
    with override_settings(
        CACHES={"other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        assert parse_warmer("w", {**VALID, "cache": "other"}).cache == "other"
        with pytest.raises(ImproperlyConfigured, match="the default when 'cache' is omitted"):
            parse_warmer("w", VALID)


# --------------------------------------------------------------------------- get_specs


def test_get_specs_skips_invalid_warmers() -> None:
    warmers = {
        "b_first": VALID,
        "broken": {**VALID, "cache": "nope"},
        "a_second": {**VALID, "strategy": "lazy"},
        5: VALID,
        "junk": None,
    }
    with override_settings(CACHE_WARMERS=warmers):
        specs = get_specs()
    assert list(specs) == ["b_first", "a_second"]
    assert specs["a_second"].strategy is WarmingStrategy.LAZY


@pytest.mark.parametrize("raw", [None, 5, [VALID], "x", {}])
def test_get_specs_of_no_or_bad_setting(raw: object) -> None:
    with override_settings(CACHE_WARMERS=raw):
        assert get_specs() == {}


def test_get_specs_reads_settings_each_call() -> None:
    with override_settings(CACHE_WARMERS={"one": VALID}):
        assert list(get_specs()) == ["one"]
    with override_settings(CACHE_WARMERS={"two": VALID}):
        assert list(get_specs()) == ["two"]


# --------------------------------------------------------------------------- never raising


class Unreprable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __hash__(self) -> int:
        raise TypeError("no hash")


GARBAGE: list[object] = [
    None,
    5,
    [VALID],
    "CACHE_WARMERS",
    {"x": 5},
    {1: {}},
    {"x": {"keys": object()}},
    {"x": {"keys": [[1], {2: 3}], "loader": object(), "cache": ["default"]}},
    {"x": {object(): 1, 2.5: None, (1, 2): [], "keys": {"adaptive": [1]}}},
    {"x": {"keys": {"adaptive": {"tracker": None, "threshold": "5", "limit": -1, 7: 7}}}},
    {"x": {**VALID, "timeout": 10**5000, "batch_size": 10**5000, "refresh_interval": 1e400}},
    {"x": {**VALID, "strategy": Unreprable(), "optional": Unreprable()}},
    {"x": {"keys": [Unreprable()], "loader": Unreprable()}},
    {None: None, (): (), "": ""},
    {"x": {"keys": "", "batch_loader": "."}},
    {"x": {"keys": "tests..x", "loader": "tests.test_spec."}},
]


@pytest.mark.parametrize("raw", GARBAGE)
def test_validate_never_raises_on_garbage(raw: object) -> None:
    messages = validate_warmers(raw)
    assert messages
    assert all(isinstance(m, CheckMessage) for m in messages)
    assert all(m.hint for m in messages)
    with override_settings(CACHE_WARMERS=raw):
        assert get_specs() == {}


def test_validate_app_settings_never_raises() -> None:
    with override_settings(
        CACHE_WARMERS_AUTOSTART=Unreprable(),
        CACHE_WARMERS_HISTORY_LIMIT=Unreprable(),
        CACHE_WARMERS_STARTUP_WINDOW=Unreprable(),
        CACHE_WARMERS_KEY_PREFIX=Unreprable(),
    ):
        assert len(validate_app_settings()) == 4


# --------------------------------------------------------------------------- docs


def test_settings_doc_lists_every_field_and_setting() -> None:
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    for field in [*FIELDS, *ADAPTIVE_FIELDS]:
        assert f"`{field}`" in text, field
    for _, setting, _, _ in APP_SETTINGS:
        assert f"`{setting}`" in text, setting


# --------------------------------------------------------------------------- properties

_SAFE_TEXT = st.text(alphabet=st.characters(exclude_characters="."), max_size=12)
_INTERESTING = st.sampled_from(
    [
        *FIELDS,
        *ADAPTIVE_FIELDS,
        *(s.value for s in WarmingStrategy),
        "default",
        "db",
        "pages",
        "tests.test_spec.product_keys",
        "tests.test_spec.load_products",
        "tests.test_spec.NOT_CALLABLE",
        "tests.test_spec.missing",
        "no_such_module_for_cachewarmers.func",
        "os.path",
    ]
)
# No random text contains a dot, so no random text is imported as a dotted path.
_TEXT = _SAFE_TEXT | _INTERESTING
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from([10**400, -0.0, math.inf])
    | _TEXT
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(_TEXT | st.integers(), children, max_size=4)
    ),
    max_leaves=16,
)
DEFINITIONS = st.dictionaries(st.sampled_from(list(FIELDS)) | _TEXT, JSON_LIKE, max_size=8)
WARMERS = st.dictionaries(_TEXT | st.integers() | st.none(), DEFINITIONS | JSON_LIKE, max_size=4)

_PROPERTY_SETTINGS = hypothesis_settings(max_examples=200, deadline=None, database=None)


@_PROPERTY_SETTINGS
@given(JSON_LIKE | WARMERS)
def test_validate_never_raises(raw: object) -> None:
    messages = validate_warmers(raw)
    assert isinstance(messages, list)
    assert all(isinstance(m, CheckMessage) for m in messages)
    assert all(m.id and m.id.startswith("django_cachewarmers.") for m in messages)
    # parse_warmer agrees with validate_warmers: errors iff it raises.
    if isinstance(raw, dict):
        for name, definition in raw.items():
            errors = [m for m in validate_warmers({name: definition}) if m.is_serious()]
            try:
                parse_warmer(name, definition)
            except ImproperlyConfigured:
                assert errors
            else:
                assert not errors


@_PROPERTY_SETTINGS
@given(
    DEFINITIONS,
    (_SAFE_TEXT.filter(lambda s: s not in FIELDS) | st.integers() | st.none()),
    JSON_LIKE,
)
def test_unknown_field_always_reported(definition: dict[Any, Any], field: Any, value: Any) -> None:
    messages = validate_warmers({"w": {**definition, field: value}})
    unknown = [m for m in messages if m.id == "django_cachewarmers.E003"]
    assert any(m.msg.startswith("CACHE_WARMERS['w'][") for m in unknown)


_VALID_FIELDS = st.fixed_dictionaries(
    {
        "keys": st.sampled_from(["tests.test_spec.product_keys", ["a", "b"], ("c",), []]),
        "loader": st.just("tests.test_spec.load_product"),
    },
    optional={
        "cache": st.sampled_from(["default", "db"]),
        "timeout": st.none() | st.integers(1, 10**6) | st.floats(0.001, 1e6),
        "timeout_jitter": st.floats(0, 2),
        "strategy": st.sampled_from(["eager", "lazy", "scheduled"]),
        "refresh_interval": st.integers(1, 10**6) | st.floats(0.001, 1e6),
        "batch_size": st.integers(1, 10**4),
        "max_workers": st.integers(1, 64),
        "max_retries": st.integers(0, 10),
        "warmup_timeout": st.floats(0.001, 1e4),
        "retry_backoff": st.floats(0, 100),
        "optional": st.booleans(),
    },
)


@_PROPERTY_SETTINGS
@given(_VALID_FIELDS)
def test_valid_definitions_parse(raw: dict[str, Any]) -> None:
    messages = validate_warmers({"w": raw})
    spec = parse_warmer("w", raw)
    config = spec.config
    assert config.batch_size == raw.get("batch_size", 100)
    assert config.max_workers == raw.get("max_workers", 4)
    assert config.max_retries == raw.get("max_retries", 3)
    assert config.refresh_interval_s == raw.get("refresh_interval", 300.0)
    raised = False
    if raw.get("strategy") == "scheduled":
        # The TTL grace: never shorter than one refresh (refresh_interval + warmup_timeout).
        floor = refresh_ttl(config.refresh_interval_s, config.warmup_timeout_s)
        given = raw.get("timeout", 300)  # both test caches keep Django's default TIMEOUT (300)
        raised = given is not None and given < floor
        if raised:
            assert config.cache_timeout == floor
        else:
            assert config.cache_timeout == raw.get("timeout", DEFAULT_TIMEOUT)
    else:
        assert config.cache_timeout == raw.get("timeout", DEFAULT_TIMEOUT)
    # Only an explicit timeout that was raised is reported (W003); an omitted one silently.
    expected = ["django_cachewarmers.W003"] if raised and "timeout" in raw else []
    given_ttl = raw.get("timeout")
    if not raised and given_ttl is not None and 0 < given_ttl < 1:
        expected = ["django_cachewarmers.W004"]  # under a second, and no grace raised it
    assert [m.id for m in messages] == expected
    assert config.strategy.value == raw.get("strategy", "eager")
    assert spec.optional is raw.get("optional", False)
    assert spec.cache == raw.get("cache", "default")
