"""``AccessTrackingMiddleware``: counts the pages anonymous visitors get, for adaptive warming."""

from __future__ import annotations

import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.utils.encoding import escape_uri_path

from django_cachewarmers.conf import conf
from django_cachewarmers.trackers import PAGES, get_tracker

logger = logging.getLogger("django_cachewarmers")

#: WSGI environ key set by ``render_page`` on its own requests (no HTTP header can produce it).
RENDER_MARKER = "django_cachewarmers.render"
#: Pages whose URL is longer than this are not counted.
MAX_URL_LENGTH = 2048


def _default_exclusions() -> list[str]:
    patterns = []
    # NoReverseMatch without the admin; other errors (no ROOT_URLCONF, a broken urlconf) must not
    # make every request's tracking fail.
    with contextlib.suppress(NoReverseMatch, ImportError, AttributeError, ImproperlyConfigured):
        patterns.append("^" + re.escape(reverse("admin:index")))
    for setting in ("STATIC_URL", "MEDIA_URL"):
        url = getattr(settings, setting, None)
        if isinstance(url, str) and url.startswith("/") and url != "/":
            patterns.append("^" + re.escape(url))
    return patterns


@dataclass(frozen=True)
class TrackingSettings:
    """The tracking settings, read once: this runs on every request."""

    exclude: re.Pattern[str] | None
    sample_rate: float
    authenticated: bool
    session_cookie: str
    forwarded_host: bool
    #: The scheme is the environ's own (no SECURE_PROXY_SSL_HEADER to consult).
    plain_scheme: bool
    #: Hosts that passed ``request.get_host()``'s validation (bounded; see ``page_key``).
    valid_hosts: dict[str, None] = field(default_factory=dict, compare=False)
    #: Recently seen paths and their escaped form (bounded): hot pages repeat.
    escaped: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls) -> TrackingSettings:
        patterns = conf.TRACK_EXCLUDE
        if patterns is None:
            patterns = _default_exclusions()
        return cls(
            exclude=re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None,
            sample_rate=conf.TRACK_SAMPLE_RATE,
            authenticated=conf.TRACK_AUTHENTICATED,
            session_cookie=settings.SESSION_COOKIE_NAME,
            forwarded_host=settings.USE_X_FORWARDED_HOST,
            plain_scheme=settings.SECURE_PROXY_SSL_HEADER is None,
        )


_settings: TrackingSettings | None = None


def tracking_settings() -> TrackingSettings:
    """The current tracking settings (reloaded after any settings change)."""
    global _settings
    if _settings is None:
        _settings = TrackingSettings.load()
    return _settings


@receiver(setting_changed)
def _reload_settings(**kwargs: Any) -> None:
    global _settings
    _settings = None


#: At most this many validated hosts are remembered (ALLOWED_HOSTS = ["*"] admits any).
MAX_VALID_HOSTS = 256
#: At most this many escaped paths are remembered.
MAX_ESCAPED_PATHS = 4096


def page_key(request: HttpRequest, config: TrackingSettings | None = None) -> str:
    """The key a page is counted under: ``scheme://host/path``, never the query string."""
    config = config or tracking_settings()
    meta = request.META
    # The raw host as request.get_host() finds it; its validation (several settings lookups, 4 µs)
    # runs once per host, not on every request.
    if config.forwarded_host and "HTTP_X_FORWARDED_HOST" in meta:
        host = meta["HTTP_X_FORWARDED_HOST"]
    else:
        host = meta.get("HTTP_HOST", "")
    if not host or host not in config.valid_hosts:
        host = request.get_host()  # raises DisallowedHost for a host not in ALLOWED_HOSTS
        if len(config.valid_hosts) >= MAX_VALID_HOSTS:
            config.valid_hosts.clear()
        config.valid_hosts[host] = None
    path = request.path
    escaped = config.escaped.get(path)
    if escaped is None:
        if len(config.escaped) >= MAX_ESCAPED_PATHS:
            config.escaped.clear()
        escaped = config.escaped[path] = escape_uri_path(path)
    # ASGI requests have no wsgi.url_scheme: their scheme comes from the ASGI scope.
    scheme = (meta.get("wsgi.url_scheme") if config.plain_scheme else None) or request.scheme
    return f"{scheme}://{host}{escaped}"


def countable(
    request: HttpRequest, response: HttpResponseBase, config: TrackingSettings
) -> str | None:
    """The page key if this request/response should be counted (signed-in users aside)."""
    if request.method not in ("GET", "HEAD") or not 200 <= response.status_code < 300:
        return None
    meta = request.META
    if meta.get(RENDER_MARKER):
        return None  # the warmer's own rendering request
    if config.exclude is not None and config.exclude.search(request.path):
        return None
    if config.sample_rate < 1 and random.random() >= config.sample_rate:
        return None
    key = page_key(request, config)
    return key if len(key) <= MAX_URL_LENGTH else None


def _may_be_signed_in(request: HttpRequest, config: TrackingSettings) -> bool:
    """False when the request surely is anonymous, without loading its session."""
    meta = request.META
    return (
        "HTTP_AUTHORIZATION" in meta
        or "REMOTE_USER" in meta
        or config.session_cookie in request.COOKIES
    )


class AccessTrackingMiddleware:
    """Counts each page answered 2xx to an anonymous GET or HEAD in the ``"pages"`` tracker.

    Never breaks a request: an error while counting is logged and swallowed. Place it near the top
    of ``MIDDLEWARE`` (right after ``UpdateCacheMiddleware`` when the per-site cache is used), so it
    also sees pages served from the cache.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        response = self.get_response(request)
        try:
            config = tracking_settings()
            key = countable(request, response, config)  # type: ignore[arg-type]
            if key is not None and (
                config.authenticated
                or not _may_be_signed_in(request, config)
                or not _signed_in(request)
            ):
                get_tracker(PAGES).record_access(key)
        except Exception:
            logger.exception("access tracking failed; the request is not affected")
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        try:
            config = tracking_settings()
            key = countable(request, response, config)
            if key is not None and (
                config.authenticated
                or not _may_be_signed_in(request, config)
                or not await _asigned_in(request)
            ):
                get_tracker(PAGES).record_access(key)
        except Exception:
            logger.exception("access tracking failed; the request is not affected")
        return response


def _signed_in(request: HttpRequest) -> bool:
    if "HTTP_AUTHORIZATION" in request.META or "REMOTE_USER" in request.META:
        return True  # credentials of some kind: treat the page as personal
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


async def _asigned_in(request: HttpRequest) -> bool:
    if "HTTP_AUTHORIZATION" in request.META or "REMOTE_USER" in request.META:
        return True
    if not hasattr(request, "auser"):
        return False
    user = await request.auser()
    return bool(user.is_authenticated)
