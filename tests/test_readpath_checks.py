"""The checks of a warmer's ``fresh_for``: E026 (not a number of seconds > 0), E027 (not less than
the entries' TTL), W005 (a FileBasedCache cannot single-flight across processes)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_cachewarmers.check_messages import CHECK_IDS
from django_cachewarmers.checks import check_cache_warmers
from django_cachewarmers.parsing import parse_warmer
from django_cachewarmers.spec import DEFAULTS

PREFIX = "django_cachewarmers."
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
FILE_BASED = "django.core.cache.backends.filebased.FileBasedCache"
VALID: dict[str, Any] = {"keys": ["product:1"], "loader": "tests.readpath_loaders.load"}


def run(warmers: object) -> list[Any]:
    with override_settings(CACHE_WARMERS=warmers):
        return check_cache_warmers(app_configs=None)


@pytest.mark.parametrize("value", ["60", 0, -1, True, float("nan"), float("inf"), [60]])
def test_e026_fresh_for_not_a_number_of_seconds(value: object) -> None:
    (message,) = run({"w": {**VALID, "timeout": 300, "fresh_for": value}})
    assert isinstance(message, Error)
    assert message.id == PREFIX + "E026"
    assert message.msg.startswith("CACHE_WARMERS['w']['fresh_for']: must be a finite number")
    assert "fresh_for" in (message.hint or "")
    with pytest.raises(ImproperlyConfigured, match="E026"):
        parse_warmer("w", {**VALID, "timeout": 300, "fresh_for": value})


@pytest.mark.parametrize("fresh_for", [300, 301, 1000.5])
def test_e027_fresh_for_not_less_than_timeout(fresh_for: float) -> None:
    (message,) = run({"w": {**VALID, "timeout": 300, "fresh_for": fresh_for}})
    assert isinstance(message, Error)
    assert message.id == PREFIX + "E027"
    assert message.msg.startswith(
        f"CACHE_WARMERS['w']['fresh_for']: {fresh_for:g} s is not less than its TTL "
        "('timeout'), 300 s"
    )


def test_e027_compares_with_the_caches_timeout_when_timeout_is_left_out() -> None:
    caches = {"default": {"BACKEND": LOCMEM, "TIMEOUT": 30}}
    with override_settings(CACHES=caches):
        (message,) = run({"w": {**VALID, "fresh_for": 30}})
        assert message.id == PREFIX + "E027"
        assert "the TIMEOUT of cache 'default' ('timeout' is left out), 30 s" in message.msg
        assert run({"w": {**VALID, "fresh_for": 29}}) == []


def test_e027_compares_with_the_ttl_after_the_grace() -> None:
    # A scheduled warmer's 10 s timeout becomes refresh_interval + warmup_timeout = 120 s (W003).
    raw = {**VALID, "strategy": "scheduled", "refresh_interval": 60, "timeout": 10}
    messages = run({"w": {**raw, "fresh_for": 119}})
    assert [m.id for m in messages] == [PREFIX + "W003"]
    assert parse_warmer("w", {**raw, "fresh_for": 30}).fresh_for == 30.0
    assert [m.id for m in run({"w": {**raw, "fresh_for": 120}})] == [
        PREFIX + "W003",
        PREFIX + "E027",
    ]


def test_fresh_for_with_a_timeout_that_never_expires_is_valid() -> None:
    assert run({"w": {**VALID, "timeout": None, "fresh_for": 10**6}}) == []
    assert parse_warmer("w", {**VALID, "timeout": None, "fresh_for": 5}).fresh_for == 5.0


def test_fresh_for_defaults_to_none() -> None:
    assert DEFAULTS["fresh_for"] is None
    assert parse_warmer("w", VALID).fresh_for is None
    assert parse_warmer("w", {**VALID, "fresh_for": None}).fresh_for is None


def test_w005_fresh_for_on_a_file_based_cache(tmp_path: Any) -> None:
    caches = {
        "default": {"BACKEND": LOCMEM},
        "files": {"BACKEND": FILE_BASED, "LOCATION": str(tmp_path)},
    }
    with override_settings(CACHES=caches):
        (message,) = run({"w": {**VALID, "cache": "files", "timeout": 300, "fresh_for": 60}})
        assert isinstance(message, CheckWarning)
        assert message.id == PREFIX + "W005"
        assert "add() is not atomic" in message.msg
        assert "SILENCED_SYSTEM_CHECKS" in (message.hint or "")
        assert run({"w": {**VALID, "cache": "files", "timeout": 300}}) == []


def test_the_ids_are_listed() -> None:
    for code in ("E026", "E027", "W005"):
        assert PREFIX + code in CHECK_IDS


@pytest.mark.parametrize("fresh_for", [1e-300, 0.001, 0.5])
def test_w012_fresh_for_below_a_second(fresh_for: float) -> None:
    (message,) = run({"w": {**VALID, "timeout": 300, "fresh_for": fresh_for}})
    assert isinstance(message, CheckWarning)
    assert message.id == PREFIX + "W012"
    assert message.msg.startswith(f"CACHE_WARMERS['w']['fresh_for']: {fresh_for:g} s: nearly")
    assert run({"w": {**VALID, "timeout": 300, "fresh_for": 1}}) == []


PAGES = {"loader": "django_cachewarmers.pages.render_page", "timeout": 300}


def test_e028_fresh_for_on_a_page_warmer() -> None:
    found = run({"w": {**PAGES, "keys": ["https://shop.example/"], "fresh_for": 60}})
    assert [m.id for m in found] == [PREFIX + "E028"]
    assert found[0].msg.startswith("CACHE_WARMERS['w']['fresh_for']: a page warmer's pages")
    assert "refresh_interval" in (found[0].hint or "")


@pytest.mark.parametrize("keys", [["/p/1/"], ["https://shop.example/", "p/2", "/p/3"]])
def test_e047_relative_urls_of_a_page_warmer(keys: list[str]) -> None:
    found = run({"w": {**PAGES, "keys": keys}})
    assert [m.id for m in found] == [PREFIX + "E047"]
    assert found[0].msg.startswith(
        "CACHE_WARMERS['w']['keys']: render_page renders absolute http(s) URLs"
    )
    relative = [key for key in keys if not key.startswith("https://")]
    assert repr(relative[0]) in found[0].msg
    assert run({"w": {**PAGES, "keys": ["https://shop.example/p/1/", "HTTP://x.example/"]}}) == []
