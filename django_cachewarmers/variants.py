"""Learned page variants: the request headers anonymous visitors' pages varied on.

Django's page cache keys a page by its URL and by the values of the request headers its response
names in ``Vary`` (``django.utils.cache.learn_cache_key``): a site with ``GZipMiddleware`` keeps one
entry per ``Accept-Encoding`` string browsers send, a site with ``LocaleMiddleware`` one per
language. ``AccessTrackingMiddleware`` calls ``record_variant`` for each page it counts: the exact
values of the ``Vary``'d request headers the visitor sent are counted, under the page variant's key
(``pagekeys.page_key``), in the ``"page_variants"`` tracker (bounded, published and merged like
every tracker: ``hotkeys``). Never ``Cookie``, ``Authorization`` or ``Proxy-Authorization``. An
adaptive page warmer on the ``"pages"`` tracker warms the hot variants of each hot page
(``page_providers.PageKeyProvider``).
"""

from __future__ import annotations

import re
from typing import Final

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.translation import get_language

from django_cachewarmers.pagekeys import canonical_header, header_environ_key, page_key
from django_cachewarmers.tracking import _trackers, get_tracker

__all__ = ["MAX_KEY_LENGTH", "NEVER_VARIED", "VARIANTS", "record_variant"]

try:  # the separator Django's learn_cache_key splits Vary with
    from django.utils.cache import cc_delim_re  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - every supported Django has it
    cc_delim_re = re.compile(r"\s*,\s*")

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
#: At most this many distinct ``Vary`` values are remembered parsed.
_MAX_VARY_SEEN = 256


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
    # response.headers.get("Vary") without its case folding (a quarter of this call when there
    # is no Vary, the usual case): Django's ResponseHeaders keeps {lowered name: (name, value)}.
    store = getattr(response.headers, "_store", None)
    if isinstance(store, dict):
        found = store.get("vary")
        vary = found[1] if found else None
    else:
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
