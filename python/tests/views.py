from decimal import Decimal

from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.template import engines

import telegraphy

from .testapp.models import Author, Book

PAGE = engines["django"].from_string(
    "{% load telegraphy %}<html><body>{% telegraphy_scripts %}<p id=t>{% telegraphy_token %}</p>"
    "<p id=u>{% telegraphy_ws_url %}</p></body></html>"
)


def page(request):
    return HttpResponse(PAGE.render({}, request))


def create_book(request):
    author = Author.objects.create(name="view")
    book = Book.objects.create(title="from a view", author=author, price=Decimal("1.00"))
    telegraphy.publish("shop.view.done", {"pk": book.pk})
    return HttpResponse(str(book.pk))


async def async_create_book(request):
    author = await Author.objects.acreate(name="async view")
    book = await Book.objects.acreate(title="from an async view", author=author, price=Decimal("2.00"))
    await telegraphy.apublish("shop.view.done", {"pk": book.pk})
    return HttpResponse(str(book.pk))
