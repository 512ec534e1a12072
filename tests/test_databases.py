"""Several databases: every write of the app goes where the project's router sends it, inside a
transaction on that database.

The project runs in a subprocess of its own (tests/multidb_settings.py): its "default" database is
Django's empty dummy and a router sends everything to "primary", a real SQLite file. Settings
overrides cannot swap the suite's own databases in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.processes import PYTHON, ROOT, sqlite_query

SCRIPT = """
import json, logging
import django

django.setup()
from django.core.management import call_command

call_command("migrate", database="primary", verbosity=0)

import django_cachewarmers
from django_cachewarmers import tracking
from django_cachewarmers.hotkeys import persist

problems = []


class Problems(logging.Handler):
    def emit(self, record):
        problems.append(record.getMessage())


logging.getLogger("django_cachewarmers").addHandler(Problems(logging.WARNING))
for key, times in {"product:1": 5, "product:2": 3, "product:3": 1}.items():
    for _ in range(times):
        django_cachewarmers.track(key)
saved = persist("keys", claim=False)
tracking.reset()  # a restart: what is hot now comes from the saved hot set only
stats = django_cachewarmers.warm("hot")
print(json.dumps({"saved": saved, "warmed": stats.keys_warmed, "problems": problems}))
"""


def test_every_write_goes_to_the_routers_database_in_a_transaction_there(tmp_path: Path) -> None:
    primary = tmp_path / "primary.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.multidb_settings"}
    env["CW_PRIMARY_DB"] = str(primary)
    done = subprocess.run(
        [PYTHON, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The hot set was saved (on "primary"), read back after the restart and warmed; no warning.
    assert result == {"saved": 3, "warmed": 2, "problems": []}
    hot = sqlite_query(primary, "SELECT key, count FROM django_cachewarmers_hotkey ORDER BY key")
    assert hot == [("product:1", 5.0), ("product:2", 3.0), ("product:3", 1.0)]
    runs = sqlite_query(
        primary, "SELECT warmer, trigger, keys_warmed FROM django_cachewarmers_warmingrun"
    )
    assert runs == [("hot", "api", 2)]
