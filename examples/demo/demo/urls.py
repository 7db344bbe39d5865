from django.urls import path

from . import views

urlpatterns = [
    path("", views.tracker, name="tracker"),
    path("items/", views.item_list, name="item-list"),
    path("items/new/", views.item_edit, name="item-create"),
    path("items/<int:pk>/", views.item_detail, name="item-detail"),
    path("items/<int:pk>/edit/", views.item_edit, name="item-edit"),
    path("items/<int:pk>/delete/", views.item_delete, name="item-delete"),
    path("chat/<str:room>/", views.chat, name="chat"),
    path("chat/<str:room>/send/", views.chat_send, name="chat-send"),
    path("events/", views.events, name="events"),
]
