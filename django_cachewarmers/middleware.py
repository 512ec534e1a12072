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
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.encoding import escape_uri_path

from django_cachewarmers import reads
from django_cachewarmers.conf import conf
from django_cachewarmers.core.tracker import BACKLOG_LIMIT
from django_cachewarmers.process import RENDER_MARKER
from django_cachewarmers.tracking import PAGES, _trackers, get_tracker
from django_cachewarmers.variants import record_variant

logger = logging.getLogger("django_cachewarmers")

#: ``reads``' backlogs of counted page reads (emptied, never replaced).
_page_hits, _page_misses = reads.page_hits, reads.page_misses

#: WSGI environ key set by ``render_page`` on its own requests (no HTTP header can produce it).
#: Pages whose URL is longer than this are not counted.
MAX_URL_LENGTH = 2048


def _default_exclusions() -> tuple[list[str], list[str]]:
    """The default exclusions: (patterns for ``request.path``, patterns for ``request.path_info``).

    On a site served under a sub-path (``SCRIPT_NAME``, ``FORCE_SCRIPT_NAME``) the admin and a
    relative ``STATIC_URL`` / ``MEDIA_URL`` live under the script prefix, so they are matched
    against the path within the site (``path_info``); an absolute one against the full path. The raw
    settings are read: Django's ``settings.STATIC_URL`` adds the script prefix of whichever request
    first read it, and turns the default ``MEDIA_URL = ""`` into the prefix itself (which would
    exclude every page).
    """
    full: list[str] = []
    in_site: list[str] = []
    # NoReverseMatch without the admin; other errors (no ROOT_URLCONF, a broken urlconf) must not
    # make every request's tracking fail.
    with contextlib.suppress(NoReverseMatch, ImportError, AttributeError, ImproperlyConfigured):
        admin = reverse("admin:index")
        prefix = get_script_prefix()  # reverse() put the current script prefix in front
        if admin.startswith(prefix):
            in_site.append("^" + re.escape("/" + admin[len(prefix) :]))
    settings.ROOT_URLCONF  # noqa: B018 -- sets the lazy settings up, so that _wrapped is real
    # The settings object behind django.conf.settings: its STATIC_URL / MEDIA_URL are the values
    # as written (LazySettings' own add the script prefix).
    raw_settings: Any = settings._wrapped  # type: ignore[misc]
    for setting in ("STATIC_URL", "MEDIA_URL"):
        url = getattr(raw_settings, setting, None)
        if not isinstance(url, str) or not url or url == "/" or "://" in url:
            continue  # unset, the site's root (Django's default MEDIA_URL), or another host
        if url.startswith("/"):
            full.append("^" + re.escape(url))
        else:
            in_site.append("^" + re.escape("/" + url))
    return full, in_site


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


