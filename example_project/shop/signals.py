"""Keep `product:<pk>` right when a product changes (in the admin, say): drop it, the next read
loads it again, and the `products` warmer refreshes it on its next run anyway."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

from shop.models import Product


def forget_product(sender: type[Product], instance: Product, **kwargs: Any) -> None:
    cache.delete(f"product:{instance.pk}")
