from django.contrib import admin
from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ping/", views.ping),
    path("products/<int:pk>/", views.product),
    path("pages/<slug:slug>/", views.page),
    path("missing/", views.missing),
    path("shaped/<slug:kind>/", views.shaped),
    path("cached/<slug:kind>/", views.cached_shaped),
    path("cached-bare/<slug:kind>/", views.cached_shaped_bare),
    path("groups/<int:pk>/", views.group_page),
    path("cachewarmers/", include("django_cachewarmers.urls")),
]
