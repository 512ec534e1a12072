"""Views of the test project. Each execution is appended to $CW_VIEW_LOG (shared by processes)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.shortcuts import render
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_protect

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


def shaped(request: HttpRequest, kind: str) -> HttpResponse:
    """A page shaped so that Django's page cache stores it, or refuses to, for ``render_page``."""
    _executed(f"shaped:{kind}")
    if kind.startswith("csrf"):
        return render(request, "testapp/form.html", {"kind": kind})  # sets the CSRF cookie
    response = HttpResponse(f"shaped {kind}")
    if kind == "private":
        patch_cache_control(response, private=True)
    elif kind == "no-store":
        patch_cache_control(response, no_store=True)
    elif kind == "max-age-0":
        patch_cache_control(response, max_age=0)
    elif kind == "vary-star":
        patch_vary_headers(response, ["*"])
    elif kind == "opt-out":
        # A common way to keep one page out of the page cache (the view still runs on each GET).
        request._cache_update_cache = False  # type: ignore[attr-defined]
    elif kind == "created":
        response.status_code = 201
    elif kind == "not-found":
        response.status_code = 404
    elif kind == "error":
        response.status_code = 500
    elif kind == "hanging":
        # A view that hangs (a stuck upstream call): $CW_HANGING_VIEW_S seconds.
        time.sleep(float(os.environ.get("CW_HANGING_VIEW_S", "0")))
    return response


#: Under cache_page, as Django's CSRF docs say: csrf_protect inside, so that the CSRF cookie and
#: ``Vary: Cookie`` are on the response cache_page sees.
cached_shaped = cache_page(300)(csrf_protect(shaped))
#: cache_page alone: Django stores the page before CsrfViewMiddleware adds its cookie.
cached_shaped_bare = cache_page(300)(shaped)


@cache_page(300)
def group_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A cache_page view of a row (``auth.Group``): a page re-warmed on change."""
    from django.contrib.auth.models import Group
    from django.shortcuts import get_object_or_404

    _executed(f"group:{pk}")
    response = HttpResponse(f"group {get_object_or_404(Group, pk=pk).name}")
    patch_vary_headers(response, ["Accept-Encoding"])  # one cached variant per encoding
    return response
