from django.urls import include, path

from . import views

urlpatterns = [
    path("page/", views.page),
    path("create-book/", views.create_book),
    path("async-create-book/", views.async_create_book),
    path("rt/", include("telegraphy.urls")),
]
