import os

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Real-process tests of the running mark's expiry shorten its margin (60 s in production).
        margin = os.environ.get("CW_RUNNING_MARK_MARGIN")
        if margin:
            from django_cachewarmers import runner

            runner.RUNNING_MARK_MARGIN_S = float(margin)
