from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("rt/", include("telegraphy.urls")),  # the JS client's tokenUrl
    path("", include("demo.urls")),
    # A demo serves its static files itself, also with DJANGO_DEBUG=0 (never do this in production).
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
