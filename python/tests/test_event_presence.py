"""The ``presence = True`` opt-in of event classes (issue 13): channel names, the grants that cover them, the
errors, the system checks and the template filter. The reads through a real gateway are in
test_gateway_e2e.py."""

import asyncio

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import Context, Template

import telegraphy
from telegraphy import events, names
from telegraphy.checks import check_events

from .testapp.events import BookEvents, ChatMessage, FilterRowEvents, NoteEvents, TagEvents
from .testapp.models import Author, Book, FilterRow, Note, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def temporary():
    """Declare event classes for one test; they are unregistered (signals disconnected) afterwards."""
    made = []

    def declare(base, **attrs):
        cls = type(attrs.pop("qualname", "Temp"), (base,), {"__module__": __name__, **attrs})
        made.append(cls)
        return cls

    yield declare
    for cls in made:
        events.unregister(cls)


def covered(user, channel):
    return any(names.contains(pattern, channel) for pattern in telegraphy.allow_patterns(user))


def make_book():
    return Book.objects.create(title="Dune", author=Author.objects.create(name="Ann"), price="9.50")


def test_a_custom_events_channel_is_its_rendered_name():
    assert ChatMessage.presence_channel(room="lobby") == ChatMessage.event_name(room="lobby") == "chat.lobby.message"
    for bad in ("a b", "a.b", "*", ">", ""):
        with pytest.raises(ValueError):
            ChatMessage.presence_channel(room=bad)
    with pytest.raises(ValueError, match="room"):
        ChatMessage.presence_channel()


def test_a_model_instances_channel_sits_beside_its_event_names():
    book = make_book()
    assert BookEvents().presence_channel(book) == f"testapp.book.present.{book.pk}"
    owner = User.objects.create_user("olga")
    note = Note.objects.create(owner=owner, text="x")
    assert NoteEvents().presence_channel(note) == f"notes.{owner.pk}.present.{note.pk}", "the name's template too"
    tag = Tag.objects.create(label="a b")
    assert TagEvents().presence_channel(tag) == "testapp.tag.present.-YSBi", "the key escaped as in event names"
    # "present" is no action token: the channel is never one of the class's event names, nor matched by a
    # subscription to one action (testapp.book.created.>).
    assert events.PRESENT not in events.ACTIONS.values()
    channel = BookEvents().presence_channel(book)
    for operation in events.ACTIONS:
        name = BookEvents().event_name(book, operation)
        assert name != channel and not names.matches(name.rsplit(".", 1)[0] + ".>", channel)
    with pytest.raises(ValueError, match="no primary key"):
        BookEvents().presence_channel(Book(title="unsaved"))


def test_the_default_grants_cover_the_channels_no_token_change():
    staff = User.objects.create_user("sam", is_staff=True)
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    book = make_book()
    assert covered(staff, BookEvents().presence_channel(book)), "<app>.<model>.> of the staff"
    assert not covered(alice, BookEvents().presence_channel(book)), "a model's rows are for staff by default"
    note = Note.objects.create(owner=alice, text="mine")
    assert covered(alice, NoteEvents().presence_channel(note)), "notes.<alice>.> of her own grant"
    assert not covered(bob, NoteEvents().presence_channel(note))
    assert covered(alice, ChatMessage.presence_channel(room="lobby")), "chat.*.message"
    assert not covered(AnonymousUser(), ChatMessage.presence_channel(room="lobby"))


def test_presence_off_is_a_clear_type_error_before_any_read(temporary):
    row = FilterRow.objects.create(id=1, qty=1, total="1.00", status="new", name="r")
    expected = r"FilterRowEvents has presence = False; set presence = True"
    Silent = temporary(telegraphy.BaseEvent, qualname="Silent", name="silent.{room}")
    calls = [
        lambda: FilterRowEvents().presence_channel(row),
        lambda: FilterRowEvents().present(row),
        lambda: FilterRowEvents().present_stats(row),
        lambda: asyncio.run(FilterRowEvents().apresent(row)),
        lambda: asyncio.run(FilterRowEvents().apresent_stats(row)),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=expected):
            call()
    for call in (Silent.presence_channel, Silent.present, Silent.present_stats):
        with pytest.raises(TypeError, match=r"Silent has presence = False; set presence = True"):
            call(room="lobby")
    with pytest.raises(TypeError, match=r"Silent has presence = False"):
        asyncio.run(Silent.apresent(room="lobby"))
    NotABool = temporary(telegraphy.BaseEvent, qualname="NotABool", name="nab.{room}", presence="yes")
    with pytest.raises(TypeError, match=r"NotABool has presence = 'yes'; set presence = True"):
        NotABool.presence_channel(room="lobby")


def test_presence_is_inherited_and_can_be_switched_off(temporary):
    assert telegraphy.BaseEvent.presence is False and telegraphy.BaseEventModel.presence is False
    Loud = temporary(ChatMessage, qualname="Loud", name="loud.{room}")
    assert Loud.presence_channel(room="x") == "loud.x"
    Quiet = temporary(ChatMessage, qualname="Quiet", name="quiet.{room}", presence=False)
    with pytest.raises(TypeError, match="Quiet has presence = False"):
        Quiet.presence_channel(room="x")


def test_the_checks_know_the_registered_classes(temporary):
    assert check_events() == [], "the test apps' classes are fine"
    temporary(telegraphy.BaseEvent, qualname="Truthy", name="truthy.{room}", presence="yes")
    temporary(telegraphy.BaseEventModel, qualname="OneForBooks", model=Book, name="ones", presence=1)
    temporary(telegraphy.BaseEvent, qualname="Clash", name="top.{limit}.{room}", presence=True)
    temporary(telegraphy.BaseEvent, qualname="NoClashWhenOff", name="top.{timeout}")  # present() unusable anyway
    found = {(m.id, m.obj.__qualname__): m.msg for m in check_events()}
    assert sorted(found) == [
        ("telegraphy.E016", "OneForBooks"), ("telegraphy.E016", "Truthy"), ("telegraphy.E017", "Clash"),
    ], found
    assert "presence must be True or False, got 'yes'" in found[("telegraphy.E016", "Truthy")]
    assert "parameter(s) limit" in found[("telegraphy.E017", "Clash")]


def test_manage_py_check_reports_a_bad_presence(temporary):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    temporary(telegraphy.BaseEvent, qualname="Truthy", name="truthy.{room}", presence="on")
    with pytest.raises(SystemCheckError, match="telegraphy.E016"):
        call_command("check")


def render(template, **context):
    return Template("{% load telegraphy %}" + template).render(Context(context))


def test_the_template_filter_gives_the_one_presence_channel_of_a_model(temporary):
    book = make_book()
    assert render("{{ book|telegraphy_presence_channel }}", book=book) == f"testapp.book.present.{book.pk}"
    row = FilterRow.objects.create(id=2, qty=1, total="1.00", status="new", name="r")
    with pytest.raises(TypeError, match="exactly one .* for testapp.FilterRow, found none"):
        render("{{ row|telegraphy_presence_channel }}", row=row)
    temporary(telegraphy.BaseEventModel, qualname="MoreBooks", model=Book, name="more.books", presence=True)
    with pytest.raises(TypeError, match="for testapp.Book, found BookEvents, MoreBooks; pass the channel from"):
        render("{{ book|telegraphy_presence_channel }}", book=book)
