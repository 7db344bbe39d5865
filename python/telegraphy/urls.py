"""Include with ``path("telegraphy/", include("telegraphy.urls"))``: the page config then carries a
``tokenUrl`` (POST, with the page's CSRF token) so that the JS client can get a new token on its own."""

from django.urls import path

from . import views

urlpatterns = [path("token/", views.token, name="telegraphy-token")]
