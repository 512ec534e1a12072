"""The site of ``pages_bench``, for gunicorn (``benchmarks.pages_server:application``) and for
the benchmark's own process (its urlconf and view): 1,000 cacheable product pages behind the
per-site cache, in the Redis named by $BENCH_REDIS_URL."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.template import Context, Engine
from django.urls import path

#: The per-site cache around the rest, as Django's docs order it (no session: no database).
MIDDLEWARE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]

_TEMPLATE = Engine().from_string(
    """<!doctype html><html><head><title>{{ name }}</title></head><body>
<h1>{{ name }}</h1><p>{{ description }}</p><ul>
{% for spec in specs %}<li>{{ spec.0 }}: {{ spec.1|floatformat:2 }}</li>
{% endfor %}</ul><footer>product {{ pk }}</footer></body></html>"""
)


def product(request: HttpRequest, pk: int) -> HttpResponse:
    """A product page: a template with a loop, about 2 KB, cacheable."""
    specs = [(f"spec {i}", pk * 1.5 + i) for i in range(20)]
    context = Context({"pk": pk, "name": f"Product {pk}", "description": "x" * 200, "specs": specs})
    return HttpResponse(_TEMPLATE.render(context))


urlpatterns = [path("p/<int:pk>/", product)]


def configure() -> None:
    """Settings of the gunicorn workers."""
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF="benchmarks.pages_server",
        MIDDLEWARE=MIDDLEWARE,
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ.get("BENCH_REDIS_URL", ""),
            }
        },
        CACHE_MIDDLEWARE_SECONDS=3600,
        INSTALLED_APPS=[],
        USE_TZ=True,
    )


if os.environ.get("BENCH_REDIS_URL") and os.environ.get("BENCH_PAGES_SERVER"):
    configure()
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
