"""Run every benchmark side by side in one process and print one table: `python -m benchmarks`."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import platform
import sys
import tempfile
from collections.abc import Callable


def machine() -> str:
    """One line describing the machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import django

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Django {django.get_version()}, {platform.system()} {platform.release()}"
    )


_DEFAULT_DB = os.path.join(
    tempfile.gettempdir(), f"cachewarmers-bench-default-{os.getpid()}.sqlite3"
)


def _remove_default_db() -> None:
    with contextlib.suppress(OSError):
        os.remove(_DEFAULT_DB)


def configure_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmarks-only",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
            ROOT_URLCONF="benchmarks.adaptive_bench",
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                    "OPTIONS": {"MAX_ENTRIES": 2_000_000},
                }
            },
            DATABASES={
                # A file: the background thread that saves read counts has its own connection.
                "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _DEFAULT_DB},
                # DatabaseCache on a file, as a project runs it (db_bench routes to it).
                "cache_file": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": os.path.join(
                        tempfile.gettempdir(), f"cachewarmers-bench-{os.getpid()}.sqlite3"
                    ),
                },
                # DatabaseCache on an in-memory SQLite (no disk at all): one database shared by
                # every thread's connection while one is open (Django opens SQLite with uri=True).
                "cache_memory": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": "file:cachewarmers-bench-memory?mode=memory&cache=shared",
                },
            },
            DATABASE_ROUTERS=["benchmarks.db_bench.CacheRouter"],
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.sessions",
                "django.contrib.messages",
                "django_cachewarmers",
            ],
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            # No background publishing while measuring: every figure comes from this thread.
            CACHE_WARMERS_SNAPSHOT_INTERVAL=0,
            CACHE_WARMERS_PERSIST_INTERVAL=0,
        )
        django.setup()
        atexit.register(_remove_default_db)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def print_table(rows: list[dict[str, str]]) -> None:
    headers = ["benchmark", "ours", "baseline", "ratio"]
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(row[h].ljust(w) for h, w in zip(headers, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        choices=[
            "tracker",
            "warm",
            "redis",
            "proxy",
            "database",
            "adaptive",
            "celery",
            "tasks",
            "coverage",
            "readpath",
            "pages",
        ],
        help="run one group",
    )
    parser.add_argument(
        "--write", metavar="FILE", help="also write the table as markdown (e.g. docs/benchmarks.md)"
    )
    args = parser.parse_args(argv)
    configure_django()
    from benchmarks import (
        adaptive_bench,
        celery_bench,
        coverage_bench,
        db_bench,
        pages_bench,
        readpath_bench,
        redis_bench,
        tasks_bench,
        tracker_bench,
        warm_bench,
    )

    groups: dict[str, Callable[[], list[dict[str, str]]]] = {
        "tracker": tracker_bench.run,
        "warm": warm_bench.run,
        "redis": redis_bench.run,
        "proxy": redis_bench.run_proxy,
        "database": db_bench.run,
        "adaptive": adaptive_bench.run,
        "celery": celery_bench.run,
        "tasks": tasks_bench.run,
        "coverage": coverage_bench.run,
        "readpath": readpath_bench.run,
        "pages": pages_bench.run,
    }
    rows: list[dict[str, str]] = []
    for name, run in groups.items():
        if args.only in (None, name):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.extend(run())
    print(f"Machine: {machine()}")
    print_table(rows)
    if args.write:
        write_markdown(args.write, rows)
    return 0


def write_markdown(path: str, rows: list[dict[str, str]]) -> None:
    """The table as a markdown page, dated, with the machine it was measured on."""
    import datetime

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today().isoformat()} with `python -m benchmarks` (`make bench`), "
        "every row side by side in one run.",
        "",
        f"Machine: {machine()}",
        "",
        "| benchmark | ours | baseline | ratio |",
        "| --- | --- | --- | --- |",
        *(
            f"| {' | '.join(cell(row[h]) for h in ('benchmark', 'ours', 'baseline', 'ratio'))} |"
            for row in rows
        ),
        "",
    ]
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
