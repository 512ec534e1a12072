"""Page variants: the request headers a page is warmed with, declared or learned from visitors.

Django's page cache keys a page by its URL and by the values of the request headers its response
names in ``Vary`` (``django.utils.cache.learn_cache_key``): a site with ``GZipMiddleware`` keeps one
entry per ``Accept-Encoding`` string browsers send, a site with ``LocaleMiddleware`` one per
language. A variant is a tuple of ``(header name, value)`` pairs, names in their usual spelling
(``"Accept-Encoding"``), sorted; ``()`` is the anonymous visitor without those headers.

A page variant's warmer key is the page URL, then a space, then the headers as a JSON object
(``page_key``): ``https://shop.example/ {"Accept-Encoding": "gzip, deflate, br, zstd"}``. URLs
have no spaces (the tracker escapes them), so ``split_page_key`` takes the two apart again.

Learned variants: ``AccessTrackingMiddleware`` calls ``record_variant`` for each page it counts;
the exact values of the ``Vary``'d request headers the visitor sent are counted in the
``"page_variants"`` tracker (bounded, published and merged like every tracker: ``hotkeys``).
Never ``Cookie``, ``Authorization`` or ``Proxy-Authorization``. An adaptive page warmer on the
``"pages"`` tracker warms the hot variants of each hot page (``PageKeyProvider``).
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from operator import itemgetter
from typing import Final

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.translation import get_language

from django_cachewarmers.core.providers import CallableKeyProvider, KeyProvider, StaticKeyProvider
from django_cachewarmers.hotkeys import ClusterKeyProvider, hot_counts
from django_cachewarmers.tracking import PAGES, _trackers, get_tracker

__all__ = [
    "MAX_LEARNED_PER_PAGE",
    "NEVER_VARIED",
    "VARIANTS",
    "PageKeyProvider",
    "Variant",
    "canonical_header",
    "header_environ_key",
    "page_key",
    "record_variant",
    "split_page_key",
    "with_variants",
]

try:  # the separator Django's learn_cache_key splits Vary with
    from django.utils.cache import cc_delim_re  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - every supported Django has it
    cc_delim_re = re.compile(r"\s*,\s*")

#: A page variant: ``(header name, value)`` pairs, sorted by name; ``()`` is the plain page.
Variant = tuple[tuple[str, str], ...]

#: The tracker the middleware counts page variants in (keys: ``page_key(url, variant)``).
VARIANTS: Final = "page_variants"
#: Request headers never recorded nor declared: credentials, and what makes a page personal.
NEVER_VARIED: Final = frozenset(("cookie", "authorization", "proxy-authorization"))
#: Headers the URL itself sets.
NOT_A_VARIANT: Final = frozenset(("host",))
#: A learned header value longer than this is not recorded (browsers send far shorter ones).
MAX_VALUE_LENGTH: Final = 256
#: Longer variant keys are not recorded: the hot set does not publish them (``hotkeys``).
MAX_KEY_LENGTH: Final = 2048
#: At most this many learned variants of one page are warmed per run (the hottest).
MAX_LEARNED_PER_PAGE: Final = 8
#: At most this many distinct ``Vary`` values are remembered parsed.
_MAX_VARY_SEEN = 256


def canonical_header(name: str) -> str:
    """A header name as usually spelled: ``"accept-encoding"`` -> ``"Accept-Encoding"``."""
    return "-".join(part.capitalize() for part in name.strip().split("-"))


def header_environ_key(name: str) -> str:
    """The ``request.META`` key of a request header, as Django's page cache reads it
    (``learn_cache_key``: ``"HTTP_" + name.upper().replace("-", "_")``)."""
    return "HTTP_" + name.strip().upper().replace("-", "_")


def variant_of(headers: Mapping[str, str]) -> Variant:
    """The variant of a dict of request headers (names canonical, sorted)."""
    return tuple(sorted((canonical_header(name), value) for name, value in headers.items()))


def page_key(url: str, variant: Variant) -> str:
    """The warmer key of ``url`` rendered with ``variant``'s headers: ``url`` itself for ``()``."""
    if not variant:
        return url
    return f"{url} {json.dumps(dict(variant), ensure_ascii=False)}"


