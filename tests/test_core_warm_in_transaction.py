"""What README and docs/deployment.md say: only ``django_cachewarmers.warm()`` waits for the
commit; the core ``CacheWarmer.warm()`` (from ``get_warmer(name)``) runs at once, even inside
``transaction.atomic()``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.db import transaction
from django.test import override_settings

import django_cachewarmers
from django_cachewarmers.models import WarmingRun

ITEMS = {
    "keys": "tests.testapp.warming.item_keys",
    "loader": "tests.testapp.warming.load_item",
    "timeout": 600,
}

pytestmark = pytest.mark.django_db(transaction=True)  # real commits, as in production


@pytest.fixture(autouse=True)
def warmers() -> Iterator[None]:
    caches["default"].clear()
    with override_settings(CACHE_WARMERS={"items": ITEMS}):
        yield
    caches["default"].clear()


def test_only_the_public_warm_waits_for_the_commit() -> None:
    cache = caches["default"]
    with transaction.atomic():
        stats = django_cachewarmers.get_warmer("items").warm(["item:1"])
        # The core warm ran at once, inside the transaction, and records no run.
        assert stats.keys_warmed == 1
        assert cache.get("item:1") == "value of item:1"
        assert django_cachewarmers.warm("items", keys=["item:2"]) is None  # deferred
        assert cache.get("item:2") is None
    assert cache.get("item:2") == "value of item:2"  # warmed at the commit
    assert list(WarmingRun.objects.values_list("trigger", "keys_warmed")) == [("api", 1)]