@dataclass(frozen=True)
class TrackingSettings:
    """The tracking settings, read once: this runs on every request."""

    #: Matched against ``request.path`` (the full path, script prefix included).
    exclude: re.Pattern[str] | None
    #: Matched against ``request.path_info`` (the path within the site): the default exclusions
    #: that live under the script prefix.
    exclude_in_site: re.Pattern[str] | None
    sample_rate: float
    #: ``sample_rate < 1``.
    sampled: bool
    authenticated: bool
    session_cookie: str
    forwarded_host: bool
    #: The scheme is the environ's own (no SECURE_PROXY_SSL_HEADER to consult).
    plain_scheme: bool
    #: ``(scheme, raw host, path)`` of recently counted pages -> their page key, or ``""`` for a
    #: page never counted (excluded, URL too long). Bounded (``MAX_KNOWN_PAGES``). Hot pages
    #: repeat: the host's validation, the exclusions and the escaping run once per page, and the
    #: tracker receives the same key object each time (its hash already computed).
    known: dict[tuple[str, str, str], str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls) -> TrackingSettings:
        patterns = conf.TRACK_EXCLUDE
        in_site: list[str] = []
        if patterns is None:
            patterns, in_site = _default_exclusions()
        return cls(
            exclude=_compile(patterns),
            exclude_in_site=_compile(in_site),
            sample_rate=conf.TRACK_SAMPLE_RATE,
            sampled=conf.TRACK_SAMPLE_RATE < 1,
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


_METHODS = frozenset(("GET", "HEAD"))
#: At most this many pages' keys are remembered (see ``TrackingSettings.known``).
MAX_KNOWN_PAGES = 4096


def page_to_count(
    request: HttpRequest,
    response: HttpResponseBase,
    signed_in: Callable[[HttpRequest], bool] | None = None,
) -> str | None:
    """The page key to count for this request and response, or None.

    The key is ``scheme://host/path``, never the query string. None for anything but a GET or HEAD
    answered 2xx, the warmer's own rendering requests, excluded paths, URLs over
    ``MAX_URL_LENGTH``, requests left out by the sample rate, and (unless signed-in users' pages
    are tracked) requests carrying credentials, or a session cookie of a user ``signed_in`` says
    is signed in. Without ``signed_in`` the caller checks that (``_may_be_signed_in``).

    This runs on every request: host validation, exclusions and escaping run once per page
    (``TrackingSettings.known``).
    """
    if request.method not in _METHODS or not 200 <= response.status_code < 300:
        return None
    meta = request.META
    if RENDER_MARKER in meta:
        return None  # the warmer's own rendering request
    config = _settings or tracking_settings()
    if config.sampled and random.random() >= config.sample_rate:
        return None
    if not config.authenticated and (
        "HTTP_AUTHORIZATION" in meta
        or "REMOTE_USER" in meta
        or (
            signed_in is not None
            # No Cookie header, no session: request.COOKIES is read only when there are cookies.
            and "HTTP_COOKIE" in meta
            and config.session_cookie in request.COOKIES
            and signed_in(request)
        )
    ):
        return None  # credentials of some kind, or a signed-in user: the page is personal
    # The raw host as request.get_host() finds it. ASGI requests have no wsgi.url_scheme: their
    # scheme comes from the ASGI scope.
    if config.forwarded_host and "HTTP_X_FORWARDED_HOST" in meta:
        host = meta["HTTP_X_FORWARDED_HOST"]
    else:
        host = meta.get("HTTP_HOST", "")
    scheme: str = (
        (meta.get("wsgi.url_scheme") if config.plain_scheme else None) or request.scheme or "http"
    )
    page = (scheme, host, request.path)
    key = config.known.get(page)
    if key is None:
        key = _page_key(request, page, config)
    return key or None


#: The script names (``SCRIPT_NAME``, ``""`` for none) of the real requests this process counted,
#: oldest first, at most ``MAX_SCRIPT_NAMES``: ``render_page`` splits a page's URL at one of them.
SCRIPT_NAMES_SEEN: dict[str, None] = {}
MAX_SCRIPT_NAMES = 16


def _page_key(request: HttpRequest, page: tuple[str, str, str], config: TrackingSettings) -> str:
    """A page's key, or "" if it is never counted, remembered; DisallowedHost for a bad host."""
    scheme, raw_host, path = page
    host = request.get_host()  # raises DisallowedHost for a host not in ALLOWED_HOSTS
    path_info = request.path_info
    if path.endswith(path_info) and len(SCRIPT_NAMES_SEEN) < MAX_SCRIPT_NAMES:
        SCRIPT_NAMES_SEEN.setdefault(path[: len(path) - len(path_info)])
    key = f"{scheme}://{host}{escape_uri_path(path)}"
    if (
        len(key) > MAX_URL_LENGTH
        or (config.exclude is not None and config.exclude.search(path))
        or (config.exclude_in_site is not None and config.exclude_in_site.search(request.path_info))
    ):
        key = ""
    # Without a Host header get_host() builds one from the server's name; an overlong URL is not
    # worth its memory.
    if raw_host and len(raw_host) + len(path) <= MAX_URL_LENGTH:
        known = config.known
        if len(known) >= MAX_KNOWN_PAGES:
            known.clear()
        known[page] = key
    return key


def _may_be_signed_in(request: HttpRequest) -> bool:
    """False when the request surely is not a signed-in user's (or those are counted too)."""
    config = _settings or tracking_settings()
    return (
        not config.authenticated
        and "HTTP_COOKIE" in request.META
        and config.session_cookie in request.COOKIES
    )


class AccessTrackingMiddleware:
    """Counts each page answered 2xx to an anonymous GET or HEAD in the ``"pages"`` tracker, and
    the variant it got (the values of the request headers its response ``Vary``s on, never
    cookies or credentials) in the ``"page_variants"`` tracker (``variants.record_variant``).

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
        try:
            # The warmers with fixed key lists own their pages from the first request on (the
            # others' keys arrive with the background thread: ``reads``).
            reads.sync_now()
        except Exception:
            logger.exception("read counts: could not attribute pages to warmers")
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        response = self.get_response(request)
        try:
            key = page_to_count(request, response, _signed_in)  # type: ignore[arg-type]
            if key is not None:
                # track(key, PAGES) without its Python call, lock or clock: this runs on every
                # request. The count lands at the publisher thread's next wake-up, the next read,
                # or after BACKLOG_LIMIT requests, whichever comes first.
                # `is None`, not `or`: a tracker's truth is its len(), which takes its lock.
                tracker = _trackers.get(PAGES)
                if tracker is None:
                    tracker = get_tracker(PAGES)
                # tracker.record_access_later(key), inlined (a Python call is a sixth of this
                # block); the key is a str, so its hash() check is not needed either.
                backlog = tracker._backlog
                backlog.append(key)
                if len(backlog) >= BACKLOG_LIMIT:
                    tracker.flush()
                # record_variant(...) only for a response that varies (most do not): Django's
                # ResponseHeaders keeps {lowered name: (name, value)}.
                store = getattr(response.headers, "_store", None)  # type: ignore[union-attr]
                if store is None or "vary" in store:
                    record_variant(request, response, key)  # type: ignore[arg-type]
                if reads._page_owners:
                    # served_from_cache(request), and one append: every counted request does it.
                    if request.__dict__.get("_cache_update_cache") is False:
                        _page_hits.append(key)
                    else:
                        _page_misses.append(key)
                    if not reads._thread_armed:
                        # The first one starts the thread that saves them, as reads.page_read
                        # does (nothing else may: snapshots and persistence can both be off).
                        reads._ensure_thread()
        except DisallowedHost:
            pass  # a 2xx for a host not in ALLOWED_HOSTS (no CommonMiddleware): not counted
        except Exception:
            logger.exception("access tracking failed; the request is not affected")
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        try:
            key = page_to_count(request, response)
            if key is not None and (
                not _may_be_signed_in(request) or not await _asigned_in(request)
            ):
                get_tracker(PAGES).record_access_later(key)
                record_variant(request, response, key)
                if reads._page_owners:
                    reads.page_read(key, served_from_cache(request))
        except DisallowedHost:
            pass
        except Exception:
            logger.exception("access tracking failed; the request is not affected")
        return response


def served_from_cache(request: HttpRequest) -> bool:
    """Whether Django's page cache answered ``request`` (``FetchFromCacheMiddleware`` or
    ``cache_page`` found the page) rather than the view rendering it.

    Django's cache middleware leaves no public trace of a hit: it sets the request's
    ``_cache_update_cache`` to False when it answers from the cache (True when the view must
    render, for ``UpdateCacheMiddleware`` to store the result), which is what is read here.
    """
    return getattr(request, "_cache_update_cache", None) is False


def _signed_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


async def _asigned_in(request: HttpRequest) -> bool:
    if not hasattr(request, "auser"):
        return False
    user = await request.auser()
    return bool(user.is_authenticated)
