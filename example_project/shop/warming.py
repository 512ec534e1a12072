"""The shop's key providers and loaders, referenced from CACHE_WARMERS by dotted path.

The views read the same keys (`product:<pk>`, `category:<pk>`, `catalogue:stats`) and load them
with the same functions on a miss, so a warmed key and a key set by a request hold the same value.
"""

from __future__ import annotations

from typing import Any

from shop.models import Category, Product


def product_keys() -> list[str]:
    """Every product's cache key."""
    return [f"product:{pk}" for pk in Product.objects.values_list("pk", flat=True)]


def product_keys_for(product: Product) -> list[str]:
    """The keys of one product: re-warmed when it is saved (the `products` warmer's
    `rewarm_on`), deleted when it is deleted."""
    return [f"product:{product.pk}"]


def load_products(keys: list[str]) -> dict[str, dict[str, Any]]:
    """One query for a whole batch of product keys."""
    ids = [int(key.split(":", 1)[1]) for key in keys]
    products = Product.objects.filter(pk__in=ids).select_related("category")
    return {
        f"product:{p.pk}": {
            "id": p.pk,
            "name": p.name,
            "price_cents": p.price_cents,
            "price": f"{p.price_cents / 100:.2f}",
            "category": p.category.name,
            "category_id": p.category_id,
        }
        for p in products
    }


def category_keys() -> list[str]:
    """Every category's product-list cache key."""
    return [f"category:{pk}" for pk in Category.objects.values_list("pk", flat=True)]


def load_category(key: str) -> list[int]:
    """The ids of a category's products, for its listing page."""
    pk = int(key.split(":", 1)[1])
    return list(Product.objects.filter(category_id=pk).order_by("pk").values_list("pk", flat=True))


def catalogue_stats_keys() -> list[str]:
    return ["catalogue:stats"]


def load_catalogue_stats(key: str) -> dict[str, int]:
    """An expensive aggregate, warmed only on demand (the lazy warmer)."""
    return {"products": Product.objects.count(), "categories": Category.objects.count()}
