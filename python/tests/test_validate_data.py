"""Outgoing event data checked against its class's JSON Schema (issue 21, "Django side"): on with DEBUG (or
``VALIDATE_DATA = True``), a mismatch raises ``EventDataError`` where the event is emitted and nothing is
published; off, nothing is checked. Against a real nats-server: "nothing published" is shown by ordering (the
link sends events in the order they were enqueued, so a sentinel published after the failure is the next
message)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.checks import run_checks

import telegraphy
from telegraphy import validation
from telegraphy.events import BaseEvent, BaseEventModel, unregister

from .helpers import next_message
from .testapp.models import Author, Book

db = pytest.mark.django_db(transaction=True)


def sentinel(received, name: str = "sentinel.after.check") -> None:
    telegraphy.publish(name, {})
    assert next_message(received).subject == f"telegraphy.{name}"


@pytest.fixture
def said():
    class Said(BaseEvent):
        """A chat line."""

        name = "val.{room}.said"
        fields = {"text": str, "votes": int}

    yield Said
    unregister(Said)
    validation.reset()


@pytest.fixture
def validating(settings, nats_settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": True}
    yield settings


def test_custom_event_data_is_checked_when_on_and_nothing_is_published(validating, nats_client, said):
    received = nats_client.subscribe("telegraphy.>")
    said.send({"text": "hi", "votes": 1}, room="lobby")
    assert next_message(received).subject == "telegraphy.val.lobby.said"
    with pytest.raises(telegraphy.EventDataError) as refused:
        said.send({"text": "hi", "votes": "many"}, room="lobby")
    assert refused.value.event == "val.lobby.said" and refused.value.path == "['votes']"
    assert "'many' is not of type 'integer'" in str(refused.value)
    with pytest.raises(telegraphy.EventDataError):
        said.send({"text": "hi"}, room="lobby")  # a required field missing
    sentinel(received)


def test_debug_turns_it_on_by_default_and_false_turns_it_off(settings, nats_settings, nats_client, said):
    received = nats_client.subscribe("telegraphy.>")
    settings.DEBUG = True
    with pytest.raises(telegraphy.EventDataError):
        said.send({"text": 1, "votes": 1}, room="lobby")
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": False}
    said.send({"text": 1, "votes": 1}, room="lobby")  # off: published as it is
    assert next_message(received).subject == "telegraphy.val.lobby.said"
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": None}
    settings.DEBUG = False
    said.send({"text": 1, "votes": 1}, room="lobby")  # production default: not checked
    assert next_message(received).subject == "telegraphy.val.lobby.said"


@db
def test_a_model_event_whose_data_drifted_from_its_schema_fails_the_save(validating, nats_client):
    received = nats_client.subscribe("telegraphy.>")
    author = Author.objects.create(name="Ann")
    Book.objects.create(title="ok", author=author, price=Decimal("1.50"))  # matches BookEvents' schema
    assert next_message(received).subject.startswith("telegraphy.testapp.book.created.")

    class DriftedBookEvents(BaseEventModel):
        """A class whose declared schema no longer says what to_dict() writes (price became a number)."""

        model = Book
        name = "drift.book"
        operations = ("create",)
        schema = {"type": "object", "properties": {"price": {"type": "number"}}, "required": ["price"]}

    try:
        with pytest.raises(telegraphy.EventDataError) as refused:
            Book.objects.create(title="drifted", author=author, price=Decimal("2.50"))
        assert refused.value.path == "['price']" and refused.value.event.startswith("drift.book.created.")
    finally:
        unregister(DriftedBookEvents)
        validation.reset()
    received_next = next_message(received)  # BookEvents' own event of that save was queued before the failure
    assert received_next.subject.startswith("telegraphy.testapp.book.created.")
    sentinel(received)


def test_system_checks_refuse_a_bad_value(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": "yes"}
    assert "telegraphy.E020" in [m.id for m in run_checks()]
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": True}
    assert "telegraphy.E020" not in [m.id for m in run_checks()]


def test_off_the_check_is_not_even_hooked_in(settings, said):
    from telegraphy import events

    settings.DEBUG = False
    assert validation.enabled() is False and events._data_check is None
    settings.DEBUG = True  # setting_changed recomputes it
    assert validation.enabled() is True and events._data_check is validation.check
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "VALIDATE_DATA": False}
    assert events._data_check is None
