from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from shop.models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "product_count"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @admin.display(ordering="product_count")
    def product_count(self, obj: Category) -> int:
        return int(obj.product_count)  # type: ignore[attr-defined]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "category", "price_cents"]
    list_filter = ["category"]
    list_select_related = ["category"]
    search_fields = ["name"]
