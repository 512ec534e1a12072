"""Bad input: malformed settings, keys a cache would reject, unpicklable values, bad CLI arguments.

Whatever the input, the outcome is a system-check error, a failed key with a clear error or a
``CommandError``: never a traceback, and never a field silently ignored.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_cachewarmers import (
    BatchValueLoader,
    CacheWarmer,
    CallableValueLoader,
    StaticKeyProvider,
    WarmingConfig,
)
from django_cachewarmers.parsing import parse_warmer, validate_warmers
from django_cachewarmers.spec import AdaptiveKeys, WarmerSpec
from tests.processes import Project
from tests.test_spec import JSON_LIKE, WARMERS

VALID = {"keys": ["a", "b"], "loader": "tests.testapp.warming.load_item"}
PROPERTIES = hypothesis_settings(max_examples=150, deadline=None, database=None)


# --------------------------------------------------------------------------- settings

_SPECIAL = st.sampled_from(
    [
        10**400, -(10**400), 2**63, math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e300,
        0.0005, 0.001, 31_536_000, 31_536_001, "eager", "lazy", "scheduled", "adaptive",
        "Eager", "default", "db", "nope", "", " ", "60", "True", b"bytes",
    ]
)  # fmt: skip
VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | _SPECIAL
ANY_VALUE = VALUES | st.lists(VALUES, max_size=3) | st.dictionaries(st.text(max_size=4), VALUES)


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite number (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _seconds(smallest: float, largest: float, *, open_low: bool) -> Callable[[object], bool]:
    def valid(value: object) -> bool:
        number = _finite(value)
        if number is None or number > largest:
            return False
        return number > smallest if open_low else number >= smallest

    return valid


def _int(minimum: int) -> Callable[[object], bool]:
    return lambda value: type(value) is int and value >= minimum


#: field -> (is this value valid?, where the parsed spec shows it)
FIELD_RULES: dict[str, tuple[Callable[[object], bool], Callable[[WarmerSpec], object]]] = {
    "cache": (lambda v: v in ("default", "db"), lambda s: s.cache),
    "timeout": (  # 0 means "don't cache" in Django: E025
        lambda v: v is None or _seconds(0, math.inf, open_low=True)(v),
        lambda s: s.config.cache_timeout,
    ),
    "timeout_jitter": (_seconds(0, math.inf, open_low=False), lambda s: s.config.timeout_jitter),
    "strategy": (
        lambda v: v in ("eager", "lazy", "scheduled"),
        lambda s: s.strategy.value,
    ),
    "refresh_interval": (
        _seconds(0.001, 31_536_000, open_low=False),
        lambda s: (s.refresh_interval, s.config.refresh_interval_s)[1],
    ),
    "batch_size": (_int(1), lambda s: s.config.batch_size),
    "max_workers": (_int(1), lambda s: s.config.max_workers),
    "max_retries": (_int(0), lambda s: s.config.max_retries),
    "warmup_timeout": (
        _seconds(0, 31_536_000, open_low=True),
        lambda s: s.config.warmup_timeout_s,
    ),
    "retry_backoff": (_seconds(0, math.inf, open_low=False), lambda s: s.config.retry_backoff_s),
    "optional": (lambda v: isinstance(v, bool), lambda s: s.optional),
}


@PROPERTIES
@given(st.sampled_from(sorted(FIELD_RULES)), ANY_VALUE)
def test_every_field_is_either_applied_or_reported(field: str, value: object) -> None:
    valid, shown = FIELD_RULES[field]
    messages = validate_warmers({"w": {**VALID, field: value}})
    errors = [m for m in messages if m.is_serious()]
    if value == "adaptive" and field == "strategy":
        # Valid on its own, but list keys are not adaptive: E012 names the keys.
        assert [m.id for m in errors] == ["django_cachewarmers.E012"]
        return
    if valid(value):
        assert errors == [], [m.msg for m in errors]
        spec = parse_warmer("w", {**VALID, field: value})
        # Applied as given, never replaced by a default (a huge int may become its nearest float).
        got = shown(spec)
        assert got == value or (type(value) is int and got == float(value)), (got, value)
    else:
        assert errors, f"{field}={value!r} was silently accepted"
        assert any(m.msg.startswith(f"CACHE_WARMERS['w'][{field!r}]: ") for m in errors), [
            m.msg for m in errors
        ]
        with pytest.raises(Exception, match=re.escape(f"[{field!r}]")):
            parse_warmer("w", {**VALID, field: value})


_TRACKER = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


@PROPERTIES
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "tracker": st.text(max_size=6) | VALUES,
            "threshold": VALUES,
            "limit": VALUES,
            "other": VALUES,
        },
    )
)
def test_adaptive_options_are_either_applied_or_reported(options: dict[str, Any]) -> None:
    definition = {**VALID, "keys": {"adaptive": options}}
    tracker = options.get("tracker", "pages")
    threshold = options.get("threshold", 5)
    limit = options.get("limit", 100)
    valid = (
        "other" not in options
        and isinstance(tracker, str)
        and bool(_TRACKER.fullmatch(tracker))
        and _int(1)(threshold)
        and _int(1)(limit)
    )
    errors = [m for m in validate_warmers({"w": definition}) if m.is_serious()]
    if valid:
        assert errors == []
        assert parse_warmer("w", definition).keys == AdaptiveKeys(tracker, threshold, limit)
    else:
        assert errors
        assert all(m.id == "django_cachewarmers.E011" for m in errors), [m.msg for m in errors]
        assert all(m.msg.startswith("CACHE_WARMERS['w']['keys']") for m in errors)


APP_SETTINGS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "CACHE_WARMERS_AUTOSTART": ("E013", lambda v: isinstance(v, bool)),
    "CACHE_WARMERS_HISTORY_LIMIT": ("E014", _int(1)),
    "CACHE_WARMERS_STARTUP_WINDOW": ("E015", _seconds(0, math.inf, open_low=True)),
    "CACHE_WARMERS_KEY_PREFIX": (
        "E016",
        lambda v: isinstance(v, str) and bool(re.fullmatch(r"[^\s\x00-\x1f\x7f]+", v)),
    ),
    "CACHE_WARMERS_TRACKER_MAX_KEYS": ("E018", _int(1)),
    "CACHE_WARMERS_TRACK_AUTHENTICATED": ("E019", lambda v: isinstance(v, bool)),
    "CACHE_WARMERS_TRACK_SAMPLE_RATE": (
        "E021",
        lambda v: _seconds(0, 1, open_low=False)(v),
    ),
    "CACHE_WARMERS_SNAPSHOT_CACHE": ("E022", lambda v: v in ("default", "db")),
    "CACHE_WARMERS_SNAPSHOT_INTERVAL": ("E023", _seconds(0, math.inf, open_low=False)),
    "CACHE_WARMERS_PERSIST_INTERVAL": ("E023", _seconds(0, math.inf, open_low=False)),
    "CACHE_WARMERS_SNAPSHOT_SIZE": ("E024", _int(1)),
}


@PROPERTIES
@given(st.sampled_from(sorted(APP_SETTINGS)), ANY_VALUE)
def test_every_app_setting_is_either_valid_or_reported(setting: str, value: object) -> None:
    from django_cachewarmers.checks import validate_app_settings

    code, valid = APP_SETTINGS[setting]
    with override_settings(**{setting: value}):
        messages = validate_app_settings()
    if valid(value):
        assert messages == [], [m.msg for m in messages]
    else:
        assert [m.id for m in messages] == [f"django_cachewarmers.{code}"], value
        assert messages[0].msg.startswith(f"{setting}: ")


@PROPERTIES
@given(JSON_LIKE | WARMERS)
def test_a_server_start_names_each_invalid_warmer_and_never_raises(raw: object) -> None:
    from django_cachewarmers.autostart import _report_invalid_warmers
    from django_cachewarmers.parsing import get_specs

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("django_cachewarmers")
    logger.addHandler(handler)
    try:
        with override_settings(CACHE_WARMERS=raw):
            specs = get_specs()
            _report_invalid_warmers(specs)  # what gunicorn/uvicorn workers do: no checks run
    finally:
        logger.removeHandler(handler)
    assert all(r.exc_info is None for r in records)  # one line each, no traceback
    if not isinstance(raw, dict):
        assert len(records) == 1
        assert "CACHE_WARMERS is not a dict" in records[0].getMessage()
        return
    invalid = [name for name in raw if name not in specs]
    assert len(records) == len(invalid)
    assert all(r.levelno == logging.ERROR for r in records)


# --------------------------------------------------------------------------- invalid keys

BAD_KEYS: list[Any] = ["x" * 300, "has space", "ctrl\x01char", ("tuple", 1)]
GOOD_KEYS = ["good:1", "good:2"]


def _loader(kind: str) -> Any:
    if kind == "loader":
        return CallableValueLoader(lambda key: f"value of {key}")
    return BatchValueLoader(lambda keys: {key: f"value of {key}" for key in keys})


@pytest.mark.parametrize("kind", ["loader", "batch_loader"])
def test_keys_the_cache_would_reject_are_failed_keys_not_a_crash(kind: str) -> None:
    # LocMemCache warns (CacheKeyWarning) about keys Memcached would reject; warnings are errors
    # here, so a key reaching the cache unchecked would fail the whole run.
    cache = caches["default"]
    cache.clear()
    keys = [GOOD_KEYS[0], *BAD_KEYS, GOOD_KEYS[1]]
    warmer = CacheWarmer(cache, StaticKeyProvider(keys), _loader(kind), WarmingConfig(), name="k")
    stats = warmer.warm()
    assert (stats.keys_warmed, stats.keys_failed) == (2, 4), stats.errors
    assert stats.run_error is None
    assert len(stats.errors) == 4
    assert all("invalid cache key" in error for error in stats.errors), stats.errors
    assert [cache.get(key) for key in GOOD_KEYS] == [f"value of {key}" for key in GOOD_KEYS]


def test_a_plain_dict_cache_takes_any_hashable_key() -> None:
    store: dict[Any, Any] = {}
    keys = [*GOOD_KEYS, *BAD_KEYS]
    warmer = CacheWarmer(store, StaticKeyProvider(keys), _loader("loader"), name="dict")
    assert warmer.warm().keys_warmed == len(keys)


# --------------------------------------------------------------------------- unpicklable values


@pytest.mark.parametrize("kind", ["loader", "batch_loader"])
def test_unpicklable_values_fail_only_their_keys_on_redis(kind: str, redis_cache: Any) -> None:
    def value(key: str) -> object:
        return threading.Lock() if key == "item:5" else f"value of {key}"

    loader: Any = (
        CallableValueLoader(value)
        if kind == "loader"
        else BatchValueLoader(lambda keys: {key: value(key) for key in keys})
    )
    keys = [f"item:{i}" for i in range(10)]
    redis_cache.set("item:5", "the good value from before", None)
    warmer = CacheWarmer(
        redis_cache, StaticKeyProvider(keys), loader, WarmingConfig(batch_size=4), name="pickle"
    )
    stats = warmer.warm()
    assert (stats.keys_warmed, stats.keys_failed) == (9, 1)
    assert re.match(r"item:5: value not cacheable: TypeError: cannot pickle", stats.errors[0])
    assert redis_cache.get("item:5") == "the good value from before"
    assert all(redis_cache.get(k) == f"value of {k}" for k in keys if k != "item:5")


# --------------------------------------------------------------------------- the command line

CLI_WARMERS = {"items": {"keys": ["a"], "loader": "tests.testapp.warming.load_item"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown cache warmer 'nope'; known warmers: 'items'"),
        (["--list", "nope"], "unknown cache warmer 'nope'; known warmers: 'items'"),
        (["--keys", "a"], "--keys needs exactly one warmer name, e.g. `manage.py warm_cache"),
        (["--dry-run", "--keys", "a"], "--keys needs exactly one warmer name, e.g."),
        (["--keys"], "argument --keys: expected at least one argument"),
        (["--chunk-size", "0"], "argument --chunk-size: must be an integer >= 1, got '0'"),
        (["--chunk-size", "abc"], "argument --chunk-size: must be an integer >= 1, got 'abc'"),
        (["--chunk-size", "1.5"], "argument --chunk-size: must be an integer >= 1, got '1.5'"),
        (["--timeout", "-1"], "argument --timeout: must be a number of seconds > 0, got '-1'"),
        (["--timeout", "0"], "argument --timeout: must be a number of seconds > 0, got '0'"),
        (["--timeout", "nan"], "argument --timeout: must be a number of seconds > 0, got 'nan'"),
        (["--timeout", "inf"], "argument --timeout: must be a number of seconds > 0, got 'inf'"),
        (["items", "--chunk-size", "5"], "--chunk-size: only with --celery"),
        (["--list", "--schedule"], "--list and --schedule cannot be combined"),
    ],
)
def test_bad_command_arguments_are_command_errors(args: list[str], message: str) -> None:
    with override_settings(CACHE_WARMERS=CLI_WARMERS), pytest.raises(CommandError) as raised:
        call_command("warm_cache", *args)
    assert message in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--chunk-size", "0"], "usage: "),
        (["--timeout", "-1"], "usage: "),
        (["--chunk-size", "abc"], "usage: "),
        (["--keys", "a"], "e.g. `manage.py warm_cache products --keys product:1 product:2`"),
        (["nope"], "known warmers: 'items'"),
    ],
)
def test_bad_arguments_on_the_real_command_line(args: list[str], hint: str, tmp_path: Path) -> None:
    # Redis is never reached: the arguments are refused first.
    project = Project(tmp_path, "redis://127.0.0.1:1/0", CLI_WARMERS)
    try:
        result = project.manage("warm_cache", *args, timeout=60)
    finally:
        project.cleanup()
    assert result.returncode in (1, 2), result
    assert hint in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
