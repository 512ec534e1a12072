"""Process-local state that must start clean in a forked child."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

_F = TypeVar("_F", bound=Callable[[], None])


def after_fork_in_child(func: _F) -> _F:
    """Register ``func`` to run in the child after each ``os.fork()``; returns ``func``.

    A forked child has none of its parent's threads, and a lock one of them held stays held
    forever: module state holding threads or locks resets itself with this (a decorator).
    """
    if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
        os.register_at_fork(after_in_child=func)
    return func
