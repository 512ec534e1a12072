"""Views of the test project. Each execution is appended to $CW_VIEW_LOG (shared by processes)."""

from __future__ import annotations

import os
import threading
from collections import Counter

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.views.decorators.cache import cache_page

EXECUTIONS: Counter[str] = Counter()
_lock = threading.Lock()


def _executed(name: str) -> None:
    with _lock:
        EXECUTIONS[name] += 1
        path = os.environ.get("CW_VIEW_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(name + "\n")


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong")


@cache_page(300)
def product(request: HttpRequest, pk: int) -> HttpResponse:
    """A cache_page view: warming must make the next real request a hit."""
    _executed(f"product:{pk}")
    return HttpResponse(f"product {pk}")


def page(request: HttpRequest, slug: str) -> HttpResponse:
    """A plain view, cached only when the per-site cache middleware is on."""
    _executed(f"page:{slug}")
    return HttpResponse(f"page {slug}")


def missing(request: HttpRequest) -> HttpResponse:
    return HttpResponseNotFound("no such page")
