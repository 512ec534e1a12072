"""Fill the example shop with a catalogue of products (only when it is empty, unless --force)."""

from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from shop.models import Category, Product

CATEGORIES = [
    "Books", "Music", "Garden", "Kitchen", "Toys", "Sports", "Outdoor", "Office", "Tools", "Games",
    "Lighting", "Bath", "Bedding", "Pets", "Beauty", "Health", "Crafts", "Travel", "Audio", "Photo",
]  # fmt: skip
ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Handmade", "Portable", "Smart", "Vintage"]
NOUNS = ["Lamp", "Kettle", "Notebook", "Backpack", "Speaker", "Chair", "Mug", "Planter", "Puzzle"]


class Command(BaseCommand):
    help = "Create a catalogue of products and categories if the shop is empty."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=10_000, help="how many (default 10000)")
        parser.add_argument("--force", action="store_true", help="replace an existing catalogue")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["products"]
        if count < 1:
            raise CommandError("--products must be at least 1")
        if Product.objects.exists() and not options["force"]:
            self.stdout.write(f"Catalogue already has {Product.objects.count()} products.")
            return
        rng = random.Random(42)
        with transaction.atomic():
            Product.objects.all().delete()
            Category.objects.all().delete()
            categories = Category.objects.bulk_create(Category(name=n) for n in CATEGORIES)
            Product.objects.bulk_create(
                (
                    Product(
                        category=rng.choice(categories),
                        name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}",
                        price_cents=rng.randrange(199, 19_999),
                    )
                    for i in range(count)
                ),
                batch_size=2000,
            )
        self.stdout.write(f"Created {count} products in {len(categories)} categories.")
