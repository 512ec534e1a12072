"""The suite's Celery app, set up as Celery's Django guide shows, configured from CW_* variables.

CW_BROKER_URL / CW_RESULT_URL: databases of the suite's own redis-server (never a broker on the
machine's default ports: without CW_BROKER_URL the in-memory transport is used). CW_CELERY_QUEUE:
a queue of the test's own. CW_VISIBILITY_TIMEOUT: seconds before the Redis transport delivers an
unacknowledged message again (short here, so a killed worker's chunk comes back quickly).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server_settings")

app = Celery("cachewarmers_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    broker_url=os.environ.get("CW_BROKER_URL", "memory://"),
    result_backend=os.environ.get("CW_RESULT_URL", "cache+memory://"),
    task_default_queue=os.environ.get("CW_CELERY_QUEUE", "cachewarmers-tests"),
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("CW_VISIBILITY_TIMEOUT", "3")),
        # Look for unacknowledged messages to deliver again every second (kombu's default sweep
        # is every 10 x 10 s).
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
app.autodiscover_tasks()
