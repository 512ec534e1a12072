"""Settings of server and worker subprocesses that use Django's Tasks framework (tests/processes.py
projects with DJANGO_SETTINGS_MODULE=tests.tasks_settings).

tests/server_settings.py (CW_* variables) plus django-tasks-db's database backend as the default
task backend, on the project's SQLite file in WAL mode, so the web or command process that
enqueues and the ``db_worker`` processes that run the tasks share it. Django >= 6.0 has the
framework built in; on 5.2 the django-tasks backport provides it (its app installed as its README
says).
"""

from __future__ import annotations

import django

from tests.server_settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")

DATABASES["default"]["OPTIONS"] = {  # noqa: F405
    "timeout": 30,
    # Readers never wait for the writer; the workers' claims are EXCLUSIVE transactions.
    "init_command": "PRAGMA journal_mode=WAL;",
    "transaction_mode": "IMMEDIATE",
}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
