"""The shortcuts that made a model event cheap (issue 25) give what the general rules give: whole-name regex,
integer keys, names checked only for size, fields looked up once, and overrides still honoured."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

import telegraphy
from telegraphy import events, names

from .testapp.models import Author, Book

pytestmark = pytest.mark.django_db


def tokenwise_valid(name: str) -> bool:
    """The definition (PROTOCOL section 1), token by token."""
    tokens = name.split(".")
    return (0 < len(name.encode()) <= names.MAX_BYTES and len(tokens) <= names.MAX_TOKENS
            and all(names.is_valid_token(t) for t in tokens))


@pytest.mark.parametrize("name", [
    "a", "a.b", "a-b_C9.x", ".".join("t" * 16), ".".join("t" * 17), "a." * 15 + "a", "a." * 16 + "a",
    "x" * 255, "x" * 256, "a" * 250 + ".bcde", "a" * 250 + ".bcdef", "a..b", ".a", "a.", "a b", "a.*", "a.>",
    "é", "a.é", "a\n", "\u0661", "ａ", "",
])
def test_whole_name_regex_agrees_with_the_tokenwise_definition(name):
    assert names.is_valid_name(name) is tokenwise_valid(name)


@pytest.mark.parametrize("pk", [0, 1, 42, 10**63, 10**64 - 1, 10**64, 10**70, -1, -(10**64)])
def test_integer_keys_are_the_tokens_of_their_text(pk):
    text = str(pk)
    expected = text if names._PLAIN_KEY.fullmatch(text) else names.key_token(text)
    assert names.key_token(pk) == expected and names.is_valid_token(expected)


def test_too_long_model_event_names_are_still_refused(django_capture_on_commit_callbacks, caplog):
    """Names are no longer validated token by token on each save: the size check must still stop them."""

    class LongEvents(telegraphy.BaseEventModel):
        model = Book
        name = "x" * 200 + ".{title}"

    try:
        author = Author.objects.create(name="Ann")
        with django_capture_on_commit_callbacks() as callbacks:
            Book.objects.create(title="t" * 60, author=author, price=Decimal("1"))  # 200+60+9+1+pk > 255
            fits = Book.objects.create(title="short", author=author, price=Decimal("1"))
        subjects = [cb.args[0] for cb in callbacks]
        assert f"telegraphy.{'x' * 200}.short.created.{fits.pk}" in subjects
        assert not any(".tttt" in s for s in subjects)
        assert "not published" in caplog.text and "at most 255 bytes" in caplog.text
    finally:
        events.unregister(LongEvents)


def test_overridden_get_fields_serialize_field_and_event_name_are_asked_every_time(django_capture_on_commit_callbacks):
    asked = []

    class OverridingEvents(telegraphy.BaseEventModel):
        model = Book
        name = "shop.custom"
        operations = ("create", "update")

        def get_fields(self):
            asked.append("fields")
            return [f for f in super().get_fields() if f.name in ("title", "price")]

        def serialize_field(self, field, instance):
            value = super().serialize_field(field, instance)
            return value.upper() if field.name == "title" else value

        def event_name(self, instance, operation):
            return f"shop.custom.{operation}.n{instance.pk}"

    try:
        author = Author.objects.create(name="Ann")
        with django_capture_on_commit_callbacks() as callbacks:
            book = Book.objects.create(title="dune", author=author, price=Decimal("2"))
            book.title = "arrakis"
            book.save()
        got = [(cb.args[0], json.loads(cb.args[1])) for cb in callbacks if cb.args[0].startswith("telegraphy.shop.")]
        assert got == [
            (f"telegraphy.shop.custom.create.n{book.pk}", {"pk": book.pk, "title": "DUNE", "price": "2"}),
            (f"telegraphy.shop.custom.update.n{book.pk}", {"pk": book.pk, "title": "ARRAKIS", "price": "2"}),
        ]
        assert asked == ["fields", "fields"]
    finally:
        events.unregister(OverridingEvents)



@pytest.mark.django_db(transaction=True)
def test_a_loop_of_saves_is_sent_in_few_batches_in_order(nats_settings, nats_client):
    """While events stream in, the link thread sends at most one batch that is not full per 10 ms (it used to
    take each few events as they came, holding the GIL the saving thread needed): an invariant of the count,
    whatever the machine's speed. All events arrive, in order."""
    from telegraphy.nats_link import _BATCH_ITEMS, _LINGER
    from telegraphy.publisher import get_publisher

    from .helpers import next_message

    received = nats_client.subscribe("telegraphy.testapp.book.>")
    author = Author.objects.create(name="Ann")
    link = get_publisher()
    assert telegraphy.flush(10)
    before = link.stats()["batches"]
    count = 1500
    start = time.monotonic()
    books = [Book.objects.create(title=f"b{i}", author=author, price=Decimal("1")) for i in range(count)]
    assert telegraphy.flush(30), link.stats()
    elapsed = time.monotonic() - start
    batches = link.stats()["batches"] - before
    assert 1 <= batches <= elapsed / _LINGER + count / _BATCH_ITEMS + 2, (batches, elapsed)
    subjects = [next_message(received).subject for _ in range(count)]
    assert subjects == [f"telegraphy.testapp.book.created.{b.pk}" for b in books]
