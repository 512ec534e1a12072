"""Page keys of page warmers: a page URL, or a page variant's key (the URL and request headers).

A page variant is a tuple of ``(header name, value)`` pairs, names in their usual spelling
(``"Accept-Encoding"``), sorted; ``()`` is the anonymous visitor without those headers. Its key is
the page URL, then a space, then the headers as a JSON object (``page_key``):
``https://shop.example/ {"Accept-Encoding": "gzip, deflate, br, zstd"}``. URLs have no spaces (the
access tracker escapes them), so ``split_page_key`` takes the two apart again.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping

__all__ = [
    "Variant",
    "canonical_header",
    "expand",
    "header_environ_key",
    "page_key",
    "split_page_key",
    "variant_of",
]

#: A page variant: ``(header name, value)`` pairs, sorted by name; ``()`` is the plain page.
Variant = tuple[tuple[str, str], ...]


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
