import datetime
import json
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core import serializers
from django.db import transaction
from django.test import override_settings

import telegraphy
from telegraphy import events
from telegraphy.publisher import get_publisher

from .testapp.events import BookEvents, ChatMessage
from .testapp.models import Author, Book, Note, Tag

pytestmark = pytest.mark.django_db


def published(callbacks):
    """(subject, payload dict) of the publications that on_commit callbacks would perform."""
    out = []
    for cb in callbacks:
        subject, payload = cb.args
        out.append((subject, json.loads(payload)))
    return out


def make_book(**kw):
    author = Author.objects.create(name="Ann")
    fields = dict(
        title="Dune",
        author=author,
        price=Decimal("9.50"),
        published=datetime.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc),
        ref=uuid.UUID("3f2b8c1e-9d4a-4c55-8e2f-1a2b3c4d5e6f"),
        cover="covers/dune.png",
        secret_note="hidden",
    )
    fields.update(kw)
    return Book.objects.create(**fields)


def test_model_save_payload_uses_django_json_rules(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        book = make_book()
    [(subject, data)] = published(callbacks)
    assert subject == f"telegraphy.testapp.book.created.{book.pk}"
    assert data == {
        "pk": book.pk,
        "id": book.pk,
        "title": "Dune",
        "author": book.author_id,
        "price": "9.50",
        "published": "2026-11-26T10:00:00.123Z",
        "ref": "3f2b8c1e-9d4a-4c55-8e2f-1a2b3c4d5e6f",
        "cover": "/media/covers/dune.png",
    }
    assert "secret_note" not in data


def test_empty_file_and_null_datetime(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        make_book(cover="", published=None)
    [(_, data)] = published(callbacks)
    assert data["cover"] is None and data["published"] is None


def test_update_and_delete_names(django_capture_on_commit_callbacks):
    book = make_book()
    pk = book.pk
    with django_capture_on_commit_callbacks() as callbacks:
        book.title = "Dune Messiah"
        book.save()
        book.delete()
    [(s1, d1), (s2, d2)] = published(callbacks)
    assert (s1, d1["title"]) == (f"telegraphy.testapp.book.updated.{pk}", "Dune Messiah")
    assert (s2, d2["pk"]) == (f"telegraphy.testapp.book.deleted.{pk}", pk), "pk captured before deletion"


def test_escaped_keys_and_operations_filter(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        tag = Tag.objects.create(label="a b")
        tag.save()  # "update" is not in TagEvents.operations
        tag.delete()
    assert [(s, d["pk"]) for s, d in published(callbacks)] == [
        ("telegraphy.testapp.tag.created.-YSBi", "a b"),
        ("telegraphy.testapp.tag.deleted.-YSBi", "a b"),
    ]


def test_templated_model_event_name_and_fields(django_capture_on_commit_callbacks):
    user = User.objects.create_user("dan")
    with django_capture_on_commit_callbacks() as callbacks:
        note = Note.objects.create(owner=user, text="hello")
    assert published(callbacks) == [(f"telegraphy.notes.{user.pk}.created.{note.pk}", {"pk": note.pk, "text": "hello"})]


def test_rollback_emits_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                make_book()
                raise RuntimeError("roll back")
    assert callbacks == []


def test_nothing_published_before_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with transaction.atomic():
            make_book()
            assert get_publisher().stats()["buffered"] == 0
    assert len(callbacks) == 1


def test_raw_fixture_loads_are_ignored(django_capture_on_commit_callbacks):
    author = Author.objects.create(name="Ann")
    data = json.dumps([{"model": "testapp.author", "pk": 99, "fields": {"name": "Fixture"}}])
    with django_capture_on_commit_callbacks() as callbacks:
        for obj in serializers.deserialize("json", data):
            obj.save()
    assert Author.objects.filter(pk=99).exists() and author.pk != 99
    assert callbacks == []


def test_custom_to_dict_override(django_capture_on_commit_callbacks):
    class ShortBookEvents(BaseEventModelForTest):
        model = Book
        name = "shop.book"
        operations = ("create",)

        def to_dict(self, instance):
            return {"pk": instance.pk, "title": instance.title.upper()}

    try:
        with django_capture_on_commit_callbacks() as callbacks:
            book = make_book()
        subjects = dict(published(callbacks))
        assert subjects[f"telegraphy.shop.book.created.{book.pk}"] == {"pk": book.pk, "title": "DUNE"}
    finally:
        events.unregister(ShortBookEvents)
    with django_capture_on_commit_callbacks() as callbacks:
        make_book()
    assert [s for s, _ in published(callbacks) if s.startswith("telegraphy.shop.")] == []


BaseEventModelForTest = telegraphy.BaseEventModel


def test_allow_patterns_per_user():
    staff = User.objects.create_user("sam", is_staff=True)
    alice = User.objects.create_user("alice")
    assert telegraphy.allow_patterns(staff) == [
        "testapp.book.>",
        "testapp.tag.>",
        f"notes.{staff.pk}.>",
        "chat.*.message",
        "testapp.filterrow.>",
    ]
    assert telegraphy.allow_patterns(alice) == [f"notes.{alice.pk}.>", "chat.*.message"]
    assert telegraphy.allow_patterns(AnonymousUser()) == []
    assert telegraphy.allow_patterns(None) == []


def test_mint_defaults_allow_to_registered_grants(settings):
    from telegraphy import tokens

    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False}
    alice = User.objects.create_user("alice")
    claims = tokens.verify(tokens.mint(alice), [settings.TELEGRAPHY["SECRET"]])
    assert claims["sub"] == str(alice.pk)
    assert claims["allow"] == [f"notes.{alice.pk}.>", "chat.*.message"]


def test_custom_event_names_and_validation():
    assert ChatMessage.event_name(room="lobby") == "chat.lobby.message"
    for bad in ("a b", "a.b", "", "*", ">"):
        with pytest.raises(ValueError):
            ChatMessage.send({"text": "x"}, room=bad)
    with pytest.raises(ValueError, match="room"):
        ChatMessage.send({"text": "x"})
    assert get_publisher().stats()["buffered"] == 0, "nothing enqueued for invalid events"


def test_bad_templates_are_rejected_at_class_creation():
    for template in ("chat.x{room}", "chat..x", "chat.{ro om}", "chat.*", ""):
        with pytest.raises((ValueError, TypeError)):
            type("Bad", (telegraphy.BaseEvent,), {"name": template})
    assert not [e for e in events.registered() if type(e).__name__ == "Bad"]


def test_publish_validates_before_enqueueing():
    with pytest.raises(ValueError):
        telegraphy.publish("bad..name", {})
    with pytest.raises(ValueError):
        telegraphy.publish("chat.*", {})
    with pytest.raises(ValueError, match="JSON"):
        telegraphy.publish("chat.lobby.message", {"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        telegraphy.publish("chat.lobby.message", float("nan"))
    with pytest.raises(ValueError, match="bytes"):
        telegraphy.publish("chat.lobby.message", "x" * (1024 * 1024))
    assert get_publisher().stats()["buffered"] == 0


def test_autodiscovery_does_not_swallow_import_errors(settings):
    with pytest.raises(ImportError, match="telegraphy_no_such_module_for_tests"):
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "tests.brokenapp"]):
            pass


def test_autodiscovery_registered_the_test_apps_events():
    classes = {type(e) for e in events.registered()}
    assert BookEvents in classes and ChatMessage in classes


def test_publish_on_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                telegraphy.publish("chat.lobby.message", {"n": 1}, on_commit=True)
                raise RuntimeError("roll back")
        assert telegraphy.publish("chat.lobby.message", {"n": 2}, on_commit=True) is None
        assert get_publisher().stats()["buffered"] == 0, "nothing before the commit"
    assert len(callbacks) == 1
    assert get_publisher().stats()["buffered"] == 1, "queued once committed"
    with pytest.raises(ValueError):
        telegraphy.publish("chat.lobby.message", {}, on_commit=True, ack=True)
