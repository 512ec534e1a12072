"""A read-only admin for the warming history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_cachewarmers.models import WarmingRun

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[WarmingRun]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(WarmingRun)
class WarmingRunAdmin(_ModelAdmin):
    """Browse warming runs; nobody adds or edits them, only superusers delete them."""

    list_display = [
        "warmer",
        "trigger",
        "started_at",
        "keys_warmed",
        "keys_failed",
        "success_rate_display",
        "duration_display",
        "ok_display",
    ]
    list_filter = ["warmer", "trigger", "started_at"]
    search_fields = ["warmer"]
    date_hierarchy = "started_at"
    fields = readonly_fields = (
        "warmer",
        "trigger",
        "started_at",
        "finished_at",
        "ok_display",
        "keys_warmed",
        "keys_failed",
        "success_rate_display",
        "duration_display",
        "run_error",
        "errors_display",
        "hostname",
        "pid",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WarmingRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WarmingRun | None = None) -> bool:
        is_superuser = bool(getattr(request.user, "is_superuser", False))
        return is_superuser and super().has_delete_permission(request, obj)

    @admin.display(description=_("success rate"), ordering="success_rate")
    def success_rate_display(self, run: WarmingRun) -> str:
        return f"{run.success_rate:.1%}"

    @admin.display(description=_("duration"), ordering="total_time_ms")
    def duration_display(self, run: WarmingRun) -> str:
        if round(run.total_time_ms) < 1000:
            return f"{run.total_time_ms:.0f} ms"
        return f"{run.total_time_ms / 1000:.2f} s"

    @admin.display(description=_("OK"), boolean=True)
    def ok_display(self, run: WarmingRun) -> bool:
        return run.ok

    @admin.display(description=_("errors"))
    def errors_display(self, run: WarmingRun) -> SafeString:
        errors = run.errors if isinstance(run.errors, list) else [run.errors]
        lines = [(str(error),) for error in errors]
        if run.errors_omitted:
            more = ngettext(
                "… and %(count)d more error", "… and %(count)d more errors", run.errors_omitted
            ) % {"count": run.errors_omitted}
            lines.append((more,))
        if not lines:
            return self.get_empty_value_display()
        # format_html_join escapes every line: keys and messages are not to be trusted.
        return format_html_join("\n", "<div>{}</div>", lines)
