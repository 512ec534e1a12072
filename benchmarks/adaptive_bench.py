"""Access tracking and adaptive warming: middleware overhead and the cold-start hit rate.

Both measured through Django's own WSGI handler with a typical middleware stack, side by side in one
run. Needs ``configure_django()`` of ``benchmarks.__main__`` (it sets this module as ROOT_URLCONF).
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import time
from collections import Counter
from itertools import accumulate
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page

EXECUTED: Counter[str] = Counter()


def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@cache_page(3600)
def page(request: HttpRequest, pk: int) -> HttpResponse:
    EXECUTED[str(pk)] += 1
    return HttpResponse(f"page {pk}")


urlpatterns = [path("trivial/", trivial), path("pages/<int:pk>/", page)]

TRACKING = "django_cachewarmers.middleware.AccessTrackingMiddleware"
PASS_THROUGH = "benchmarks.adaptive_bench.PassThroughMiddleware"


class PassThroughMiddleware:
    """A middleware that does nothing: the cost any middleware adds to Django's chain."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)


#: Django's ``startproject`` MIDDLEWARE.
STACK = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


def _environ(path_info: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _handler(middleware: list[str]) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()  # middleware is loaded when the handler is built


def _request(handler: Any, path_info: str) -> str:
    status: list[str] = []
    body = handler(_environ(path_info), lambda s, h, e=None: status.append(s))
    for _ in body:
        pass
    body.close()
    return status[0]


def interleaved_rounds(rounds: int, requests: int) -> dict[str, list[float]]:
    """Seconds per round of ``requests`` requests for each handler, the handlers taking turns.

    The order rotates every round: drift in the machine's speed (other tenants, frequency) hits
    the handlers of one round alike, where long runs one after another measured that drift as
    much as the middleware.
    """
    from django_cachewarmers import reads, tracking

    handlers = {
        "without": _handler(STACK),
        "pass-through": _handler([PASS_THROUGH, *STACK]),
        "with": _handler([TRACKING, *STACK]),
        # The same middleware, the page also a page warmer's key: each request is counted as a
        # hit or a miss for that warmer too (reads).
        "with counting": _handler([TRACKING, *STACK]),
    }
    reads.remember_keys("trivial", ["http://testserver/trivial/"], pages=True)
    # The request path alone: the background thread that saves the counts (every few seconds,
    # off the requests) is not started here, so every count stays for the check below.
    reads._thread_armed = True
    owned = reads._page_owners
    labels = list(handlers)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    for turn in range(rounds):
        shift = turn % len(labels)
        for label in labels[shift:] + labels[:shift]:
            handler = handlers[label]
            reads._page_owners = owned if label == "with counting" else {}
            start = time.perf_counter()
            for _ in range(requests):
                _request(handler, "/trivial/")
            seconds[label].append(time.perf_counter() - start)
    counted = tracking.get_tracker("pages").get_access_count("http://testserver/trivial/")
    assert counted > 0, "the middleware counted nothing: the benchmark measured the wrong thing"
    reads._page_owners = owned  # the drain attributes the pages to their warmer
    counted_reads = reads.drain()
    assert counted_reads[("trivial", "miss")] == rounds * requests, "the reads were not counted"
    return seconds


def _overhead(seconds: dict[str, list[float]], label: str) -> float:
    """The median of the per-round ratios of ``label``'s time to the time without middleware."""
    ratios = [mine / base for mine, base in zip(seconds[label], seconds["without"], strict=True)]
    return statistics.median(ratios) - 1


def middleware_overhead(
    processes: int = 5, rounds: int = 100, requests: int = 400
) -> dict[str, str]:
    """Requests/s of a trivial view with and without the middleware, and their ratio.

    Measured in ``processes`` fresh processes one after another (``benchmarks.fresh``), each
    running ``interleaved_rounds``; the figure is the median of the processes' overheads, with
    their range. A pass-through middleware shows the cost any middleware adds, and the noise.
    """
    from benchmarks.fresh import in_fresh_process

    runs: list[dict[str, list[float]]] = [
        in_fresh_process(__name__, "interleaved_rounds", rounds, requests) for _ in range(processes)
    ]

    def overhead(label: str) -> tuple[float, float, float]:
        each = sorted(_overhead(seconds, label) for seconds in runs)
        return statistics.median(each), each[0], each[-1]

    def rate(label: str) -> float:
        return requests / statistics.median(t for seconds in runs for t in seconds[label])

    ours, low, high = overhead("with counting")
    tracking_only = overhead("with")[0]
    return {
        "benchmark": (
            "middleware: trivial view through Django's handler (req/s; median of "
            f"{processes} processes)"
        ),
        "ours": (
            f"{rate('with counting'):,.0f} with AccessTrackingMiddleware counting hits "
            f"({rate('with'):,.0f} for a page no warmer lists: {tracking_only:+.1%})"
        ),
        "baseline": (
            f"{rate('without'):,.0f} without ({rate('pass-through'):,.0f} with a "
            f"pass-through middleware: {overhead('pass-through')[0]:+.1%})"
        ),
        "ratio": (
            f"{1 / (1 + ours):.3f}x ({ours:.1%} overhead; processes {low:.1%} to {high:.1%})"
        ),
    }


def _zipf_paths(n: int, pages: int, rng: random.Random) -> list[str]:
    weights = list(accumulate(1 / (rank**1.1) for rank in range(1, pages + 1)))
    return [f"/pages/{pk}/" for pk in rng.choices(range(1, pages + 1), cum_weights=weights, k=n)]


def cold_start_hit_rate(
    pages: int = 1000, before: int = 20_000, after: int = 1000
) -> dict[str, str]:
    """Hit rate of the first requests after a restart with an empty cache: adaptive vs not."""
    from django.core.cache import caches
    from django.test.utils import override_settings

    from django_cachewarmers import hotkeys, tracking
    from django_cachewarmers.runner import run_warm

    rng = random.Random(2024)
    handler = _handler([TRACKING, *STACK])
    warmers = {
        "hot_pages": {
            "keys": {"adaptive": {"tracker": "pages", "threshold": 2, "limit": pages}},
            "loader": "django_cachewarmers.pages.render_page",
            "strategy": "adaptive",
        }
    }
    # Yesterday's traffic, seen by the middleware, and the hot set saved at shutdown.
    for path_info in _zipf_paths(before, pages, rng):
        _request(handler, path_info)
    hotkeys.persist("pages", claim=False)
    replay = _zipf_paths(after, pages, rng)

    distinct = len(set(replay))

    def misses(warm_on_start: bool) -> tuple[int, int, int]:
        """Requests that ran the view, pages whose first request did, pages warmed."""
        caches["default"].clear()  # the restart: an empty cache ...
        tracking.reset()  # ... and processes that have seen nothing yet
        warmed = 0
        if warm_on_start:
            with override_settings(CACHE_WARMERS=warmers):
                stats = run_warm("hot_pages", trigger="startup")
                assert stats is not None
                warmed = stats.keys_warmed
        EXECUTED.clear()
        for path_info in replay:
            _request(handler, path_info)
        # Nothing expires or is evicted here: a page's view runs at most once, on its first request.
        return sum(EXECUTED.values()), len(EXECUTED), warmed

    cold, cold_first, _ = misses(warm_on_start=False)
    warm, warm_first, warmed = misses(warm_on_start=True)

    def rates(missed: int, first_missed: int) -> str:
        return (
            f"{1 - missed / after:.1%} of requests, {1 - first_missed / distinct:.1%} of "
            f"first requests for a page"
        )

    return {
        "benchmark": (
            f"cold start: hits, first {after:,} Zipf(1.1) requests ({pages:,} pages, "
            f"{distinct} of them requested)"
        ),
        "ours": f"{rates(warm, warm_first)} with adaptive warm-on-start ({warmed} pages warmed)",
        "baseline": f"{rates(cold, cold_first)} without",
        "ratio": f"{cold / max(warm, 1):.1f}x fewer misses ({warm} vs {cold})",
    }


def run() -> list[dict[str, str]]:
    """Both rows, measured in this process."""
    return [middleware_overhead(), cold_start_hit_rate()]
