"""The warming history: one ``WarmingRun`` row per run of a warmer."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import OuterRef, Q, Subquery
from django.utils.translation import gettext_lazy as _


class Trigger(models.TextChoices):
    """What started a warming run."""

    STARTUP = "startup", _("Startup")
    SCHEDULE = "schedule", _("Schedule")
    COMMAND = "command", _("Management command")
    ADMIN = "admin", _("Admin")
    API = "api", _("API")
    CELERY = "celery", _("Celery")
    TASKS = "tasks", _("Django tasks")
    CHANGE = "change", _("Model change")


class WarmingRunQuerySet(models.QuerySet["WarmingRun"]):
    """Queries over the warming history."""

    def for_warmer(self, name: str) -> WarmingRunQuerySet:
        """The runs of the warmer ``name``."""
        # Annotated: django-stubs' ``Self`` reads as Any when mypy targets Python 3.10.
        runs: WarmingRunQuerySet = self.filter(warmer=name)
        return runs

    def failed(self) -> WarmingRunQuerySet:
        """The runs where a key failed or the run as a whole failed."""
        runs: WarmingRunQuerySet = self.filter(Q(keys_failed__gt=0) | ~Q(run_error=""))
        return runs

    def latest_per_warmer(self) -> dict[str, WarmingRun]:
        """The most recent run of each warmer, by warmer name, in one query."""
        newest = (
            self.filter(warmer=OuterRef("warmer")).order_by("-started_at", "-pk").values("pk")[:1]
        )
        return {run.warmer: run for run in self.filter(pk=Subquery(newest)).order_by()}

    def prune(self, name: str, keep: int) -> int:
        """Delete all but the newest ``keep`` runs of the warmer ``name``; returns how many went."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, not {keep}")
        runs = self.for_warmer(name)
        # The first run to go, then everything older: two plain queries, since MySQL has no LIMIT
        # in a subquery and a list of ids to delete can exceed a backend's parameter limit.
        first_to_go = list(
            runs.order_by("-started_at", "-pk").values_list("started_at", "pk")[keep : keep + 1]
        )
        if not first_to_go:
            return 0
        started_at, pk = first_to_go[0]
        older = Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lte=pk)
        doomed: WarmingRunQuerySet = runs.filter(older)
        deleted, _by_model = doomed.delete()
        return deleted


class WarmingRun(models.Model):
    """One run of a warmer, whatever started it: its counts, timing and errors."""

    warmer = models.CharField(_("warmer"), max_length=200)
    trigger = models.CharField(_("trigger"), max_length=20, choices=Trigger.choices)
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"))
    keys_warmed = models.PositiveIntegerField(_("keys warmed"))
    keys_failed = models.PositiveIntegerField(_("keys failed"))
    success_rate = models.FloatField(
        _("success rate"), help_text=_("Warmed keys / attempted keys, from 0 to 1.")
    )
    total_time_ms = models.FloatField(_("total time (ms)"))
    errors = models.JSONField(
        _("errors"),
        default=list,
        blank=True,
        help_text=_("The first “key: message” errors of the run."),
    )
    errors_omitted = models.PositiveIntegerField(
        _("errors omitted"), default=0, help_text=_("Errors beyond those listed.")
    )
    run_error = models.TextField(
        _("run error"),
        blank=True,
        default="",
        help_text=_("Why the run as a whole failed, if it did."),
    )
    hostname = models.CharField(_("hostname"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))

    objects = WarmingRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["warmer", "-started_at"], name="cachewarmers_run_warmer_idx"),
            models.Index(fields=["started_at"], name="cachewarmers_run_started_idx"),
        ]
        permissions = [("warm_cache", "Can warm caches")]
        verbose_name = _("warming run")
        verbose_name_plural = _("warming runs")

    def __str__(self) -> str:
        return f"{self.warmer} ({self.trigger}) {self.started_at.isoformat(timespec='seconds')}"

    @property
    def ok(self) -> bool:
        """True when every attempted key warmed and the run itself did not fail."""
        return self.keys_failed == 0 and not self.run_error

    @property
    def duration(self) -> timedelta:
        """Wall-clock time from start to finish."""
        return self.finished_at - self.started_at


class Warmer(WarmingRun):
    """The admin's "Cache warmers" overview: a proxy of ``WarmingRun`` with its own admin entry
    (named apart from the engine's ``CacheWarmer``).

    No table of its own; it gives the overview a place in the admin index and its own ``view``
    permission (``django_cachewarmers.view_warmer``).
    """

    class Meta:
        proxy = True
        verbose_name = _("cache warmer")
        verbose_name_plural = _("cache warmers")


class HotKey(models.Model):
    """One key of a tracker's persisted hot set: what was hot survives a restart."""

    tracker = models.CharField(_("tracker"), max_length=100)
    key = models.TextField(_("key"))
    count = models.FloatField(_("count"))
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("hot key")
        verbose_name_plural = _("hot keys")
        indexes = [models.Index(fields=["tracker", "-count"], name="cachewarmers_hotkey_idx")]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.tracker}: {self.key} ({self.count:g})"


class ReadCount(models.Model):
    """Reads of one warmer's keys in one minute, summed over every process that counted them.

    Written by each process's background thread (``reads.flush``), never on a request;
    rows older than ``reads.KEEP`` are pruned. Pages: a hit is a response Django's cache
    middleware or ``cache_page`` answered from the cache, a miss one the view rendered. Data keys:
    reads through ``django_cachewarmers.get()`` / ``aget()`` and ``track(key, hit=...)``.
    """

    warmer = models.CharField(_("warmer"), max_length=200)
    minute = models.DateTimeField(_("minute"), help_text=_("Start of the minute (UTC)."))
    hits = models.PositiveBigIntegerField(_("hits"), default=0)
    misses = models.PositiveBigIntegerField(_("misses"), default=0)
    stale = models.PositiveBigIntegerField(
        _("stale"), default=0, help_text=_("Stale entries served while they were refreshed.")
    )

    class Meta:
        verbose_name = _("read count")
        verbose_name_plural = _("read counts")
        constraints = [
            models.UniqueConstraint(fields=["warmer", "minute"], name="cachewarmers_reads_minute")
        ]
        indexes = [models.Index(fields=["minute"], name="cachewarmers_reads_minute_idx")]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.warmer} {self.minute.isoformat(timespec='minutes')}"
