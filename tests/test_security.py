"""Security end to end, through real gunicorn workers and the suite's own redis-server.

- No secret (query-string token, session cookie, Authorization header, custom cookie or header)
  ever reaches a stored key, a stored value, a database row or a log line.
- Snapshots forged in the shared cache cannot make a warmer render a foreign host's page, fetch
  anything over the network, or put keys into another tracker's warmer.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import Project, http_get, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def project(projects: Callable[..., Project]) -> Callable[..., Project]:
    def make(warmers: dict[str, Any], **env: str) -> Project:
        return projects(warmers, CW_LOG_LEVELS="1", **env)

    return make


def redis_dump(p: Project) -> list[bytes]:
    """Every key of this project in Redis, and every value (raw bytes, as stored)."""
    client = redis.Redis.from_url(p.redis_url)
    found: list[bytes] = []
    try:
        for key in client.scan_iter(match=f"{p.prefix}:*".encode()):
            found.append(key)
            value = client.get(key) if client.type(key) == b"string" else client.dump(key)
            found.append(value if isinstance(value, bytes) else b"")
    finally:
        client.close()
    return found


def test_no_secret_or_cookie_reaches_a_stored_key_a_row_or_a_log_line(
    project: Callable[..., Project],
) -> None:
    hot_pages = {
        "keys": {"adaptive": {"tracker": "pages", "threshold": 2}},
        "loader": "django_cachewarmers.pages.render_page",
        "strategy": "adaptive",
        "refresh_interval": 1,
    }
    p = project(
        {"hot_pages": hot_pages},
        CW_MIDDLEWARE="tracking",
        CW_SNAPSHOT_INTERVAL="0.5",
        CW_PERSIST_INTERVAL="1",
        CW_LOG_LEVEL="DEBUG",  # every line the app can write, Django's loggers too
        CW_LOG_ROOT="1",
    )
    secret = {
        name: f"{name}-secret-{uuid.uuid4().hex}"
        for name in ("query", "query2", "session", "auth", "cookie", "csrf", "header", "basic")
    }
    visits: list[tuple[str, dict[str, str]]] = [
        (f"/products/1/?token={secret['query']}", {}),
        (
            f"/pages/home/?api_key={secret['query2']}&page=2",
            {"Cookie": f"sessionid={secret['session']}; tracking={secret['cookie']}"},
        ),
        ("/pages/about/", {"Authorization": f"Bearer {secret['auth']}"}),
        ("/pages/basic/", {"Authorization": f"Basic {secret['basic']}"}),
        (
            "/pages/contact/",
            {"Cookie": f"csrftoken={secret['csrf']}", "X-Api-Key": secret["header"]},
        ),
        (f"/missing/?token={secret['query']}", {"Cookie": f"sessionid={secret['session']}"}),
    ]
    server, port = p.start_gunicorn("gunicorn.log")
    for _ in range(6):
        for path, headers in visits:
            status, _ = http_get(port, path, headers)
            assert status == (404 if path.startswith("/missing/") else 200), path

    site = f"http://127.0.0.1:{port}"

    def hot_keys() -> set[str]:
        with contextlib.suppress(sqlite3.OperationalError):
            return {row[0] for row in p.query("SELECT key FROM django_cachewarmers_hotkey")}
        return set()

    wait_until(
        lambda: {f"{site}/products/1/", f"{site}/pages/home/"} <= hot_keys(), 30, "the hot set"
    )
    # /products/1/ is a cache_page page (warmed); the /pages/ ones have no page cache in front of
    # them here, so render_page renders them and reports them failed ("no page cache").
    wait_until(
        lambda: [r for r in p.run_rows() if r["keys_warmed"] >= 1 and r["keys_failed"] >= 2],
        30,
        "a warm of the hot pages",
    )
    snapshot = redis_dump(p)
    assert p.stop(server) == 0  # the clean shutdown also saves the hot set and logs
    stored = [*snapshot, *redis_dump(p)]
    log = p.log("gunicorn.log")
    rows = [
        *p.query("SELECT * FROM django_cachewarmers_hotkey"),
        *p.query("SELECT * FROM django_cachewarmers_warmingrun"),
    ]

    # What was captured is real: the anonymous pages were counted, without their query strings;
    # pages requested with credentials were not (they are personal).
    keys = hot_keys()
    assert {f"{site}/products/1/", f"{site}/pages/home/", f"{site}/pages/contact/"} <= keys
    assert not {f"{site}/pages/about/", f"{site}/pages/basic/"} & keys
    assert any(b":hot:pages:" in item for item in stored)  # a published snapshot was captured
    assert "DEBUG django_cachewarmers:" in log

    texts = [log, *(item.decode("latin-1") for item in stored), repr(rows)]
    for name, value in secret.items():
        for text in texts:
            assert value not in text, f"the {name} secret leaked: ...{_around(text, value)}..."
    for marker in ("token=", "api_key=", "sessionid=", "Bearer ", "Basic "):
        assert marker not in log, marker


def _around(text: str, value: str) -> str:
    at = text.index(value)
    return text[max(0, at - 80) : at + len(value) + 20]


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_forged_snapshots_reach_neither_foreign_hosts_nor_another_trackers_warmer(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    hot_pages = {
        "keys": {"adaptive": {"tracker": "pages", "threshold": 3}},
        "loader": "django_cachewarmers.pages.render_page",
        "strategy": "adaptive",
        "refresh_interval": 1,
    }
    hot_products = {
        "keys": {"adaptive": {"tracker": "keys", "threshold": 3}},
        "loader": "tests.testapp.warming.load_item_logged",
        "strategy": "adaptive",
        "refresh_interval": 1,
    }
    loader_log = tmp_path / "loaded.log"
    view_log = tmp_path / "views.log"
    loader_log.touch()
    view_log.touch()
    p = project(
        {"hot_pages": hot_pages, "hot_products": hot_products},
        CW_ALLOWED_HOSTS="127.0.0.1,localhost",
        CW_LOADER_LOG=str(loader_log),
        CW_VIEW_LOG=str(view_log),
        CW_SNAPSHOT_INTERVAL="0.5",
    )
    listener = Listener()
    try:

        def forge(tracker_slot: str, slot: int, tracker: str, items: list[Any]) -> None:
            record = {"v": 1, "tracker": tracker, "owner": f"forger:{slot}:x", "at": time.time(),
                      "items": items}  # fmt: skip
            p.cache.set(f"django_cachewarmers:hot:{tracker_slot}:{slot}", record, 300)

        forge("pages", 50, "pages", [
            ["http://evil.example/pages/evil/", 1000],
            ["https://localhost.evil.example/pages/evil2/", 1000],
            [f"http://evil.example:{listener.port}/pages/evil3/", 1000],
            [f"http://127.0.0.1:{listener.port}/pages/local/", 1000],  # allowed host, other port
        ])  # fmt: skip
        forge("keys", 51, "pages", [["product:evil1", 1000]])  # a "pages" record in keys' place
        forge("pages", 52, "keys", [["product:evil2", 1000]])  # a "keys" record in pages' place
        forge("keys", 53, "keys", [["product:good", 1000]])  # a genuine snapshot of "keys"

        server, _ = p.start_gunicorn("gunicorn.log")
        wait_until(
            lambda: "product:good" in loader_log.read_text(), 30, "the genuine hot key warmed"
        )
        runs = wait_until(
            lambda: [r for r in p.run_rows() if r["warmer"] == "hot_pages" and r["keys_failed"]],
            30,
            "a warm of the forged pages",
        )
        time.sleep(1.5)  # a few more runs of each warmer
        log = p.log("gunicorn.log")
        assert p.stop(server) == 0
    finally:
        listener.close()

    loaded = loader_log.read_text().split()
    assert set(loaded) == {"product:good"}, loaded
    assert p.cache.get("product:good") == "value of product:good"
    assert p.cache.get("product:evil1") is None
    assert p.cache.get("product:evil2") is None
    views = set(view_log.read_text().split())
    assert "page:local" in views  # rendered in-process (allowed host), never fetched
    assert not {"page:evil", "page:evil2", "page:evil3"} & views, views
    assert listener.connections == 0  # render_page opens no connection, whatever the URL
    errors = runs[0]["errors"]
    assert "host 'evil.example' is not in ALLOWED_HOSTS" in errors
    assert "host 'localhost.evil.example' is not in ALLOWED_HOSTS" in errors
    assert f"host 'evil.example:{listener.port}' is not in ALLOWED_HOSTS" in errors
    assert "Traceback" not in log
