"""A private memcached for the suite: started on a free port, never a memcached it did not start."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

from tests.redis_server import free_port, require_binary


class MemcachedServer:
    """A memcached child process on 127.0.0.1 and a free port (64 MB, 1 MB item limit: defaults)."""

    def __init__(self) -> None:
        self.binary = require_binary("memcached", "needed for the PyMemcacheCache tests")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def location(self) -> str:
        """The ``LOCATION`` of a Django memcached cache on this server."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
            # memcached refuses to run as root unless told which user to be.
            + (["-u", "root"] if os.geteuid() == 0 else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"memcached exited at start:\n{err}")
            try:
                if self.command(b"version").startswith(b"VERSION"):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"memcached did not answer on port {self.port}")

    def command(self, line: bytes) -> bytes:
        """Send one text-protocol command line; return the first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(line + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.split(b"\r\n", 1)[0]

    def ttl(self, full_key: str) -> int | None:
        """Seconds left for ``full_key`` (meta get's ``t`` flag): -1 never expires, None absent."""
        reply = self.command(b"mg " + full_key.encode() + b" t")
        if not reply.startswith(b"HD"):
            return None
        for flag in reply.split()[1:]:
            if flag.startswith(b"t"):
                return int(flag[1:])
        return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


def close_memcached(cache: Any) -> None:
    """Close a Django PyMemcacheCache's sockets (unclosed ones are a ResourceWarning: an error)."""
    cache.close()
