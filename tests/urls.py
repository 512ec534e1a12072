from django.contrib import admin
from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ping/", views.ping),
    path("products/<int:pk>/", views.product),
    path("pages/<slug:slug>/", views.page),
    path("missing/", views.missing),
]
