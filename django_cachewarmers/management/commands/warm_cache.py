"""``manage.py warm_cache``: warm, list, dry-run or schedule the warmers in ``CACHE_WARMERS``."""

from __future__ import annotations

import argparse
import json
import math
import signal
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from django_cachewarmers import readstats
from django_cachewarmers.core.stats import WarmingStats, format_duration
from django_cachewarmers.page_processes import (
    RenderProcessesRefused,
    reclaim_busy,
    render_processes,
)
from django_cachewarmers.pages import is_page_warmer
from django_cachewarmers.registry import UnknownWarmer, get_entry, names


class ProgressBar:
    """A one-line progress bar on a terminal stream."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, label: str) -> None:
        self.stream = stream
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        # An identity style: Django would colour all of stderr red on a terminal.
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}", str, ending="")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Warm the caches declared in CACHE_WARMERS: all warmers, or the named ones. "
        "Exits 1 when a key of a required warmer failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help="warmers to run (default: all)"
        )
        parser.add_argument(
            "--list", action="store_true", help="list the warmers and their last run; warm nothing"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="resolve and count the keys each warmer would warm; write nothing",
        )
        parser.add_argument(
            "--keys", nargs="+", metavar="KEY", help="warm only these keys (of one named warmer)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object keyed by warmer name"
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar, even on a terminal"
        )
        parser.add_argument(
            "--schedule",
            action="store_true",
            help=(
                "run the startup warms, then the scheduled and adaptive warmers in the foreground "
                "until SIGINT/SIGTERM (for one dedicated scheduler process)"
            ),
        )
        parser.add_argument(
            "--render-processes",
            type=_positive_int,
            metavar="N",
            help=(
                "render the pages of render_page warmers in N processes forked from this one, "
                "on N cores (default: in this process, on one core); needs os.fork()"
            ),
        )
        celery = parser.add_argument_group(
            "Celery", "fan the keys out over Celery workers (needs django-cachewarmers[celery])"
        )
        celery.add_argument(
            "--celery",
            action="store_true",
            help=(
                "warm on Celery workers: send the keys in chunks, wait for them and record one run "
                "per warmer (trigger 'celery'); without NAME, every warmer in turn"
            ),
        )
        celery.add_argument(
            "--chunk-size",
            type=_positive_int,
            metavar="N",
            help="keys per task, Celery or --tasks (default: the warmer's batch_size x 10)",
        )
        celery.add_argument(
            "--timeout",
            type=_positive_seconds,
            metavar="SECONDS",
            help=(
                "wait this long for the chunks; keys of a chunk not back by then count as failed "
                "(default: the longer of 600 s and 2 x the warmer's warmup_timeout)"
            ),
        )
        celery.add_argument(
            "--celery-app",
            metavar="APP",
            help=(
                "the Celery app, as for `celery -A` (default: $CELERY_APP, else the app your "
                "project's celery.py creates)"
            ),
        )

        tasks = parser.add_argument_group(
            "Django tasks",
            "enqueue the keys on Django's Tasks framework (django.tasks on Django >= 6.0, the "
            "django-tasks backport on 5.2); --chunk-size and --timeout apply too",
        )
        tasks.add_argument(
            "--tasks",
            action="store_true",
            help=(
                "warm through a task backend of TASKS: one task per chunk; where the backend can "
                "return results, wait for them and record one run per warmer (trigger 'tasks'), "
                "else each chunk records its own run; without NAME, every warmer in turn"
            ),
        )
        tasks.add_argument(
            "--task-backend",
            metavar="ALIAS",
            help="the alias in TASKS to enqueue on (default: 'default')",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        selected: list[str] = options["names"]
        modes = [flag for flag in ("list", "dry_run", "schedule") if options[flag]]
        if len(modes) > 1:
            flags = " and ".join("--" + m.replace("_", "-") for m in modes)
            raise CommandError(f"{flags} cannot be combined.")
        if options["keys"] is not None and len(selected) != 1:
            raise CommandError(
                "--keys needs exactly one warmer name, e.g. "
                "`manage.py warm_cache products --keys product:1 product:2`."
            )
        if options["keys"] is not None and (options["list"] or options["schedule"]):
            raise CommandError("--keys goes with a warm or --dry-run, not --list or --schedule.")
        self.check_celery_options(options, modes)
        self.check_render_processes(options, modes)
        known = names()
        for name in selected:
            if name not in known:
                raise CommandError(str(UnknownWarmer(name, known)))
        targets = selected or known
        if options["list"]:
            self.list_warmers(targets, as_json=options["json"])
        elif options["schedule"]:
            self.schedule(selected or None)
        elif options["dry_run"]:
            self.dry_run(targets, options["keys"], as_json=options["json"])
        else:
            self.warm(targets, options)

    # -- warming ---------------------------------------------------------------------------

    def _entry(self, name: str) -> Any:
        try:
            return get_entry(name)
        except (UnknownWarmer, ImproperlyConfigured) as exc:
            raise CommandError(f"cache warmer {name!r} is not usable: {exc}") from exc

    def check_celery_options(self, options: dict[str, Any], modes: list[str]) -> None:
        if options.get("tasks"):
            self.check_tasks_options(options, modes)
            return
        if options.get("task_backend") is not None:
            raise CommandError("--task-backend only goes with --tasks.")
        celery_only = [
            flag
            for flag in ("chunk_size", "timeout", "celery_app")
            if options.get(flag) is not None
        ]
        if not options.get("celery"):
            if celery_only:
                flags = ", ".join("--" + f.replace("_", "-") for f in celery_only)
                raise CommandError(f"{flags}: only with --celery or --tasks.")
            return
        if modes:
            flags = " and ".join("--" + m.replace("_", "-") for m in modes)
            raise CommandError(f"--celery cannot be combined with {flags}.")
        from django_cachewarmers.celery_app import CeleryUnavailable, require_celery

        try:
            require_celery()
        except CeleryUnavailable as exc:
            raise CommandError(f"--celery: {exc}") from exc

    def check_render_processes(self, options: dict[str, Any], modes: list[str]) -> None:
        if options.get("render_processes") is None:
            return
        others = [m.replace("_", "-") for m in modes]
        others += [flag for flag in ("celery", "tasks") if options.get(flag)]
        if others:
            flags = " and ".join("--" + flag for flag in others)
            raise CommandError(f"--render-processes cannot be combined with {flags}.")
        from django_cachewarmers.page_processes import fork_available

        if not fork_available():
            raise CommandError("--render-processes needs os.fork(), which this platform lacks.")

    def check_tasks_options(self, options: dict[str, Any], modes: list[str]) -> None:
        if options.get("celery"):
            raise CommandError("--tasks and --celery cannot be combined.")
        if options.get("celery_app") is not None:
            raise CommandError("--celery-app only goes with --celery.")
        if modes:
            flags = " and ".join("--" + m.replace("_", "-") for m in modes)
            raise CommandError(f"--tasks cannot be combined with {flags}.")

    def warm(self, targets: list[str], options: dict[str, Any]) -> None:
        if not targets:
            self.stderr.write("No cache warmers are configured (CACHE_WARMERS is empty).")
            return
        show_progress = (
            not options["no_progress"] and _isatty(self.stderr) and options["verbosity"] > 0
        )
        if options.get("tasks"):
            run = self._tasks_runner(options)
        elif options.get("celery"):
            run = self._celery_runner(options)
        else:
            run = _local_runner
        processes = options.get("render_processes") or 0
        if processes and not any(is_page_warmer(self._entry(name)[1]) for name in targets):
            processes = 0  # no page to render: nothing to fork for
        try:
            with render_processes(processes):
                self._warm(targets, options, run, show_progress)
        except RenderProcessesRefused as exc:
            raise CommandError(f"--render-processes: {exc}") from exc

    def _warm(
        self, targets: list[str], options: dict[str, Any], run: _Runner, show_progress: bool
    ) -> None:
        enqueued: dict[str, str] = {}
        results: dict[str, WarmingStats] = {}
        failed_required: list[str] = []
        busy: list[str] = []
        per_process: dict[str, list[str]] = {}
        for name in targets:
            spec, warmer = self._entry(name)
            bar = ProgressBar(self.stderr, name) if show_progress else None
            try:
                stats = run(name, options["keys"], bar)
            except _Busy as exc:
                busy.append(name)
                self.stderr.write(self.style.ERROR(str(exc)))
                continue
            finally:
                if bar is not None:
                    bar.close()
                # A render that hangs past this run's deadline must not hold a render process
                # from the next warmer's pages.
                reclaim_busy()
            if stats is None:  # --tasks on a backend that cannot return results
                enqueued[name] = self._enqueued_note(name, options)
                if not options["json"] and options["verbosity"] > 0:
                    self.stdout.write(enqueued[name])
                continue
            results[name] = stats
            if not stats.ok and not spec.optional:
                failed_required.append(name)
            if not options["json"] and options["verbosity"] > 0:
                self.stdout.write(self._summary(name, stats, optional=spec.optional))
                for error in stats.errors[:5]:
                    self.stderr.write(f"  {error}")
                if stats.run_error:
                    self.stderr.write(f"  {stats.run_error}")
            if _is_per_process(warmer.cache):
                per_process.setdefault(spec.cache, []).append(name)
        if options["verbosity"] > 0:
            # Once per cache, after the summaries: every warmer of it shares the same fate.
            for alias, names in per_process.items():
                self.stderr.write(
                    self.style.WARNING(
                        f"Warning: {', '.join(names)}: cache {alias!r} is a "
                        f"{type(caches[alias]).__name__}, local to each process: this command "
                        f"filled its own copy, which is gone when it exits. The servers' own "
                        f"caches are not the one it filled; they warm themselves at startup and "
                        f"on their schedule. Use a shared cache (Redis, Memcached, database) for "
                        f"warm_cache to warm what the servers read."
                    )
                )
        if options["json"]:
            report: dict[str, Any] = {n: s.to_dict() for n, s in results.items()}
            report.update({n: {"enqueued": True, "note": note} for n, note in enqueued.items()})
            self.stdout.write(json.dumps(report))
        problems = []
        if failed_required:
            problems.append(f"keys failed in required warmer(s): {', '.join(failed_required)}")
        if busy:
            problems.append(f"already being warmed elsewhere, not run: {', '.join(busy)}")
        if problems:
            raise CommandError("; ".join(problems), returncode=1)

    def _celery_runner(self, options: dict[str, Any]) -> _Runner:
        from django_cachewarmers.celery_app import CeleryUnavailable, resolve_app
        from django_cachewarmers.distributed import UnsendableKeys, WarmerBusy, fan_out

        try:
            app = resolve_app(options.get("celery_app"))
        except CeleryUnavailable as exc:
            raise CommandError(f"--celery: {exc}") from exc

        def run(name: str, keys: list[str] | None, bar: ProgressBar | None) -> WarmingStats | None:
            try:
                return fan_out(
                    name,
                    keys=keys,
                    chunk_size=options.get("chunk_size"),
                    timeout=options.get("timeout"),
                    progress=bar,
                    app=app,
                )
            except WarmerBusy as exc:
                raise _Busy(str(exc)) from exc
            except (CeleryUnavailable, UnsendableKeys) as exc:
                raise CommandError(f"--celery: {exc}") from exc

        return run

    def _tasks_runner(self, options: dict[str, Any]) -> _Runner:
        from django_cachewarmers.distributed import UnsendableKeys, WarmerBusy
        from django_cachewarmers.task_fanout import fan_out_tasks
        from django_cachewarmers.tasks_framework import (
            TasksUnavailable,
            get_backend,
            returns_results,
        )

        alias = options.get("task_backend")
        try:
            backend = get_backend(alias)
        except TasksUnavailable as exc:
            raise CommandError(f"--tasks: {exc}") from exc
        wait = options.get("timeout") is not None
        if wait and not returns_results(backend):
            raise CommandError(
                f"--timeout: task backend {backend.alias!r} ({type(backend).__name__}) cannot "
                "return results (supports_get_result is False), so nothing can wait for the "
                "chunks. Leave out --timeout (each chunk then records its own run), or use a "
                "backend that returns results (e.g. django-tasks-db's DatabaseBackend)."
            )

        def run(name: str, keys: list[str] | None, bar: ProgressBar | None) -> WarmingStats | None:
            try:
                return fan_out_tasks(
                    name,
                    keys=keys,
                    chunk_size=options.get("chunk_size"),
                    timeout=options.get("timeout"),
                    progress=bar,
                    backend=alias,
                    wait=True if wait else None,
                )
            except WarmerBusy as exc:
                raise _Busy(str(exc)) from exc
            except (TasksUnavailable, UnsendableKeys) as exc:
                raise CommandError(f"--tasks: {exc}") from exc

        return run

    def _enqueued_note(self, name: str, options: dict[str, Any]) -> str:
        alias = options.get("task_backend") or "default"
        return (
            f"{name}: enqueued on task backend {alias!r}, which cannot return results: each "
            "chunk records its own run (trigger 'tasks') when a worker runs it"
        )

    def _summary(self, name: str, stats: WarmingStats, *, optional: bool) -> str:
        line = (
            f"{name}: {stats.keys_warmed} warmed, {stats.keys_failed} failed, "
            f"success rate {stats.success_rate:.1%}, {format_duration(stats.total_time_ms)}"
        )
        if stats.ok:
            return self.style.SUCCESS(line)
        return self.style.WARNING(line + " (optional)") if optional else self.style.ERROR(line)

    # -- other modes -----------------------------------------------------------------------

    def dry_run(self, targets: list[str], keys: list[str] | None, *, as_json: bool) -> None:
        counts: dict[str, int] = {}
        for name in targets:
            _, warmer = self._entry(name)
            if keys is not None:
                counts[name] = len(dict.fromkeys(keys))
                continue
            try:
                counts[name] = len(warmer.key_provider.get_keys())
            except Exception as exc:
                raise CommandError(
                    f"cache warmer {name!r}: its key provider failed: {type(exc).__name__}: {exc}"
                ) from exc
        if as_json:
            self.stdout.write(json.dumps({n: {"keys": c} for n, c in counts.items()}))
            return
        for name, count in counts.items():
            self.stdout.write(f"{name}: would warm {count} keys (dry run, nothing written)")

    def list_warmers(self, targets: list[str], *, as_json: bool) -> None:
        from django_cachewarmers.history import last_runs

        runs = last_runs()
        reads = readstats.cluster_counts()
        rows: list[dict[str, Any]] = []
        for name in targets:
            spec, _ = self._entry(name)
            run = runs.get(name)
            rows.append(
                {
                    "name": name,
                    "strategy": spec.strategy.value,
                    "cache": spec.cache,
                    "interval": spec.refresh_interval if spec.is_scheduled else None,
                    "last_run": run.started_at.isoformat() if run else None,
                    "last_result": (
                        None
                        if run is None
                        else f"{run.keys_warmed} warmed, {run.keys_failed} failed ({run.trigger})"
                    ),
                    "fresh_for": spec.fresh_for,
                    # Reads through get(), by the live server processes sharing the snapshot
                    # cache (and this one): hits, misses, stale, refreshes, refresh_failures.
                    "reads": reads.get(name, readstats.zero()),
                }
            )
        if as_json:
            self.stdout.write(json.dumps({r["name"]: r for r in rows}))
            return
        table = [["NAME", "STRATEGY", "CACHE", "INTERVAL", "LAST RUN", "LAST RESULT"]]
        for r in rows:
            table.append(
                [
                    r["name"],
                    r["strategy"],
                    r["cache"],
                    "-" if r["interval"] is None else f"{r['interval']:g}s",
                    r["last_run"] or "never",
                    r["last_result"] or "-",
                ]
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )

    def schedule(self, selected: list[str] | None) -> None:
        from django_cachewarmers.scheduler import WarmingScheduler

        for name in selected or []:
            self._entry(name)  # a bad name or setting is an error now, not in a thread later
        scheduler = WarmingScheduler(selected)

        def on_signal(signum: int, frame: object) -> None:
            scheduler.request_stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.stdout.write("Warming on schedule; stop with Ctrl+C or SIGTERM.")
        self.stdout.flush()
        try:
            scheduler.run()
        finally:
            scheduler.stop(timeout=30)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Scheduler stopped.")


_Runner = Callable[[str, "list[str] | None", "ProgressBar | None"], "WarmingStats | None"]


class _Busy(Exception):
    """Another run of the warmer holds its running mark (only with --celery or --tasks)."""


def _is_per_process(cache: object) -> bool:
    from django_cachewarmers.backends import is_per_process

    return is_per_process(cache)


def _local_runner(
    name: str, keys: list[str] | None, bar: ProgressBar | None
) -> WarmingStats | None:
    from django_cachewarmers.runner import run_warm

    return run_warm(name, keys=keys, trigger="command", progress=bar)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
