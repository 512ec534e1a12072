"""Warm the example shop's product cache with the core engine and print the run's stats."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.management.base import BaseCommand

from django_cachewarmers import BatchValueLoader, CacheWarmer, CallableKeyProvider, WarmingConfig
from shop.warming import ensure_catalogue, load_products, product_keys


class Command(BaseCommand):
    help = "Create a small catalogue if needed, warm every product into the cache, print stats."

    def handle(self, *args: Any, **options: Any) -> None:
        count = ensure_catalogue()
        warmer = CacheWarmer(
            caches["default"],
            CallableKeyProvider(product_keys),
            BatchValueLoader(load_products),
            WarmingConfig(batch_size=200, cache_timeout=600),
            name="products",
        )
        stats = warmer.warm()
        self.stdout.write(
            f"products: {stats.keys_warmed} of {count} keys warmed, {stats.keys_failed} failed, "
            f"success rate {stats.success_rate:.0%}, {stats.total_time_ms:.0f} ms"
        )
        sample = caches["default"].get("product:1")
        self.stdout.write(f"cache.get('product:1') -> {sample!r}")
