"""The shop's key providers and loaders, referenced from settings by dotted path."""

from __future__ import annotations

from typing import Any

from shop.models import Product


def product_keys() -> list[str]:
    """Every product's cache key."""
    return [f"product:{pk}" for pk in Product.objects.values_list("pk", flat=True)]


def load_products(keys: list[str]) -> dict[str, dict[str, Any]]:
    """One query for a whole batch of product keys."""
    ids = [int(key.split(":", 1)[1]) for key in keys]
    products = Product.objects.filter(pk__in=ids).select_related("category")
    return {
        f"product:{p.pk}": {
            "id": p.pk,
            "name": p.name,
            "price_cents": p.price_cents,
            "category": p.category.name,
        }
        for p in products
    }


def ensure_catalogue(n: int = 1000) -> int:
    """Create a small catalogue if the database has none; return the product count."""
    from shop.models import Category

    if not Product.objects.exists():
        categories = [Category.objects.get_or_create(name=f"Category {i}")[0] for i in range(10)]
        Product.objects.bulk_create(
            Product(category=categories[i % 10], name=f"Product {i}", price_cents=100 + i)
            for i in range(n)
        )
    return Product.objects.count()
