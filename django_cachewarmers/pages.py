"""Rendering a page through the project's own request handler, for ``render_page``.

A render counts as a warm only when a second anonymous GET of the same URL, right after it, is
answered by a page cache (``cache_page`` or the per-site cache middleware) without running the view,
with the response this render stored: that is the entry the next real anonymous request is served
from. A render refreshes a page that is still cached in place: its page-cache lookups miss (only
for that render), so the view runs and the cache middleware overwrites the entry under the same
key, while real requests keep being served the previous entry until then.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponseBase
from django.http.request import split_domain_port, validate_host
from django.middleware.cache import FetchFromCacheMiddleware
from django.urls import Resolver404, get_script_prefix, resolve, set_script_prefix
from django.utils import translation
from django.utils.cache import get_cache_key, get_max_age, has_vary_header
from django.utils.encoding import repercent_broken_unicode

from django_cachewarmers.backends import max_entries
from django_cachewarmers.backends.redis import RedisWriter
from django_cachewarmers.core.backends import adapter_for
from django_cachewarmers.core.config import DEFAULT_TIMEOUT
from django_cachewarmers.core.engine import CacheWarmer
from django_cachewarmers.core.loaders import STORED_BY_LOADER
from django_cachewarmers.middleware import SCRIPT_NAMES_SEEN
from django_cachewarmers.pagekeys import header_environ_key, split_page_key
from django_cachewarmers.process import RENDER_MARKER

logger = logging.getLogger("django_cachewarmers")


class PageNotWarmed(Exception):
    """The page could not be rendered, or no page cache now holds it (the message says why)."""


#: The code that flags a request as answered from the page cache (or missed): Django's own.
_FETCH_FROM_CACHE = FetchFromCacheMiddleware.process_request.__code__


class _PageRequest(WSGIRequest):
    """A ``WSGIRequest`` that notes what Django's page cache did with it.

    ``FetchFromCacheMiddleware.process_request`` (the per-site cache, and ``cache_page`` through
    ``CacheMiddleware``) sets ``request._cache_update_cache``: False when it answered from the
    cache, True when it missed. Views and middleware also set that flag themselves (to keep a page
    out of the cache), so only the page cache's own assignments count.
    """

    #: A page cache looked this request up.
    page_cache_seen = False
    #: A page cache answered it (the view did not run for it).
    page_cache_hit = False
    #: The ``FetchFromCacheMiddleware`` (or ``CacheMiddleware``, for ``cache_page``) that answered.
    page_cache_answered_by: Any = None
    #: The active language when it answered: part of the page-cache key (``get_cache_key``).
    page_cache_language: str | None = None
    #: The first (outermost) page cache middleware that looked it up, and the language then.
    page_cache_seen_by: Any = None
    page_cache_seen_language: str | None = None

    @property
    def _cache_update_cache(self) -> bool:
        try:
            return bool(self.__dict__["_cw_cache_update_cache"])
        except KeyError:
            raise AttributeError("_cache_update_cache") from None  # hasattr() is False, as usual

    @_cache_update_cache.setter
    def _cache_update_cache(self, value: bool) -> None:
        self.__dict__["_cw_cache_update_cache"] = value
        frame = sys._getframe(1)
        if frame.f_code is _FETCH_FROM_CACHE:
            if not self.page_cache_seen:  # the outermost page cache: the one that answers first
                self.page_cache_seen_by = frame.f_locals.get("self")
                self.page_cache_seen_language = translation.get_language()
            self.page_cache_seen = True
            if not value:  # the hit branch (the other False is for a method other than GET/HEAD)
                self.page_cache_hit = True
                # Its cache alias and key prefix tell where this page is held (page_is_cached).
                self.page_cache_answered_by = frame.f_locals.get("self")
                # Django's page-cache keys end with the active language (LocaleMiddleware's).
                self.page_cache_language = translation.get_language()


class _Handler(WSGIHandler):
    """Django's WSGI handler, keeping each thread's last request and response for inspection."""

    request_class = _PageRequest

    def __init__(self) -> None:
        super().__init__()
        self.last = threading.local()

    def get_response(self, request: Any) -> HttpResponseBase:
        response = super().get_response(request)
        self.last.exchange = (request, response)
        return response


_lock = threading.Lock()
_handler: _Handler | None = None


def _get_handler() -> _Handler:
    global _handler
    with _lock:
        if _handler is None:
            _handler = _Handler()  # loads the project's MIDDLEWARE once
        return _handler


@receiver(setting_changed)
def _reload_handler(*, setting: str, **kwargs: Any) -> None:
    global _handler
    if setting in ("MIDDLEWARE", "ROOT_URLCONF"):
        _handler = None


def split_script_name(path: str) -> tuple[str, str]:
    """``(SCRIPT_NAME, PATH_INFO)`` of a URL's path on this site, both in WSGI form.

    ``path`` is unquoted and decoded as ISO-8859-1, as WSGI carries it.

    With ``FORCE_SCRIPT_NAME`` set, the path must start with it (else ``PageNotWarmed``). Else,
    once this process has counted real requests (``AccessTrackingMiddleware``), the longest of
    their script names that the path starts with (``""`` matches every path). Else (no request
    counted yet, e.g. the startup warm or a separate scheduler process) the script name is the
    shortest leading run of whole path segments such that the rest resolves in ``ROOT_URLCONF``
    (``django.urls.resolve``): ``"/shop/p/"`` on a site whose urlconf has ``p/`` gives
    ``("/shop", "/p/")``; a path that resolves as it is gives ``("", path)``, and so does a path
    nothing resolves (the page then answers 404).
    """
    forced = settings.FORCE_SCRIPT_NAME
    if forced is not None:
        script = forced.rstrip("/")
        if path == script or path.startswith(script + "/"):
            return script, path[len(script) :] or "/"
        raise PageNotWarmed(f"{path!r} is not under FORCE_SCRIPT_NAME {forced!r}")
    # The script names of the real requests this process served: the server's own split.
    # tuple(): one C-level copy, since request threads add to the dict while a loader reads it.
    names = tuple(SCRIPT_NAMES_SEEN)
    seen = [name for name in names if path == name or path.startswith(name + "/")]
    if seen:
        script = max(seen, key=len)
        return script, path[len(script) :] or "/"
    cut = 0
    while cut >= 0:
        rest = path[cut:] or "/"
        try:
            # As Django's WSGIRequest decodes PATH_INFO.
            resolve(repercent_broken_unicode(rest.encode("iso-8859-1")).decode())
        except Resolver404:
            cut = path.find("/", cut + 1)
            continue
        return path[:cut], rest
    return "", path


def environ_for(url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The WSGI environ of an anonymous GET for ``url`` (no cookies, no query string), with the
    request ``headers`` of a page variant (``{"Accept-Encoding": "gzip"}``) as ``HTTP_*`` keys.

    ``SCRIPT_NAME`` and ``PATH_INFO`` come from ``split_script_name``, so a site served under a
    sub-path gets the request a WSGI server would have made of ``url``. ``url`` may be an absolute
    URL of any host in ``ALLOWED_HOSTS`` (else ``PageNotWarmed``): it is the request's ``Host``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PageNotWarmed(f"not an http(s) URL: {url!r}")
    if parts.query or parts.fragment:
        raise PageNotWarmed(f"page keys have no query string or fragment: {url!r}")
    host = parts.netloc
    domain, port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or (
        [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
    )
    if not domain or not validate_host(domain, allowed):
        raise PageNotWarmed(f"host {host!r} is not in ALLOWED_HOSTS")
    secure = parts.scheme == "https"
    # WSGI carries the path as the bytes of the URL, decoded as ISO-8859-1.
    script_name, path_info = split_script_name(
        unquote_to_bytes(parts.path or "/").decode("iso-8859-1")
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": "",
        "SERVER_NAME": domain,
        "SERVER_PORT": port or ("443" if secure else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": parts.scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        RENDER_MARKER: True,
    }
    for name, value in (headers or {}).items():
        environ[header_environ_key(name)] = value
    return environ


#: Django's page-cache entries (``django.utils.cache._generate_cache_key``) start with this; the
#: headers entries (``cache_header``) do not.
PAGE_ENTRY_PREFIX = "views.decorators.cache.cache_page."
#: And the headers entries (``learn_cache_key``) with this.
HEADERS_ENTRY_PREFIX = "views.decorators.cache.cache_header."
#: Both kinds.
PAGE_ENTRIES = (PAGE_ENTRY_PREFIX, HEADERS_ENTRY_PREFIX)


def _fingerprint(value: Any) -> tuple[Any, ...]:
    """What tells one stored page response from another: status, body and headers."""
    content = getattr(value, "content", None)
    items = getattr(value, "items", None)
    return (
        getattr(value, "status_code", None),
        content if isinstance(content, bytes) else None,
        tuple(items()) if callable(items) else None,
    )


class _PageCacheView:
    """A cache as one render sees it (``_page_caches``): with ``refresh``, lookups of page and
    headers entries miss (so the view runs and the cache middleware stores its response again,
    over the entries real requests keep reading meanwhile); the page entries
    stored (``stored``) and the ones that answered a lookup (``answered``) are noted by key, with
    their ``_fingerprint``. Everything else goes to the real cache.

    Refreshing, the headers entry the cache middleware stores (``learn_cache_key``) is held back
    until its page entry is stored with the same timeout: both then go in one ``set_many`` (one
    round trip to Redis or memcached instead of two). Anything else asked of the cache first, and
    the end of the render, store it on its own, as the middleware would have."""

    def __init__(
        self,
        alias: str,
        cache: Any,
        refresh: bool,
        notes: _PageCacheNotes,
        forget: bool = False,
    ) -> None:
        self._alias = alias
        self._cache = cache
        self._refresh = refresh
        self._forget = forget
        self._notes = notes
        #: A headers entry held back: (key, value, the rest of its set() call's arguments).
        self._held: tuple[str, Any, tuple[Any, ...], dict[str, Any]] | None = None

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        if self._forget and isinstance(key, str) and key.startswith(PAGE_ENTRIES):
            # ``forget``: note the entries this request's lookup reads (its headers entry, then
            # the page entry it points to) and let the view run; nothing it answers is stored.
            self._notes.looked_up.setdefault(self._alias, []).append(key)
            if key.startswith(HEADERS_ENTRY_PREFIX):
                return self._cache.get(key, default, version=version)
            return default
        if self._refresh and isinstance(key, str) and key.startswith(HEADERS_ENTRY_PREFIX):
            # No headers, no page lookup: FetchFromCacheMiddleware goes straight to the view,
            # and UpdateCacheMiddleware stores both entries again.
            return default
        self.release()
        if not (isinstance(key, str) and key.startswith(PAGE_ENTRY_PREFIX)):
            return self._cache.get(key, default, version=version)
        if self._refresh:
            return default
        value = self._cache.get(key, default, version=version)
        if value is not default:
            self._notes.answered[(self._alias, key)] = _fingerprint(value)
        return value

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if self._forget and isinstance(key, str) and key.startswith(PAGE_ENTRIES):
            return None
        held = self._held
        if isinstance(key, str):
            notes = self._notes
            notes.confirmed.discard((self._alias, key))
            if key.startswith(PAGE_ENTRY_PREFIX):
                notes.stored[(self._alias, key)] = _fingerprint(value)
                if held is not None and held[2:] == (args, kwargs):
                    self._held = None
                    both = {held[0]: held[1], key: value}
                    if _set_many(self._cache, both, args, kwargs):
                        notes.confirmed.update((self._alias, each) for each in both)
                    return None
            elif key.startswith(HEADERS_ENTRY_PREFIX):
                self._notes.headers[(self._alias, key)] = value
                if self._refresh:
                    self.release()
                    self._held = (key, value, args, kwargs)
                    return None
        self.release()
        return self._cache.set(key, value, *args, **kwargs)

    def release(self) -> None:
        """Store the headers entry held back, if any, on its own."""
        held, self._held = self._held, None
        if held is not None:
            self._cache.set(held[0], held[1], *held[2], **held[3])

    def __getattr__(self, name: str) -> Any:
        self.release()
        return getattr(self._cache, name)


#: The attribute of a cache object holding its ``_redis_path`` (or None): on the cache itself, so
#: that it goes with it (a mapping holding the adapter, which holds the cache, would keep every
#: cache object alive). Django's caches are per thread, so is each attribute.
_REDIS_PATH = "_django_cachewarmers_redis_path"


def _redis_path(cache: Any) -> RedisWriter | None:
    """The engine's write path for ``cache`` when it is a Redis cache that can take it
    (``backends.redis``: one script call, a redis-py client kept), else None."""
    attributes: dict[str, Any] | None = getattr(cache, "__dict__", None)
    if attributes is None:
        return None  # a cache class with __slots__: set_many
    if _REDIS_PATH in attributes:
        known: RedisWriter | None = attributes[_REDIS_PATH]
        return known
    adapter = adapter_for(cache)
    path = adapter if isinstance(adapter, RedisWriter) and adapter.usable() else None
    attributes[_REDIS_PATH] = path
    return path


def _timeout_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The timeout of a ``set_many(values, *args, **kwargs)`` call as the fast path takes it
    (``DEFAULT_TIMEOUT``, None or whole seconds >= 1), or ``NotImplemented`` for any other call
    (a version, a timeout below 1 s, which Django rounds to "delete"): ``set_many`` then."""
    if not kwargs and len(args) <= 1:
        timeout = args[0] if args else DEFAULT_TIMEOUT
    elif not args and kwargs.keys() == {"timeout"}:
        timeout = kwargs["timeout"]
    else:
        return NotImplemented
    if timeout is None or timeout is DEFAULT_TIMEOUT:
        return timeout
    if type(timeout) in (int, float) and timeout >= 1:
        return timeout
    return NotImplemented


