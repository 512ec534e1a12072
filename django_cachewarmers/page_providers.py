"""The keys of page warmers: each page URL times its variants, declared (``variants``) or, for an
adaptive page warmer, learned from visitors (``variants.record_variant``)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable
from operator import itemgetter
from typing import Final

from django_cachewarmers.core.providers import CallableKeyProvider, KeyProvider, StaticKeyProvider
from django_cachewarmers.hotkeys import ClusterKeyProvider, hot_counts
from django_cachewarmers.pagekeys import Variant, expand, split_page_key
from django_cachewarmers.tracking import PAGES
from django_cachewarmers.variants import VARIANTS

__all__ = ["MAX_LEARNED_PER_PAGE", "PageKeyProvider", "learned_variants", "with_variants"]

#: At most this many learned variants of one page are warmed per run (the hottest).
MAX_LEARNED_PER_PAGE: Final = 8


class _ExpandedKeys:
    """A keys callable whose every URL is expanded into its variants' keys."""

    def __init__(self, func: Callable[[], Iterable[Hashable]], variants: tuple[Variant, ...]):
        self.func = func
        self.variants = variants

    def __call__(self) -> list[Hashable]:
        return expand(self.func(), self.variants)

    def __repr__(self) -> str:
        return f"{getattr(self.func, '__qualname__', self.func)!r} x {len(self.variants)} variants"


def learned_variants(threshold: int) -> dict[str, list[str]]:
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
        learned = learned_variants(self.threshold) if self.learn else {}
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
