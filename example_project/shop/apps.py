from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from shop.models import Product
        from shop.signals import forget_product

        post_save.connect(forget_product, sender=Product, dispatch_uid="shop.forget_product")
        post_delete.connect(forget_product, sender=Product, dispatch_uid="shop.forget_product_del")