def _set_many(
    cache: Any, values: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> bool:
    """``cache.set_many(values, *args, **kwargs)``; for a Redis cache, through the engine's
    write path: one ``EVALSHA`` on a kept client, where Django's ``RedisCache.set_many`` builds a
    redis-py client and sends a ``MULTI``/``MSET``/``EXPIRE`` per key/``EXEC`` transaction.
    The same values, encoded by the cache's own serializer, under the same keys and TTL. A
    value that does not encode goes to ``set_many``, which raises what it raises.

    True when Redis confirmed every write (its reply to the script), False for ``set_many``."""
    fast = _redis_path(cache)
    timeout = _timeout_argument(args, kwargs) if fast is not None else NotImplemented
    if fast is None or timeout is NotImplemented:
        cache.set_many(values, *args, **kwargs)
        return False
    try:
        failed = fast.write(values, timeout, 0.0)
    except Exception:
        # Whatever the fast path met (an outage, memory, a value it cannot send), the cache's
        # own set_many meets it as the cache middleware would have: it raises, or it stores.
        logger.debug("page cache: the Redis write path failed; set_many instead", exc_info=True)
        failed = None
    if failed is None:
        cache.set_many(values, *args, **kwargs)
        return False
    if failed:
        refused = {key: value for key, value in values.items() if key in failed}
        cache.set_many(refused, *args, **kwargs)
        return False
    # Confirmed by the reply; with replicas, only a read there tells what a request gets.
    return fast.reads_where_it_writes()


def _get_many(cache: Any, keys: list[str]) -> dict[str, Any]:
    """``cache.get_many(keys)``; for a Redis cache, one ``MGET`` on the write path's kept read
    client, each reply decoded by the cache's own deserializer (as ``get_many`` does)."""
    fast = _redis_path(cache)
    if fast is not None:
        answer = fast.read([fast.full_key(key) for key in keys])
        if answer is not None:
            raw, decode = answer
            pairs = zip(keys, raw, strict=True)
            return {key: decode(data) for key, data in pairs if data is not None}
    found: dict[str, Any] = cache.get_many(keys)
    return found


class _PageCacheNotes:
    """The page and headers entries one render stored and the page entries that answered its
    lookups, by (cache alias, key)."""

    def __init__(self) -> None:
        #: ``forget``: the page-cache keys the request looked up, by cache alias.
        self.looked_up: dict[str, list[str]] = {}
        self.stored: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.headers: dict[tuple[str, str], Any] = {}
        self.answered: dict[tuple[str, str], tuple[Any, ...]] = {}
        #: Entries whose last write Redis confirmed (the engine's write path: the script's reply
        #: says every ``SET`` of its batch ran), so they need no read to check them here.
        self.confirmed: set[tuple[str, str]] = set()

    def not_kept(self) -> str | None:
        """Why the entries this render stored are not all held now (one ``get_many`` per
        cache), or None: each headers entry and each page entry as stored. Entries Redis
        confirmed are not read again (the run's read-back still reads every page:
        ``check_stored``)."""
        wanted: dict[str, list[str]] = {}
        for alias, key in (*self.headers, *self.stored):
            if (alias, key) not in self.confirmed:
                wanted.setdefault(alias, []).append(key)
        for alias, keys in wanted.items():
            found = _get_many(caches[alias], keys)
            for key in keys:
                if (alias, key) in self.headers:
                    if found.get(key) != self.headers[(alias, key)]:
                        return _lost_reason(alias, header=True)
                elif key not in found or _fingerprint(found[key]) != self.stored[(alias, key)]:
                    return _lost_reason(alias, header=False)
        return None

    def entries(self) -> tuple[tuple[str, str], ...]:
        return (*self.headers, *self.stored)


@contextmanager
def _page_caches(*, refresh: bool, forget: bool = False) -> Iterator[_PageCacheNotes]:
    """Every cache of ``CACHES`` seen through a ``_PageCacheView`` by this thread (Django's
    ``caches`` handler is per thread and context: real requests on other threads are not
    affected), for one render. The cache middleware and ``cache_page`` look their cache up in
    ``caches`` on every request, so they get the view."""
    notes = _PageCacheNotes()
    originals = {alias: caches[alias] for alias in settings.CACHES}
    views: list[_PageCacheView] = []
    try:
        for alias, cache in originals.items():
            view = _PageCacheView(alias, cache, refresh, notes, forget)
            views.append(view)
            caches[alias] = view  # type: ignore[assignment]
        try:
            yield notes
        finally:
            for view in views:
                view.release()
    finally:
        for alias, cache in originals.items():
            caches[alias] = cache


def _get(
    url: str, headers: Mapping[str, str] | None = None
) -> tuple[_PageRequest, HttpResponseBase]:
    """One in-process anonymous GET of ``url`` (with a variant's request ``headers``) through the
    full stack: its request and response.

    The environ carries ``RENDER_MARKER``: the access-tracking middleware does not count it, and
    a ``request_started`` receiver can tell it from a real request. The thread's active language
    (``LocaleMiddleware`` activates the request's) is restored after.
    """
    environ = environ_for(url, headers)
    handler = _get_handler()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    handler.last.exchange = None
    # The handler sets this thread's script prefix (reverse() reads it) to the page's SCRIPT_NAME;
    # the loader thread goes back to what it had.
    previous_prefix = get_script_prefix()
    # LocaleMiddleware activates the request's language in this thread: override() restores it.
    try:
        with translation.override(translation.get_language()):
            body = handler(environ, start_response)
            try:
                for _ in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()  # sends request_finished, as a server would
    finally:
        set_script_prefix(previous_prefix)
    exchange: tuple[_PageRequest, HttpResponseBase] | None = handler.last.exchange
    handler.last.exchange = None
    if exchange is None:
        raise PageNotWarmed(f"{url}: Django's handler returned no response")
    return exchange


def _served_from_cache(request: _PageRequest) -> bool | None:
    """Whether a page cache answered this request: None when no page cache saw it at all."""
    if request.page_cache_hit:
        return True
    return False if request.page_cache_seen else None


def _refused_directives(cache_control: str) -> list[str]:
    """The ``private`` / ``no-cache`` / ``no-store`` directives the page cache refuses, found the
    way the installed Django finds them (directive names from Django 6.1, substrings before)."""
    refused = ("private", "no-cache", "no-store")
    try:
        from django.utils.http import split_directive_names
    except ImportError:
        lowered = cache_control.lower()
        return [directive for directive in refused if directive in lowered]
    names = set(split_directive_names(cache_control))
    return [directive for directive in refused if directive in names]


def not_stored_reason(response: HttpResponseBase) -> str | None:
    """Why Django's ``UpdateCacheMiddleware`` would not store ``response``, or None.

    Mirrors ``django.middleware.cache.UpdateCacheMiddleware.process_response`` (Django 5.2 / 6.x):
    only 200, not streaming, no cookie set while varying on ``Cookie``, no ``private``, ``no-cache``
    or ``no-store`` in ``Cache-Control``, no ``Vary: *``, no ``max-age=0``.
    """
    code = response.status_code
    if code != 200:
        return f"answered {code} {response.reason_phrase}: the page cache stores only 200 responses"
    if response.streaming:
        return "a streaming response: the page cache never stores those"
    if response.cookies and has_vary_header(response, "Cookie"):
        names = ", ".join(sorted(response.cookies))
        return (
            f"the response sets a cookie ({names}) and varies on Cookie, so the page cache does "
            "not store it (a page rendering {% csrf_token %} or using the session does this)"
        )
    cache_control = response.get("Cache-Control", "")
    refused = _refused_directives(cache_control)
    if refused:
        return f"Cache-Control: {cache_control} ({refused[0]}): the page cache does not store it"
    if has_vary_header(response, "*"):
        return "Vary: *: the page cache does not store it"
    if get_max_age(response) == 0:
        return (
            "Cache-Control: max-age=0 (set by the view, or a cache timeout of 0): "
            "the page cache does not store it"
        )
    return None


#: At most this many pages' page-cache locations are remembered (least recently rendered dropped).
_MAX_REMEMBERED = 100_000
_served_lock = threading.Lock()
#: url -> (cache alias, key prefix, environ of its anonymous GET) of the page cache that served
#: it at its last render in this process.
#: And the language active at that lookup (Django's page-cache keys end with it).
#: And the (cache alias, key) entries the render stored (``check_stored`` reads them back).
_served_by: OrderedDict[
    str, tuple[str, str, dict[str, Any], str | None, tuple[tuple[str, str], ...]]
] = OrderedDict()


@receiver(setting_changed)
def _forget_served_by(*, setting: str, **kwargs: Any) -> None:
    # Another page cache or middleware stack: where a page was served from is no longer known.
    if setting in ("CACHES", "MIDDLEWARE", "ROOT_URLCONF") or setting.startswith(
        "CACHE_MIDDLEWARE_"
    ):
        with _served_lock:
            _served_by.clear()


def _remember(url: str, request: _PageRequest, entries: tuple[tuple[str, str], ...]) -> None:
    """Note where the page cache keeps ``url``: the outermost page cache that looked the render
    up (its alias, key prefix, the request and the language then), and the ``entries`` (cache
    alias, key) the render stored."""
    middleware = request.page_cache_seen_by
    alias = getattr(middleware, "cache_alias", None)
    if not isinstance(alias, str):
        return
    environ = {k: v for k, v in request.environ.items() if k != "wsgi.input"}
    record_served(
        url,
        (
            alias,
            str(middleware.key_prefix or ""),
            environ,
            request.page_cache_seen_language,
            entries,
        ),
    )


def served_record(url: str) -> tuple[Any, ...] | None:
    """Where the last render of ``url`` in this process left it (``_remember``), or None."""
    with _served_lock:
        return _served_by.get(url)


def record_served(url: str, served: tuple[Any, ...]) -> None:
    """Note ``served`` (a ``served_record`` of a render made elsewhere, e.g. in a render process
    of ``page_processes``) as where ``url`` is cached: ``check_stored`` and ``page_is_cached``
    read it."""
    with _served_lock:
        _served_by[url] = served
        _served_by.move_to_end(url)
        while len(_served_by) > _MAX_REMEMBERED:
            _served_by.popitem(last=False)


def _lost_reason(alias: str, *, header: bool) -> str:
    """Why a page is not served from the page cache ``alias``: its headers or page entry is gone."""
    entry = "its headers entry" if header else "the page entry"
    limit = max_entries(caches[alias])
    if limit is not None:
        return (
            f"the page cache ({alias!r}) no longer holds {entry}: culled by its MAX_ENTRIES "
            f"({limit}; each page takes 2 entries, headers + page, beside everything else in that "
            "cache), or expired"
        )
    return (
        f"the page cache ({alias!r}) no longer holds {entry}: evicted or expired (memory "
        "eviction, a restart or flush of the cache server, or another process deleted it)"
    )


def page_not_cached_reason(url: str) -> str | None:
    """Why the next anonymous GET of ``url`` would not be served by the page cache that served it
    at its last render in this process, or None when that cache still holds it.

    No view runs: Django's own ``get_cache_key(request, key_prefix, "GET", cache=cache)`` (the
    lookup ``FetchFromCacheMiddleware`` makes, with the cache alias and ``key_prefix`` of the
    outermost page cache middleware, in the language active at that lookup: the key ends with
    it) and one ``cache.get`` of that key. Raises ``KeyError`` when ``url`` was not rendered by
    ``render`` in this process, and what the cache raises.
    """
    with _served_lock:
        alias, key_prefix, environ, language, _ = _served_by[url]
    cache = caches[alias]
    request = WSGIRequest({**environ, "wsgi.input": io.BytesIO(b"")})
    with translation.override(language):
        cache_key = get_cache_key(request, key_prefix, "GET", cache=cache)
    if cache_key is not None and cache.get(cache_key) is not None:
        return None
    return _lost_reason(alias, header=cache_key is None)


def page_is_cached(url: str) -> bool | None:
    """Whether the next anonymous GET of ``url`` in this process would be served from the page
    cache, without running the view: True or False, or None when unknown here (``url`` was not
    warmed by ``render_page`` in this process, or the cache raised). See ``page_not_cached_reason``.
    """
    try:
        return page_not_cached_reason(url) is None
    except Exception:  # unknown here, or a cache that raises: not a yes or a no
        return None


def check_stored(urls: Sequence[Hashable]) -> dict[Hashable, str | None]:
    """``render_page``'s read-back hook (``check_stored``, see ``core.loaders.loader_hook``): for
    each URL, None when the page cache still holds every entry its last render in this process
    stored (its headers entries and page entries, under the keys Django's cache middleware
    computed for it), else the reason. One ``get_many`` per cache for all ``urls``. Raises what the
    cache raises."""
    answer: dict[Hashable, str | None] = {}
    wanted: dict[Hashable, tuple[tuple[str, str], ...]] = {}
    by_alias: dict[str, list[str]] = {}
    with _served_lock:
        for url in urls:
            served = _served_by.get(str(url))
            if served is None:
                answer[url] = "no page cache location was recorded for it in this process"
                continue
            wanted[url] = served[4]
            for alias, key in served[4]:
                by_alias.setdefault(alias, []).append(key)
    found = {
        alias: caches[alias].get_many(list(dict.fromkeys(keys))) for alias, keys in by_alias.items()
    }
    for url, entries in wanted.items():
        answer[url] = None
        for alias, key in entries:
            if key not in found[alias]:
                answer[url] = _lost_reason(alias, header=key.startswith(HEADERS_ENTRY_PREFIX))
                break
    return answer


def render(key: str) -> int:
    """Render a page as an anonymous visitor, replacing its page-cache entry, then check that a
    page cache now serves the new render.

    ``key`` is a page URL, or a page variant's key (``variants.page_key``: the URL and the request
    headers of the variant, e.g. ``Accept-Encoding``), rendered with those headers. The render goes
    through the full middleware stack (no network) with the page cache's lookups of page entries
    missing (``_page_caches``), so ``cache_page`` views and the per-site cache run the view and
    store the response under the key a real anonymous request for that URL looks up, over the
    entry that may be there: a cached page is refreshed in place, and real requests meanwhile
    keep being served the previous entry. Then the entries the page cache stored (its headers
    entry and the page, the ones the next anonymous GET reads) must be held as stored: Redis'
    reply to the write path's script confirms them (``_set_many``), any other cache is read
    (``_PageCacheNotes.not_kept``); only when not is a second anonymous GET made, to say why.
    Returns the render's status code. Raises ``PageNotWarmed`` saying why otherwise: not 2xx, no
    page cache in front of the page, or a response the page cache does not store (sets a cookie,
    ``private``, ``no-cache``, ``no-store``, ``max-age=0``, ``Vary: *``) or did not keep, or
    (refreshing) a page cache still serving the previous render.
    """
    url, headers = split_page_key(key)
    with _page_caches(refresh=True) as refreshed:
        request, response = _get(url, headers)
    code = response.status_code
    if not 200 <= code < 300:
        raise PageNotWarmed(f"{key} answered {code} {response.reason_phrase}")
    served = _served_from_cache(request)
    if served is None:
        raise PageNotWarmed(
            f"{key}: no page cache in front of it (neither cache_page nor the per-site cache "
            "middleware saw the request), so rendering it warms nothing"
        )
    if served:
        raise PageNotWarmed(
            f"{key}: a page cache answered the refresh from an entry it does not keep under "
            "Django's page-cache keys, so the page was not rendered again"
        )
    # The view ran: did the page cache middleware store what it answered, and does the cache hold
    # it? Ask the cache, not the response: cache_page stores the view's response before the
    # outer middleware (CSRF, sessions) add their cookies and headers, and a cache may drop what
    # it was given. The next anonymous GET computes the same keys from the same request, so the
    # entries this render stored are the ones it reads.
    kept = refreshed.not_kept() if refreshed.stored else "nothing stored"
    if kept is None:
        _remember(key, request, refreshed.entries())
        return code
    # Not stored, or not kept: a second anonymous GET tells the reason.
    with _page_caches(refresh=False) as probed:
        probe, _ = _get(url, headers)
    stale = bool(_served_from_cache(probe) and probed.answered)
    reason = not_stored_reason(response)
    if reason is None and request.__dict__.get("_cw_cache_update_cache") is False:
        reason = (
            "the view or a middleware set request._cache_update_cache = False, so the page "
            "cache does not store it"
        )
    reason = reason or (
        "the page cache did not keep the response (a DummyCache, a cache that culled it or "
        "ignores errors, or a page cache timeout of 0)"
    )
    if stale:
        raise PageNotWarmed(
            f"{key}: the next anonymous GET would get the page cache's previous entry, not this "
            f"render: {reason}"
        )
    raise PageNotWarmed(f"{key}: the next anonymous GET would run the view: {reason}")


def forget(key: str) -> int:
    """Remove a page from the page cache, e.g. that of a deleted row: the next anonymous GET of it
    runs the view. Returns how many cache entries were deleted.

    ``key`` is a page URL or a page variant's key (``variants.page_key``). One in-process
    anonymous GET of it goes through the full middleware stack, as ``render`` does, with the page
    cache seen through ``_page_caches(forget=True)``: the headers entry and page entry its lookup
    reads (the keys Django's ``FetchFromCacheMiddleware`` or ``cache_page`` compute, with their
    key prefix and the request's language) are noted and then deleted, and nothing the view
    answers (a 404 for a deleted row) is stored. Without its headers entry no variant of the URL
    in that language is served from the cache any more. With ``LocaleMiddleware`` (and
    ``USE_I18N``), whose pages are cached per language, the lookup is made in each language of
    ``LANGUAGES`` (``Accept-Language``). Raises what the view's request raises.
    """
    url, headers = split_page_key(key)
    with _page_caches(refresh=False, forget=True) as notes:
        for each in _in_every_language(headers):
            _get(url, each)
    deleted = 0
    for alias, keys in notes.looked_up.items():
        unique = list(dict.fromkeys(keys))
        caches[alias].delete_many(unique)
        deleted += len(unique)
    with _served_lock:
        _served_by.pop(key, None)
    return deleted


def _in_every_language(headers: Mapping[str, str]) -> list[Mapping[str, str]]:
    """``headers``, and with ``LocaleMiddleware`` on, ``headers`` asking for each language of
    ``LANGUAGES`` (Django's page cache keys a page by the language it was served in)."""
    found: list[Mapping[str, str]] = [headers]
    if settings.USE_I18N and "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE:
        for code, _name in settings.LANGUAGES:
            found.append({**headers, "Accept-Language": code})
    return found


def render_page(url: str) -> object:
    """A loader for page URLs (``"loader": "django_cachewarmers.pages.render_page"``).

    Renders ``url`` (a page URL, or a page variant's key: ``variants.page_key``) through the
    project's own request handler (full middleware stack, no network) as an anonymous visitor, so
    that ``cache_page`` views and the per-site cache store the response under exactly the key a
    real request looks up, replacing a cached entry in place (``render``). Returns
    ``STORED_BY_LOADER`` only when a second anonymous GET right after the render is answered by
    Django's page cache with this render; else raises
    ``PageNotWarmed`` saying why (not 2xx, no page cache, a response the page cache does not
    store, or did not keep): a failed key. A site under a sub-path gets ``SCRIPT_NAME`` split off
    the URL's path (``split_script_name``). After the run's last write, its ``check_stored``
    hook (``check_stored``) checks, without running views, that the page cache that served each
    page still holds it. Inside ``page_processes.render_processes(n)`` (``warm_cache
    --render-processes N``) the render runs in one of the processes forked for it.
    """
    remote = _render_elsewhere
    if remote is not None:
        remote(url)
    else:
        render(url)
    return STORED_BY_LOADER


#: Set by ``page_processes.render_processes`` while it is open: renders ``url`` in a render
#: process (or here) and records where the page is cached (``record_served``); raises as ``render``.
_render_elsewhere: Callable[[str], object] | None = None


def _page_entry_not_under_url(url: str) -> None:
    """The page is cached under the cache middleware's own key, not under ``url``: the warmer's
    read-back cannot look it up by the URL (see ``CacheWarmer`` read-back, ``stored_key``)."""


render_page.stored_key = _page_entry_not_under_url  # type: ignore[attr-defined]
render_page.check_stored = check_stored  # type: ignore[attr-defined]


def renders_pages(loader: object) -> bool:
    """Whether ``loader`` (a spec's loader function, or a warmer's ``ValueLoader``) is
    ``render_page``: its keys are page URLs, and the page cache (``cache_page``, the per-site
    cache) stores them under keys of its own, two entries per page."""
    return loader is render_page or getattr(loader, "func", None) is render_page


def is_page_warmer(warmer: CacheWarmer) -> bool:
    """Whether the warmer renders pages (``renders_pages`` of its loader)."""
    return renders_pages(warmer.value_loader)
