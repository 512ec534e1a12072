"""Shared fixtures: real cache backends for the core engine's tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches

from tests.memcached_server import MemcachedServer
from tests.processes import Project
from tests.redis_server import RedisServer, close_redis


class RecordingCache:
    """Wraps a real Django cache and records each set_many call (keys and kwargs)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.set_many_calls: list[tuple[list[Any], dict[str, Any]]] = []
        self.lock = threading.Lock()

    def set_many(self, data: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.set_many_calls.append((list(data), dict(kwargs)))
        return self.inner.set_many(data, *args, **kwargs)

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self.inner.set(key, value, *args, **kwargs)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.inner.get(key, default)


@pytest.fixture(params=["dict", "locmem", pytest.param("database", marks=pytest.mark.django_db)])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real cache of each kind the core supports: a dict, LocMemCache and DatabaseCache."""
    if request.param == "dict":
        yield {}
        return
    cache = caches["db"] if request.param == "database" else caches["default"]
    cache.clear()
    yield cache
    cache.clear()


def cached(cache: Any, key: Any) -> Any:
    """Read a key back from a dict or a Django cache."""
    return cache.get(key)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's own redis-server on a free port (never the user's Redis on 6379)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (never the suite's shared one), which the test may stop,
    start again, fill up or reconfigure; removed after the test."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_cache(redis_server: RedisServer) -> Iterator[Any]:
    """A Django RedisCache on the suite's own server, in a database of its own, emptied after."""
    from django.core.cache.backends.redis import RedisCache

    cache = RedisCache(f"{redis_server.url}/1", {})
    yield cache
    cache.clear()  # only ever the suite's own server, never one it did not start
    close_redis(cache)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    """The suite's own memcached on a free port (never a memcached it did not start)."""
    server = MemcachedServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def memcached_cache(memcached_server: MemcachedServer) -> Iterator[Any]:
    """A Django PyMemcacheCache on the suite's own memcached, emptied and closed after."""
    from django.core.cache.backends.memcached import PyMemcacheCache

    cache = PyMemcacheCache(memcached_server.location, {})
    yield cache
    cache.clear()  # only ever the suite's own server
    cache.close()


@pytest.fixture
def projects(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Project]]:
    """Makes migrated server projects (real subprocesses, see tests/processes.py); cleans up.

    ``projects(warmers, server=None, **env)``: ``server`` defaults to the suite's redis-server;
    ``env`` adds CW_* variables for tests/server_settings.py.
    """
    made: list[Project] = []

    def make(warmers: dict[str, Any], *, server: RedisServer | None = None, **env: str) -> Project:
        server = server if server is not None else request.getfixturevalue("redis_server")
        project = Project(tmp_path, server, warmers)
        project.env.update(env)
        migrated = project.manage("migrate", "--noinput", "--skip-checks")
        assert migrated.returncode == 0, migrated.stderr
        made.append(project)
        return project

    yield make
    for project in made:
        project.cleanup()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that hanging test loaders wait on; set at teardown so no thread outlives a test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With CI=true a skipped test is a failure: CI must have everything the suite needs."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI") == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: a skipped test is a failure here. Skip reason: {reason}"
