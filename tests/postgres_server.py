"""A private PostgreSQL server for the suite: initdb + pg_ctl in a temporary folder, on a free port,
never the machine's own server.

``initdb`` refuses to run as root, so as root the server runs as the unprivileged ``postgres``
user (``runuser -u postgres``), which owns the temporary folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.redis_server import free_port, require_binary

#: Where Debian's postgresql packages put the server binaries (not on PATH).
_DEBIAN_BIN = "/usr/lib/postgresql/*/bin"
_USER = "postgres"


def _server_binary(name: str) -> str:
    """Path of a PostgreSQL server binary: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(
        glob.glob(f"{_DEBIAN_BIN}/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    return require_binary(name, "PostgreSQL's server, needed for the PostgreSQL tests")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


class PostgresServer:
    """A PostgreSQL server child on 127.0.0.1:<free port>, its data and socket in a temp folder.

    Durability is off (``fsync=off``): the data is thrown away with the folder.
    """

    def __init__(self) -> None:
        self.initdb = _server_binary("initdb")
        self.pg_ctl = str(Path(self.initdb).with_name("pg_ctl"))
        if not os.access(self.pg_ctl, os.X_OK):
            _skip_or_fail(f"pg_ctl is not installed beside {self.initdb} (PostgreSQL's server)")
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                user = pwd.getpwnam(_USER)
            except KeyError:
                user = None
            if runuser is None or user is None:
                _skip_or_fail(
                    "initdb refuses to run as root and there is no 'postgres' user to run it as "
                    "(`bash .ci/run` installs PostgreSQL's server, which creates it)"
                )
                raise AssertionError("unreachable")
            self.prefix = [runuser, "-u", _USER, "--"]
            self._uid, self._gid = user.pw_uid, user.pw_gid
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cachewarmers-postgres-"))
        if self.prefix:
            os.chown(self.dir, self._uid, self._gid)
        self.data = self.dir / "data"
        self.user = _USER
        self.database = "postgres"
        self.started = False

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=120, cwd=self.dir
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        # Trust authentication: only this machine's users can reach 127.0.0.1 and the socket
        # folder, and the server lives for one test session.
        self._run(
            self.initdb, "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "postgres.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.started = True

    @property
    def settings(self) -> dict[str, object]:
        """A Django ``DATABASES`` entry for this server."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "USER": self.user,
            "NAME": self.database,
        }

    def log(self) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                time.sleep(0.5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
