"""The example shop's catalogue."""

from __future__ import annotations

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="products")
    name = models.CharField(max_length=200)
    price_cents = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.name
