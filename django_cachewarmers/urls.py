"""``path("cachewarmers/", include("django_cachewarmers.urls"))`` serves ``metrics`` (Prometheus
text exposition; see ``django_cachewarmers.views`` for how it is restricted)."""

from __future__ import annotations

from django.urls import path

from django_cachewarmers.views import metrics_view

app_name = "django_cachewarmers"
urlpatterns = [path("metrics", metrics_view, name="metrics")]
