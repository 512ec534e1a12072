"""Keys and loaders of warmers re-warmed on change of ``auth.Group`` rows (a real model of an
installed app), referenced by dotted path from the tests' ``rewarm_on``."""

from __future__ import annotations

import threading
from typing import Any

from django.contrib.auth.models import Group

#: Every call of ``load_groups``: the list of keys it was given.
batch_calls: list[list[str]] = []
_lock = threading.Lock()


def group_keys(instance: Group) -> list[str]:
    """The cache key of one group."""
    return [f"group:{instance.pk}"]


def group_key_str(instance: Group) -> str:
    """The same key, returned as a lone string (one key)."""
    return f"group:{instance.pk}"


def load_groups(keys: list[str]) -> dict[str, str]:
    """One query for a batch of group keys: each group's name."""
    with _lock:
        batch_calls.append(list(keys))
    ids = [int(key.split(":", 1)[1]) for key in keys]
    return {f"group:{pk}": name for pk, name in Group.objects.filter(pk__in=ids).values_list()}


def load_group(key: str) -> str:
    """One group's name (a per-key loader)."""
    return str(Group.objects.get(pk=int(key.split(":", 1)[1])).name)


def all_group_keys() -> list[str]:
    return [f"group:{pk}" for pk in Group.objects.values_list("pk", flat=True)]


def broken_keys_for(instance: Any) -> list[str]:
    raise RuntimeError("the keys function is broken")


NOT_CALLABLE = 42


def group_page_keys(instance: Group) -> list[str]:
    """The page of one group (``tests/urls.py``: a ``cache_page`` view), as a page warmer's key."""
    return [f"http://testserver/groups/{instance.pk}/"]
