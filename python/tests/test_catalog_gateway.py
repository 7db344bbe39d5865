"""The event catalog end to end: Django's sync (``manage.py telegraphy_catalog --sync``) writes its entries to a
real NATS, the real gateway binary (started by ``run_telegraph``) watches the bucket, and a WebSocket client's
``events`` frame lists them, only within its token's grant (PROTOCOL.md section 12)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from telegraphy import BaseEvent, catalog, tokens
from telegraphy.events import unregister

from .helpers import NatsClient
from .helpers import WsClient as Client

db = pytest.mark.django_db(transaction=True)


def events(client: Client, until, event: str | None = None, timeout: float = 10.0) -> dict:
    """Sends ``events`` until ``until(reply)`` holds (the gateway's watch applies a put within milliseconds);
    at most 10 requests a second, inside the gateway's request rate limit."""
    deadline = time.monotonic() + timeout
    frame = {"type": "events", "id": 7, **({"event": event} if event else {})}
    while True:
        client.send(frame)
        reply = client.recv()
        assert reply["type"] == "events" or reply.get("code") == "internal", reply
        if reply["type"] == "events" and until(reply):
            return reply
        assert time.monotonic() < deadline, f"events never matched: {reply}"
        time.sleep(0.1)


def names(reply: dict) -> list[str]:
    return [entry["name"] for entry in reply["events"]]


@pytest.fixture
def connect(gateway, nats_settings):
    clients = []

    def make(user) -> Client:
        client = Client(gateway["ws"], tokens.mint(user))
        clients.append(client)
        assert client.connected["type"] == "connected", client.connected
        return client

    yield make
    for client in clients:
        client.close()


@db
def test_synced_entries_are_listed_within_the_grant(connect, capsys):
    call_command("telegraphy_catalog", "--sync")
    assert "catalog" in capsys.readouterr().out.lower()
    built = catalog.build()
    by_name = {entry["name"]: entry for entry in built.entries.values()}

    staff = connect(User.objects.create_user("cat-staff", is_staff=True))
    reply = events(staff, lambda r: "testapp.book.{action}.{key}" in names(r))
    assert reply["mode"] == "open" and reply["truncated"] is False
    book = next(e for e in reply["events"] if e["name"] == "testapp.book.{action}.{key}")
    # The stored entry without format, owner and generation.
    expected = {k: v for k, v in by_name["testapp.book.{action}.{key}"].items()
                if k not in ("format", "owner", "generation")}
    assert book == expected

    alice = User.objects.create_user("cat-alice")
    client = connect(alice)
    listed = names(events(client, lambda r: "notes.{owner_id}.{action}.{key}" in names(r)))
    assert "testapp.book.{action}.{key}" not in listed, "outside alice's grant"
    assert set(listed) <= {"notes.{owner_id}.{action}.{key}", "chat.{room}.message"}
    narrowed = events(client, lambda r: True, event="chat.>")
    assert names(narrowed) == ["chat.{room}.message"]


@db
def test_an_entry_synced_while_the_gateway_runs_is_listed_then_removed(gateway, nats_server, nats_settings,
                                                                        monkeypatch):
    class LateEvent(BaseEvent):
        """An event a deploy adds while the gateway runs."""

        name = "late.{room}.thing"

    monkeypatch.setenv("TELEGRAPHY_CATALOG_OWNER", "django-e2e-late")
    monkeypatch.setenv("TELEGRAPHY_CATALOG_GENERATION", "5")
    nats = NatsClient(nats_server.url)
    client = Client(gateway["ws"], tokens.mint("late-reader", allow=["late.>"]))
    try:
        assert client.connected["type"] == "connected", client.connected
        call_command("telegraphy_catalog", "--sync")
        reply = events(client, lambda r: names(r) == ["late.{room}.thing"])
        assert reply["events"][0]["description"] == "An event a deploy adds while the gateway runs."
        # Another deploy of that owner (a newer generation) drops the event: its stale entry is removed.
        unregister(LateEvent)
        monkeypatch.setenv("TELEGRAPHY_CATALOG_GENERATION", "6")
        call_command("telegraphy_catalog", "--sync")
        events(client, lambda r: names(r) == [])
    finally:
        unregister(LateEvent)
        client.close()

        async def forget():  # the owner's other entries (the testapp's, under this owner) leave the bucket
            kv = await nats.js.key_value(catalog.BUCKET)
            for key in await kv.keys():
                if key.startswith("django-e2e-late."):
                    await kv.delete(key)

        nats.run(forget())
        nats.close()
