"""A private redis-server for the suite: started on a free port, never the user's Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, why: str) -> str:
    """Path of a system binary; skip (or fail under CI=true) with a clear reason if missing."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed ({why}); `bash .ci/run` installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


class RedisServer:
    """A redis-server child process on a free port, with no persistence, in its own folder."""

    def __init__(self) -> None:
        self.binary = require_binary("redis-server", "needed for the Redis cache tests")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cachewarmers-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def close_redis(cache: Any) -> None:
    """Close the pooled connections of a Django RedisCache (its close() leaves them open, and an
    unclosed socket found later by the garbage collector is a ResourceWarning: an error here)."""
    client = cache.__dict__.get("_cache")  # a cached_property: absent if the cache was never used
    for pool in getattr(client, "_pools", {}).values():
        pool.disconnect()


class SentinelServer(RedisServer):
    """A Redis Sentinel (``redis-server --sentinel``) on a free port, monitoring ``master`` as
    ``service``: what django-redis's ``SentinelClient`` asks for the primary and the replicas."""

    def __init__(self, master: RedisServer, service: str = "cachewarmers") -> None:
        super().__init__()
        self.master = master
        self.service = service

    def start(self) -> None:
        config = self.dir / "sentinel.conf"  # Sentinel rewrites its own config file
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'redis.log'}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 60000\n"
        )
        self.process = subprocess.Popen(
            [self.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        request = f"SENTINEL get-master-addr-by-name {self.service}\r\n".encode()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server --sentinel exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(request)
                    if str(self.master.port).encode() in sock.recv(256):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server --sentinel did not answer on port {self.port}")
