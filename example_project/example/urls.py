from django.contrib import admin
from django.urls import path
from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("category/<int:pk>/", views.category_detail, name="category"),
    path("product/<int:pk>/", views.product_detail, name="product"),
    path("admin/", admin.site.urls),
]
