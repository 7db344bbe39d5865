"""End to end through the real gateway binary (started by `manage.py run_telegraph`): Django model saves and
custom events reach a WebSocket client holding a token minted by telegraphy.tokens.mint."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

import telegraphy
from telegraphy import tokens

from .helpers import WsClient as Client
from .test_filters_orm import ORM_CASES, orm_passes
from .testapp.events import BookEvents, ChatMessage
from .testapp.models import Author, Book, FilterRow, Note

db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connect(gateway, nats_settings):
    clients = []

    def make(user, **mint_kwargs) -> Client:
        client = Client(gateway["ws"], tokens.mint(user, **mint_kwargs))
        clients.append(client)
        assert client.connected["type"] == "connected", client.connected
        return client

    yield make
    for client in clients:
        client.close()


@db
def test_model_save_reaches_a_websocket_client(connect):
    staff = User.objects.create_user("sam", is_staff=True)
    client = connect(staff)
    subscribed = client.subscribe("testapp.book.>")
    assert (subscribed["type"], subscribed["id"], subscribed["event"]) == ("subscribed", 2, "testapp.book.>")
    author = Author.objects.create(name="Ann")
    book = Book.objects.create(title="Dune", author=author, price=Decimal("9.50"))
    frame = client.recv()
    assert frame["type"] == "event" and frame["sub"] == "testapp.book.>"
    assert frame["name"] == f"testapp.book.created.{book.pk}"
    assert frame["data"]["pk"] == book.pk and frame["data"]["price"] == "9.50"
    assert frame["data"]["author"] == author.pk and "secret_note" not in frame["data"]


@db
def test_permissions_from_allow_patterns(connect):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    client = connect(alice)
    denied = client.subscribe("testapp.book.>", id=3)
    assert (denied["type"], denied["code"], denied["id"]) == ("error", "forbidden", 3)
    assert client.subscribe(f"notes.{alice.pk}.>", id=4)["type"] == "subscribed"
    Note.objects.create(owner=bob, text="not for alice")
    mine = Note.objects.create(owner=alice, text="for alice")
    frame = client.recv()
    assert (frame["name"], frame["data"]) == (f"notes.{alice.pk}.created.{mine.pk}", {"pk": mine.pk, "text": "for alice"})


@db
def test_custom_event_reaches_a_websocket_client(connect):
    client = connect(User.objects.create_user("carol"))
    assert client.subscribe("chat.lobby.*")["code"] == "forbidden", "allow is chat.*.message only"
    assert client.subscribe("chat.lobby.message", id=3)["type"] == "subscribed"
    ChatMessage.send({"text": "hello"}, room="lobby")
    frame = client.recv()
    assert (frame["sub"], frame["name"], frame["data"]) == ("chat.lobby.message", "chat.lobby.message", {"text": "hello"})


@db
def test_minted_tokens_are_single_use_at_the_gateway(gateway, nats_settings):
    from websockets.exceptions import ConnectionClosed

    token = tokens.mint("dave", allow=["chat.>"])
    first = Client(gateway["ws"], token)
    assert first.connected["type"] == "connected"
    second = Client(gateway["ws"], token)
    assert (second.connected["type"], second.connected["code"]) == ("error", "unauthorized")
    with pytest.raises(ConnectionClosed) as closed:
        second.recv()
    assert closed.value.rcvd.code == 4001
    first.close()


@db
def test_presence_shows_the_info_minted_by_django(connect):
    alice = connect("alice", allow=["chat.>"], info={"name": "Alice"})
    bob = connect("bob", allow=["chat.>"])
    assert alice.subscribe("chat.lobby", presence=True)["type"] == "subscribed"
    assert bob.subscribe("chat.lobby", presence=True)["type"] == "subscribed"
    bob.send({"type": "presence", "id": 5, "event": "chat.lobby"})
    snapshot = bob.recv()
    shown = {c["user"]: c.get("info") for c in snapshot["clients"]}
    assert shown == {"alice": {"name": "Alice"}, "bob": None}, snapshot
    # The Django side reads the same presence from the KV bucket.
    read = telegraphy.presence("chat.lobby")
    assert {c["user"]: c.get("info") for c in read["clients"]} == shown and read["truncated"] is False, read
    assert {c["client"] for c in read["clients"]} == {c["client"] for c in snapshot["clients"]}
    assert telegraphy.presence_stats("chat.lobby") == {"clients": 2, "users": 2}
    assert telegraphy.presence("chat.lobby", limit=1)["truncated"] is True
    joined = alice.recv()
    assert (joined["type"], joined["user"]) == ("join", "bob"), joined
    bob.close()  # a close is a leave at once
    left = alice.recv()
    assert (left["type"], left["user"], left["client"]) == ("leave", "bob", joined["client"]), left
    assert telegraphy.presence_stats("chat.lobby") == {"clients": 1, "users": 1}
    assert telegraphy.presence("chat.nobody") == {"clients": [], "truncated": False}
    with pytest.raises(ValueError):
        telegraphy.presence("chat.*")


@db
def test_presence_opt_in_channels_through_the_gateway(connect):
    """presence = True (issue 13): a page subscribes with presence on the class's channel, allowed by the token
    minted from the default grants, and the class's present() reads the same clients back."""
    import asyncio

    carol = User.objects.create_user("carol")
    room = connect(carol)
    subscribed = room.subscribe(ChatMessage.presence_channel(room="lobby"), presence=True)
    assert subscribed["type"] == "subscribed", subscribed
    read = ChatMessage.present(room="lobby")
    assert [(c["user"], read["truncated"]) for c in read["clients"]] == [(str(carol.pk), False)], read
    assert asyncio.run(ChatMessage.apresent_stats(room="lobby")) == {"clients": 1, "users": 1}
    assert ChatMessage.present(room="elsewhere")["clients"] == []

    sam = User.objects.create_user("sam", is_staff=True)
    tess = User.objects.create_user("tess", is_staff=True)
    book = Book.objects.create(title="Dune", author=Author.objects.create(name="Ann"), price=Decimal("9.50"))
    channel = BookEvents().presence_channel(book)
    watcher = connect(sam)
    assert watcher.subscribe(channel, presence=True)["type"] == "subscribed", "inside testapp.book.>"
    viewer = connect(tess)
    assert viewer.subscribe(channel, presence=True)["type"] == "subscribed"
    joined = watcher.recv()
    assert (joined["type"], joined["user"]) == ("join", str(tess.pk)), joined
    present = BookEvents().present(book)
    assert sorted(c["user"] for c in present["clients"]) == sorted([str(sam.pk), str(tess.pk)]), present
    assert asyncio.run(BookEvents().apresent(book, limit=1))["truncated"] is True
    denied = room.subscribe(channel, id=3, presence=True)
    assert (denied["type"], denied["code"]) == ("error", "forbidden"), "a model's rows are for staff"
    viewer.close()
    left = watcher.recv()
    assert (left["type"], left["user"]) == ("leave", str(tess.pk)), left  # sent once the KV entry is gone
    assert BookEvents().present_stats(book) == {"clients": 1, "users": 1}