def split_page_key(key: str) -> tuple[str, dict[str, str]]:
    """``(url, request headers)`` of a page key (``page_key``); a plain URL has no headers.

    A key whose part after the first space is not a JSON object of strings is a URL as a whole.
    """
    url, space, rest = key.partition(" ")
    if not space or not rest.startswith("{"):
        return key, {}
    try:
        headers = json.loads(rest)
    except ValueError:
        return key, {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return key, {}
    return url, headers


def expand(urls: Iterable[Hashable], variants: tuple[Variant, ...]) -> list[Hashable]:
    """Every page key of ``urls`` times ``variants``, URL by URL (a non-string key as it is)."""
    return [
        page_key(url, variant) if isinstance(url, str) else url
        for url in urls
        for variant in variants
    ]


# -- learning variants from visitors ------------------------------------------------------------

#: Vary header value -> the (header name, META key) pairs worth recording.
_varied_cache: dict[str, tuple[tuple[str, str], ...]] = {}


def _varied(vary: str) -> tuple[tuple[str, str], ...]:
    found = _varied_cache.get(vary)
    if found is None:
        pairs: dict[str, str] = {}
        for name in cc_delim_re.split(vary):
            lowered = name.strip().lower()
            if not lowered or lowered == "*" or lowered in NEVER_VARIED or lowered in NOT_A_VARIANT:
                continue
            pairs[canonical_header(lowered)] = header_environ_key(lowered)
        found = tuple(sorted(pairs.items()))
        if len(_varied_cache) >= _MAX_VARY_SEEN:
            _varied_cache.clear()
        _varied_cache[vary] = found
    return found


def record_variant(request: HttpRequest, response: HttpResponseBase, page: str) -> None:
    """Count the variant of ``page`` this anonymous visitor got, when its response varies on
    request headers the visitor sent (``Vary``; never cookies or credentials).

    The values are the exact strings sent: Django's page cache hashes them. Except
    ``Accept-Language`` with ``USE_I18N``: Django's key then leaves the header out and adds the
    active language instead (``learn_cache_key``), so the language ``LocaleMiddleware`` chose
    (``request.LANGUAGE_CODE``) is recorded: every visitor string that picks French is the one
    entry ``{"Accept-Language": "fr"}`` renders. Cheap when the response has no ``Vary``.
    """
    vary = response.headers.get("Vary")
    if not vary:
        return
    varied = _varied_cache.get(vary)
    if varied is None:
        varied = _varied(vary)
    if not varied:
        return
    meta = request.META
    pairs: list[tuple[str, str]] = []
    for name, meta_key in varied:
        value = meta.get(meta_key)
        if value is None:
            continue
        if name == "Accept-Language" and settings.USE_I18N:
            value = getattr(request, "LANGUAGE_CODE", None) or get_language()
            if not value:
                continue
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            return
        pairs.append((name, value))
    if not pairs:
        return
    key = page_key(page, tuple(pairs))
    if len(key) > MAX_KEY_LENGTH:
        return
    tracker = _trackers.get(VARIANTS)
    if tracker is None:
        tracker = get_tracker(VARIANTS)
    tracker.record_access_later(key)


# -- warming variants ---------------------------------------------------------------------------


class _ExpandedKeys:
    """A keys callable whose every URL is expanded into its variants' keys."""

    def __init__(self, func: Callable[[], Iterable[Hashable]], variants: tuple[Variant, ...]):
        self.func = func
        self.variants = variants

    def __call__(self) -> list[Hashable]:
        return expand(self.func(), self.variants)

    def __repr__(self) -> str:
        return f"{getattr(self.func, '__qualname__', self.func)!r} x {len(self.variants)} variants"


def _learned(threshold: int) -> dict[str, list[str]]:
    """The hot learned variant keys (count >= ``threshold``, cluster-wide), by page URL, hottest
    first, at most ``MAX_LEARNED_PER_PAGE`` per page."""
    by_page: dict[str, list[tuple[float, str]]] = {}
    for key, count in hot_counts(VARIANTS).items():
        if not isinstance(key, str) or count < threshold:
            continue
        url, headers = split_page_key(key)
        if headers:
            by_page.setdefault(url, []).append((count, key))
    return {
        url: [key for _, key in heapq.nlargest(MAX_LEARNED_PER_PAGE, found, key=itemgetter(0))]
        for url, found in by_page.items()
    }


class PageKeyProvider(ClusterKeyProvider):
    """The hot pages of the cluster (``ClusterKeyProvider``), each with its declared variants and,
    when ``learn``, the hot variants visitors were served (``record_variant``): the ones counted at
    least ``threshold`` times cluster-wide, at most ``MAX_LEARNED_PER_PAGE`` per page. ``limit``
    counts pages."""

    def __init__(
        self,
        tracker: str,
        threshold: int,
        limit: int,
        variants: tuple[Variant, ...] = ((),),
        learn: bool = True,
    ) -> None:
        super().__init__(tracker, threshold, limit)
        self.variants = variants
        self.learn = learn

    def get_keys(self) -> list[Hashable]:
        """Each hot page's declared variants, then its hot learned ones, hottest page first."""
        pages = super().get_keys()
        learned = _learned(self.threshold) if self.learn else {}
        keys: dict[Hashable, None] = {}
        for url in pages:
            for key in expand([url], self.variants):
                keys[key] = None
            if isinstance(url, str):
                for key in learned.get(url, ()):
                    keys[key] = None
        return list(keys)

    def __repr__(self) -> str:
        return (
            f"PageKeyProvider({self.tracker_name!r}, threshold={self.threshold}, "
            f"limit={self.limit}, variants={len(self.variants)}, learn={self.learn})"
        )


def with_variants(
    provider: KeyProvider, variants: tuple[Variant, ...], *, tracker: str | None = None
) -> KeyProvider:
    """``provider``'s keys, each page URL expanded into one key per variant.

    ``tracker``: an adaptive page warmer's tracker name (its provider is rebuilt as a
    ``PageKeyProvider``, learning variants when it is ``"pages"``). With the single plain
    variant and no tracker, ``provider`` itself.
    """
    if tracker is not None and isinstance(provider, ClusterKeyProvider):
        return PageKeyProvider(
            tracker, provider.threshold, provider.limit, variants, learn=tracker == PAGES
        )
    if variants == ((),):
        return provider
    if isinstance(provider, StaticKeyProvider):
        return StaticKeyProvider(expand(provider.get_keys(), variants))
    if isinstance(provider, CallableKeyProvider):
        return CallableKeyProvider(_ExpandedKeys(provider.func, variants))
    return provider
