"""System-check messages: every check ID this app reports, and how a message is worded."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Final

from django.core import checks

__all__ = [
    "CHECK_IDS",
    "Report",
    "describe_value",
    "did_you_mean",
    "error",
    "error_text",
    "format_message",
    "internal_error",
    "setting_path",
    "short_repr",
    "warning",
]

_ID = "django_cachewarmers."

#: Every check ID this app reports, with a one-line meaning (docs/checks.md has the fixes).
CHECK_IDS: Final[dict[str, str]] = {
    "django_cachewarmers.E001": "CACHE_WARMERS is not a dict.",
    "django_cachewarmers.E002": "A warmer's name is not a non-empty string without whitespace, or "
    "its definition is not a dict.",
    "django_cachewarmers.E003": "A warmer has an unknown field.",
    "django_cachewarmers.E004": "A warmer's 'cache' is not an alias in CACHES.",
    "django_cachewarmers.E005": "A warmer sets both or neither of 'loader' and 'batch_loader'.",
    "django_cachewarmers.E006": "A callable field (keys, loader, batch_loader) cannot be imported "
    "or is not callable.",
    "django_cachewarmers.E007": "A warmer's 'keys' is missing or invalid.",
    "django_cachewarmers.E008": "A warmer's 'strategy' is unknown.",
    "django_cachewarmers.E009": "A numeric field is not a valid number.",
    "django_cachewarmers.E010": "A warmer's 'optional' is not True or False.",
    "django_cachewarmers.E011": "A warmer's adaptive keys options are invalid.",
    "django_cachewarmers.E012": "An 'adaptive' warmer's keys are not adaptive.",
    "django_cachewarmers.E013": "CACHE_WARMERS_AUTOSTART is not True or False.",
    "django_cachewarmers.E014": "CACHE_WARMERS_HISTORY_LIMIT is not an integer >= 1.",
    "django_cachewarmers.E015": "CACHE_WARMERS_STARTUP_WINDOW is not a number > 0.",
    "django_cachewarmers.E016": "CACHE_WARMERS_KEY_PREFIX is not a non-empty string without "
    "whitespace.",
    "django_cachewarmers.E017": "The setting could not be validated at all.",
    "django_cachewarmers.E018": "CACHE_WARMERS_TRACKER_MAX_KEYS is not an integer >= 1.",
    "django_cachewarmers.E019": "CACHE_WARMERS_TRACK_AUTHENTICATED is not a bool.",
    "django_cachewarmers.E020": "CACHE_WARMERS_TRACK_EXCLUDE is not a list of valid regexes.",
    "django_cachewarmers.E021": "CACHE_WARMERS_TRACK_SAMPLE_RATE is not a number from 0 to 1.",
    "django_cachewarmers.E022": "CACHE_WARMERS_SNAPSHOT_CACHE is not an alias in CACHES.",
    "django_cachewarmers.E023": "CACHE_WARMERS_SNAPSHOT_INTERVAL or CACHE_WARMERS_PERSIST_INTERVAL "
    "is not a number >= 0.",
    "django_cachewarmers.E024": "CACHE_WARMERS_SNAPSHOT_SIZE is not an integer >= 1.",
    "django_cachewarmers.W001": "A scheduled or adaptive warmer uses a FileBasedCache, which "
    "cannot coordinate processes.",
    "django_cachewarmers.W002": "A warmer uses a DummyCache, which stores nothing.",
    "django_cachewarmers.E025": "A warmer's 'timeout' is 0 (Django: don't cache), or it is left "
    "out and its cache's own TIMEOUT is 0 or less.",
    "django_cachewarmers.W003": "A scheduled or adaptive warmer's 'timeout' is shorter than "
    "refresh_interval + warmup_timeout; its entries get the longer TTL.",
    "django_cachewarmers.W004": "A warmer's TTL ('timeout', or its cache's TIMEOUT) is between 0 "
    "and 1 second, which Redis and Memcached cannot store as given.",
    "django_cachewarmers.E035": "A warmer's 'via' is not 'local', 'tasks' or 'celery'.",
    "django_cachewarmers.E036": "A warmer's 'via' is 'tasks' or 'celery', but its cache is a "
    "LocMemCache (local to each process).",
    "django_cachewarmers.E037": "A warmer's 'via' is 'tasks', but Django's Tasks framework is not "
    "available (Django < 6.0 without the django-tasks backport).",
    "django_cachewarmers.E038": "A warmer's 'via' is 'celery', but Celery is not installed.",
    "django_cachewarmers.E039": "A warmer's 'via' is 'tasks', but the default task backend is not "
    "usable, or is a DummyBackend (never runs a task).",
    "django_cachewarmers.W008": "A warmer's 'via' is 'tasks', but the default task backend is an "
    "ImmediateBackend (runs the tasks in the server process).",
    "django_cachewarmers.W009": "A warmer's 'via' is set on a 'lazy' warmer, which has no startup "
    "or scheduled runs.",
    "django_cachewarmers.E026": "A warmer's 'fresh_for' is not a number of seconds > 0 or None.",
    "django_cachewarmers.E027": "A warmer's 'fresh_for' is not less than the TTL of its entries.",
    "django_cachewarmers.W005": "A warmer with 'fresh_for' uses a FileBasedCache, whose add() "
    "cannot single-flight loads and refreshes across processes.",
    "django_cachewarmers.E040": "A warmer's 'rewarm_on' is not a dict of model labels to "
    "callables.",
    "django_cachewarmers.E041": "A model label in 'rewarm_on' names no installed model.",
    "django_cachewarmers.E042": "A callable in 'rewarm_on' cannot be imported or is not callable.",
    "django_cachewarmers.E043": "A warmer with 'rewarm_on' has no 'loader' or 'batch_loader'.",
    "django_cachewarmers.E044": "CACHE_WARMERS_REWARM_QUEUE_SIZE is not an integer >= 1.",
    "django_cachewarmers.W010": "A warmer with 'rewarm_on' uses a LocMemCache: only the process "
    "that saved re-warms its own copy.",
    "django_cachewarmers.E028": "A page warmer (render_page) has 'fresh_for', which only "
    "get() reads, and get() refuses page warmers.",
    "django_cachewarmers.E047": "A page warmer's key list has a URL that is not an absolute "
    "http(s) URL.",
    "django_cachewarmers.W012": "A warmer's 'fresh_for' is below 1 second: nearly every read "
    "starts a refresh.",
    "django_cachewarmers.E045": "CACHE_WARMERS_METRICS_TOKEN is not None or a bearer token "
    "(RFC 6750).",
    "django_cachewarmers.E046": "CACHE_WARMERS_METRICS_ALLOWED_IPS is not a list of IP addresses "
    "or networks.",
    "django_cachewarmers.E030": "A warmer's 'variants' is not a non-empty list of dicts of "
    "request header names to string values.",
    "django_cachewarmers.E031": "A variant names Cookie, Authorization, Proxy-Authorization or "
    "Host.",
    "django_cachewarmers.E032": "'variants' is set on a warmer whose loader is not render_page.",
    "django_cachewarmers.E033": "A warmer's {'sitemap': ...} keys are invalid.",
    "django_cachewarmers.E034": "Sitemap keys without 'domain', and no current Site "
    "(django.contrib.sites with SITE_ID).",
    "django_cachewarmers.W006": "Sitemap keys' 'domain' is not in ALLOWED_HOSTS.",
    "django_cachewarmers.W007": "Sitemap keys on a warmer whose loader is not render_page.",
}

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 80
_repr.maxlong = 60


def short_repr(value: object) -> str:
    """A short repr that never raises."""
    try:
        return _repr.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def describe_value(value: object) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return short_repr(value)
    return f"{type(value).__name__} {short_repr(value)}"


def error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = text.strip().rstrip(".")
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def setting_path(name: object, *path: object) -> str:
    return f"CACHE_WARMERS[{short_repr(name)}]" + "".join(f"[{short_repr(p)}]" for p in path)


def error(code: int, msg: str, hint: str) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=f"{_ID}E{code:03d}")


def warning(code: int, msg: str, hint: str) -> checks.CheckMessage:
    return checks.Warning(msg, hint=hint, id=f"{_ID}W{code:03d}")


def internal_error(where: str, exc: Exception) -> checks.CheckMessage:
    return error(
        17,
        f"{where}: could not be validated ({error_text(exc)}).",
        "Use plain dicts, lists and values in these settings. If they are plain, this is a bug "
        "in django-cachewarmers: please report it with the setting's value.",
    )


def format_message(message: checks.CheckMessage) -> str:
    text = f"({message.id}) {message.msg}"
    if message.hint:
        text += f" HINT: {message.hint}"
    return text


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"Did you mean {matches[0]!r}? " if matches else ""


class Report:
    """The messages found so far in one warmer's definition."""

    def __init__(self) -> None:
        self.messages: list[checks.CheckMessage] = []

    def error(self, code: int, msg: str, hint: str) -> None:
        self.messages.append(error(code, msg, hint))

    def warning(self, code: int, msg: str, hint: str) -> None:
        self.messages.append(warning(code, msg, hint))

    @property
    def has_errors(self) -> bool:
        return any(m.is_serious() for m in self.messages)
