"""The Prometheus exposition view, for projects without django-prometheus.

Off unless ``django_cachewarmers.urls`` is included in ``urlpatterns``::

    path("cachewarmers/", include("django_cachewarmers.urls"))  # serves cachewarmers/metrics

Restricted (403 otherwise) to ``CACHE_WARMERS_METRICS_ALLOWED_IPS`` (``REMOTE_ADDR``; default
loopback only), and, when ``CACHE_WARMERS_METRICS_TOKEN`` is set, to requests that carry
``Authorization: Bearer <token>``. Both must pass: set ``CACHE_WARMERS_METRICS_ALLOWED_IPS`` to
``["0.0.0.0/0", "::/0"]`` to rely on the token alone.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from django_cachewarmers import metrics
from django_cachewarmers.conf import conf

__all__ = ["metrics_view"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed)
    except ValueError as exc:
        raise ImproperlyConfigured(f"CACHE_WARMERS_METRICS_ALLOWED_IPS: {exc}") from exc


def allowed(request: HttpRequest) -> bool:
    """Whether ``request`` may read the metrics (address, then token)."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if not any(address in network for network in _networks(tuple(conf.METRICS_ALLOWED_IPS))):
        return False
    token = conf.METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500 for any caller).
        offered = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, token.encode()):
            return False
    return True


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The text exposition of ``prometheus_client``'s default registry (every worker's in
    multiprocess mode): 403 for a request not allowed, 503 without ``prometheus_client``."""
    if not allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    if not metrics.available():
        return HttpResponse(
            "prometheus_client is not installed: pip install 'django-cachewarmers[prometheus]'\n",
            status=503,
            content_type="text/plain",
        )
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