def test_telegraphy_check_sees_the_ready_gateway(gateway, nats_settings, settings, capsys):
    from django.core.management import call_command

    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_URL": gateway["ws"]}
    tokens.mint("erin", allow=["a"])  # the bucket exists once something minted
    call_command("telegraphy_check")
    assert "ok   gateway ready" in capsys.readouterr().out


@db
def test_the_gateway_filters_model_saves_as_the_orm_selects_rows(connect):
    """Every ORM filter of the vectors, on every row of their data, through the real pipeline: FilterRow saves
    (Django -> NATS -> gateway) reach the subscription with that filter exactly when the ORM selects the row."""
    client = connect(User.objects.create_user("fay", is_staff=True))
    for i, case in enumerate(ORM_CASES):
        sides = {what: case[what] for what in ("filter", "exclude") if what in case}
        reply = client.subscribe("testapp.filterrow.>", id=10 + i, sub=f"case{i}", **sides)
        assert (reply["type"], reply.get("sub")) == ("subscribed", f"case{i}"), reply
    assert client.subscribe("testapp.filterrow.>", id=9, sub="all")["type"] == "subscribed"
    fields = {f.name: f for f in FilterRow._meta.fields}
    rows = [
        FilterRow.objects.create(**{key: fields[key].to_python(value) for key, value in data.items()})
        for data in {case["data"]["id"]: case["data"] for case in ORM_CASES}.values()
    ]
    end = FilterRow.objects.create(id=999, qty=0, total=Decimal("0"), status="end", name="end")
    received = set()
    while True:  # frames of one pattern come in publish order: the unfiltered "all" sees `end` last
        frame = client.recv()
        assert frame["type"] == "event", frame
        if frame["data"]["pk"] == end.pk:
            if frame["sub"] == "all":
                break
            continue
        received.add((frame["sub"], frame["data"]["pk"]))
    expected = {("all", row.pk) for row in rows} | {
        (f"case{i}", row.pk)
        for i, case in enumerate(ORM_CASES)
        for row in rows
        if orm_passes(row, case.get("filter"), case.get("exclude"))
    }
    assert len(expected) > len(rows) + len(ORM_CASES) // 2, "both rows pass some filters and not others"
    assert received == expected, {"gateway only": received - expected, "ORM only": expected - received}
