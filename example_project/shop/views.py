"""The shop's pages.

- The product page reads `product:<pk>` from the cache (the `products` warmer fills it) and says
  whether it was a hit; on a miss it loads the product from the database and caches it.
- The home page and the category pages are whole-page cached with `cache_page`. The `hot_pages`
  warmer renders the most visited of them again when their entry has expired, before a visitor
  asks. The category page's data comes from `category:<pk>` (the `categories` warmer).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_page

from shop.models import Category
from shop.warming import load_catalogue_stats, load_category, load_products

#: How long cache_page keeps the home and category pages.
PAGE_SECONDS = 300
#: TTLs of the data keys set on a miss; the same as the warmers' `timeout`.
PRODUCT_SECONDS = settings.CACHE_WARMERS["products"]["timeout"]
CATEGORY_SECONDS = settings.CACHE_WARMERS["categories"]["timeout"]


def _cache_backend() -> str:
    return str(settings.CACHES["default"]["BACKEND"]).rsplit(".", 1)[-1]


@cache_page(PAGE_SECONDS)
def home(request: HttpRequest) -> HttpResponse:
    categories = Category.objects.annotate(product_count=Count("products")).order_by("name")
    stats = cache.get("catalogue:stats")
    stats_hit = stats is not None
    if stats is None:
        stats = load_catalogue_stats("catalogue:stats")
        cache.set("catalogue:stats", stats)
    context: dict[str, Any] = {
        "categories": categories,
        "stats": stats,
        "stats_hit": stats_hit,
        "page_seconds": PAGE_SECONDS,
        "backend": _cache_backend(),
    }
    return render(request, "shop/home.html", context)


@cache_page(PAGE_SECONDS)
def category_detail(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    key = f"category:{pk}"
    ids = cache.get(key)
    ids_hit = ids is not None
    if ids is None:
        ids = load_category(key)
        cache.set(key, ids, CATEGORY_SECONDS)
    product_keys = [f"product:{i}" for i in ids]
    found = cache.get_many(product_keys)
    missing = [k for k in product_keys if k not in found]
    if missing:
        loaded = load_products(missing)
        cache.set_many(loaded, PRODUCT_SECONDS)
        found.update(loaded)
    context: dict[str, Any] = {
        "category": category,
        "products": [found[k] for k in product_keys if k in found],
        "ids_hit": ids_hit,
        "product_hits": len(product_keys) - len(missing),
        "product_misses": len(missing),
        "page_seconds": PAGE_SECONDS,
        "backend": _cache_backend(),
    }
    return render(request, "shop/category.html", context)


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    key = f"product:{pk}"
    product = cache.get(key)
    hit = product is not None
    if product is None:
        product = load_products([key]).get(key)
        if product is None:
            raise Http404("No such product.")
        cache.set(key, product, PRODUCT_SECONDS)
    context: dict[str, Any] = {
        "product": product,
        "key": key,
        "cache_hit": hit,
        "backend": _cache_backend(),
    }
    return render(request, "shop/product.html", context)
