"""The admin: the "Cache warmers" overview with "Warm now", and the read-only warming history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_cachewarmers import dashboard, payoff
from django_cachewarmers.core.stats import format_duration
from django_cachewarmers.models import Warmer, WarmingRun
from django_cachewarmers.parsing import get_specs
from django_cachewarmers.registry import UnknownWarmer, names
from django_cachewarmers.runner import start_in_background

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[WarmingRun]
    _OverviewAdmin = admin.ModelAdmin[Warmer]
else:
    _ModelAdmin = _OverviewAdmin = admin.ModelAdmin

#: The permission that allows "Warm now" (superusers have every permission).
WARM_PERMISSION = "django_cachewarmers.warm_cache"


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
        return format_duration(run.total_time_ms)

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


@admin.register(Warmer)
class WarmerAdmin(_OverviewAdmin):
    """The overview of every declared warmer, with "Warm now" for those allowed to warm.

    Its "changelist" is the overview page; there is nothing to add, change or delete. Seeing it
    takes the ``view`` permission of cache warmers or of warming runs (the overview summarises
    the runs); the buttons take ``django_cachewarmers.warm_cache`` as well.
    """

    template_name = "django_cachewarmers/overview.html"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or _may_see_runs(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_warm_permission(self, request: HttpRequest) -> bool:
        """Whether the user may start warms: ``warm_cache`` and the right to see the overview."""
        return self.has_view_permission(request) and request.user.has_perm(WARM_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name=f"{info}_changelist"),
            path("warm-all/", view(self.warm_all_view), name=f"{info}_warm_all"),
            path("<path:name>/warm/", view(self.warm_view), name=f"{info}_warm"),
        ]

    def _url(self, name: str, *args: str) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=args,
            current_app=self.admin_site.name,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = dashboard.overview()
        can_warm = self.has_warm_permission(request)
        runs_url = ""
        if _may_see_runs(request):
            runs_url = reverse(
                f"{self.admin_site.name}:django_cachewarmers_warmingrun_changelist",
                current_app=self.admin_site.name,
            )
        for row in rows:
            row.warm_url = self._url("warm", row.name) if can_warm and row.valid else ""
            row.runs_url = (
                f"{runs_url}?{urlencode({'warmer__exact': row.name})}" if runs_url else ""
            )
        counts = {
            state: sum(1 for row in rows if row.state == state)
            for state in ("ok", "failing", "never", "invalid")
        }
        context = {
            **self.admin_site.each_context(request),
            "title": capfirst(self.opts.verbose_name_plural),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "rows": rows,
            "counts": counts,
            "running": sum(1 for row in rows if row.running),
            "payoff": payoff.summary_line({row.name: row.reads for row in rows if row.reads}),
            "can_warm": can_warm,
            "warm_all_url": self._url("warm_all") if can_warm else "",
            "runs_url": runs_url,
            "history_length": dashboard.HISTORY_LENGTH,
            # Django 6 marks breadcrumbs up as a list; 5.2 as a div.
            "breadcrumbs_as_list": django.VERSION >= (6, 0),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.template_name, context)

    def _check_warm(self, request: HttpRequest) -> HttpResponse | None:
        if request.method != "POST":  # nothing is ever warmed on a GET
            return HttpResponseNotAllowed(["POST"])
        if not self.has_warm_permission(request):
            raise PermissionDenied
        return None

    def warm_view(self, request: HttpRequest, name: str) -> HttpResponse:
        refused = self._check_warm(request)
        if refused is not None:
            return refused
        if name not in names():
            raise Http404(gettext("No cache warmer is called “%(name)s”.") % {"name": name})
        try:
            started = start_in_background(name)
        except (UnknownWarmer, ImproperlyConfigured) as exc:
            messages.error(
                request,
                gettext("%(name)s cannot be warmed: %(error)s") % {"name": name, "error": exc},
            )
        else:
            if started:
                messages.success(
                    request,
                    gettext(
                        "Warming %(name)s started in the background. "
                        "Its run shows here when it is done."
                    )
                    % {"name": name},
                )
            else:
                messages.warning(
                    request,
                    gettext("%(name)s is already being warmed.") % {"name": name},
                )
        return HttpResponseRedirect(self._url("changelist"))

    def warm_all_view(self, request: HttpRequest) -> HttpResponse:
        refused = self._check_warm(request)
        if refused is not None:
            return refused
        started: list[str] = []
        busy: list[str] = []
        for name in get_specs():
            try:
                (started if start_in_background(name) else busy).append(name)
            except (UnknownWarmer, ImproperlyConfigured):
                continue  # changed settings since get_specs(): the overview shows the error
        if started:
            messages.success(
                request,
                ngettext(
                    "Warming %(names)s started in the background. "
                    "Its run shows here when it is done.",
                    "Warming %(names)s started in the background. "
                    "Their runs show here when they are done.",
                    len(started),
                )
                % {"names": ", ".join(started)},
            )
        if busy:
            messages.warning(
                request,
                ngettext(
                    "%(names)s is already being warmed.",
                    "%(names)s are already being warmed.",
                    len(busy),
                )
                % {"names": ", ".join(busy)},
            )
        if not started and not busy:
            messages.warning(request, gettext("There is no valid cache warmer to warm."))
        return HttpResponseRedirect(self._url("changelist"))


def _may_see_runs(request: HttpRequest) -> bool:
    """Whether the user may see the run history (and so the overview of the warmers)."""
    user = request.user
    return user.has_perm("django_cachewarmers.view_warmingrun") or user.has_perm(
        "django_cachewarmers.change_warmingrun"
    )
