"""Run a benchmark function in a fresh Python process, with Django configured there.

Timings of tiny per-request costs depend on the process as well as the code: where its objects
and code happen to sit in memory decides which of CPython's caches collide. Two identical handlers
built in one process were measured up to 0.9% apart. A figure taken in several fresh processes
shows that spread instead of one process's luck.
"""

from __future__ import annotations

import importlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _call_configured(
    module: str, function: str, args: tuple[Any, ...], hide: tuple[str, ...] = ()
) -> Any:
    # Runs in the child. The benchmark modules import views whose decorators read settings.
    import sys

    for name in hide:
        if name in sys.modules and sys.modules[name] is not None:
            raise RuntimeError(f"{name} was imported before it could be hidden")
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" now fails
    from benchmarks.__main__ import configure_django

    configure_django()
    return getattr(importlib.import_module(module), function)(*args)


def in_fresh_process(module: str, function: str, *args: Any, hide: tuple[str, ...] = ()) -> Any:
    """``module.function(*args)`` run in a new interpreter (spawned, not forked); its result.

    ``hide``: top-level modules that cannot be imported there (e.g. ``("hiredis",)``: redis-py
    then packs and parses in Python, as where hiredis is not installed).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_call_configured, module, function, args, hide).result()
