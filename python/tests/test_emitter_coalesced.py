"""``telegraphy.coalesced()`` (issue 25): inside it, the committed model events of one object become one event
(the latest state, the right operation), published when the outermost block ends, in commit order; rolled
back work publishes nothing. Against a real nats-server; "nothing else arrived" is shown by a sentinel being
the next message (the link keeps the order in which events were enqueued)."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

import telegraphy

from .helpers import next_message
from .testapp.models import Author, Book, Tag

db = pytest.mark.django_db(transaction=True)


def sentinel(received, name: str = "sentinel.x") -> None:
    """Publish a sentinel now and check that it is the next message: nothing else was sent before it."""
    telegraphy.publish(name, {})
    assert next_message(received).subject == f"telegraphy.{name}"


def event(received) -> tuple[str, dict]:
    msg = next_message(received)
    return msg.subject.removeprefix("telegraphy.testapp."), json.loads(msg.data)


def expect(received, subject: str, title: str) -> dict:
    """The next message is a test app event ``subject`` whose payload has this title."""
    got, data = event(received)
    assert (got, data["title"]) == (subject, title), data
    return data


def saved_twice(author: Author, draft: str, final: str) -> Book:
    """A book created as ``draft`` and saved again as ``final``: two model events."""
    book = Book.objects.create(title=draft, author=author, price=Decimal("1"))
    book.title = final
    book.save()
    return book


@pytest.fixture
def author(db):
    return Author.objects.create(name="Ann")  # Author has no event class


@pytest.fixture
def received(nats_settings, nats_client):
    return nats_client.subscribe("telegraphy.>")


@db
def test_create_then_updates_is_one_created_event_with_the_latest_state(received, author):
    with telegraphy.coalesced():
        book = Book.objects.create(title="draft", author=author, price=Decimal("1"))
        for price in ("2", "3"):
            book.price = Decimal(price)
            book.save()
        book.title = "final"
        book.save()
        sentinel(received, "sentinel.inside")  # nothing left before the block ends
    subject, data = event(received)
    assert subject == f"book.created.{book.pk}"
    assert (data["title"], data["price"]) == ("final", "3")  # the instance as last saved
    sentinel(received)


@db
def test_create_then_delete_is_nothing_update_then_delete_is_one_deleted(received, author):
    old = Book.objects.create(title="old", author=author, price=Decimal("1"))
    assert event(received)[0] == f"book.created.{old.pk}"
    old_pk = old.pk
    with telegraphy.coalesced():
        brief = Book.objects.create(title="brief", author=author, price=Decimal("1"))
        old.title = "renamed"
        old.save()
        brief.delete()
        old.delete()
    subject, data = event(received)
    assert (subject, data["pk"], data["title"]) == (f"book.deleted.{old_pk}", old_pk, "renamed")
    sentinel(received)


@db
def test_one_event_per_object_in_the_order_of_their_first_commit(received, author):
    with telegraphy.coalesced():
        first = Book.objects.create(title="first", author=author, price=Decimal("1"))
        telegraphy.publish("shop.batch.marker", {"after": "first"}, on_commit=True)  # keeps its place, unmerged
        second = Book.objects.create(title="second", author=author, price=Decimal("1"))
        first.title = "first, edited"
        first.save()
        tag = Tag.objects.create(label="a b")  # another class; escaped key
        tag.delete()
    expect(received, f"book.created.{first.pk}", "first, edited")
    assert next_message(received).subject == "telegraphy.shop.batch.marker"
    assert event(received)[0] == f"book.created.{second.pk}"
    sentinel(received)  # the tag was created and deleted: nothing


@db
def test_operations_filter_applies_to_the_merged_event(received):
    """TagEvents publishes create and delete only: a tag updated then deleted is one deleted event; one
    created then updated is one created event."""
    kept = Tag.objects.create(label="kept")
    assert event(received)[0] == "tag.created.kept"
    with telegraphy.coalesced():
        kept.save()  # an update: not published by TagEvents, but merged
        kept.delete()
        fresh = Tag.objects.create(label="fresh")
        fresh.save()
    assert event(received)[0] == "tag.deleted.kept"
    assert event(received)[0] == "tag.created.fresh"
    sentinel(received)


@db
def test_nested_blocks_publish_when_the_outermost_ends(received, author):
    with telegraphy.coalesced():
        with telegraphy.coalesced():
            book = saved_twice(author, "inner", "inner, edited")
        sentinel(received, "sentinel.after.inner")  # the inner block's end published nothing
        book.title = "outer"
        book.save()
    expect(received, f"book.created.{book.pk}", "outer")
    sentinel(received)


@db
def test_rolled_back_work_inside_is_not_sent(received, author):
    with telegraphy.coalesced():
        kept = Book.objects.create(title="kept", author=author, price=Decimal("1"))
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                Book.objects.create(title="rolled back", author=author, price=Decimal("1"))
                kept.title = "rolled back edit"
                kept.save()
                raise RuntimeError("roll back")
        with transaction.atomic():
            with pytest.raises(RuntimeError):
                with transaction.atomic():  # a savepoint
                    Book.objects.create(title="savepoint", author=author, price=Decimal("1"))
                    raise RuntimeError("roll back the savepoint")
            committed = Book.objects.create(title="committed", author=author, price=Decimal("1"))
    expect(received, f"book.created.{kept.pk}", "kept")  # not the rolled back edit
    assert event(received)[0] == f"book.created.{committed.pk}"
    sentinel(received)


@db
def test_inside_an_open_transaction_events_wait_for_its_commit(received, author):
    """A data migration runs in a transaction: the block ends before the commit, the events follow it."""
    with transaction.atomic():
        with telegraphy.coalesced():
            book = saved_twice(author, "migrated", "migrated twice")
        sentinel(received, "sentinel.before.commit")
        telegraphy.publish("shop.after.block", {}, on_commit=True)  # registered after the block's end
    expect(received, f"book.created.{book.pk}", "migrated twice")
    assert next_message(received).subject == "telegraphy.shop.after.block"
    sentinel(received)

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with telegraphy.coalesced():
                Book.objects.create(title="never", author=author, price=Decimal("1"))
            raise RuntimeError("the migration fails")
    sentinel(received, "sentinel.after.rollback")


@db
def test_an_exception_leaving_the_block_still_publishes_what_committed(received, author):
    with pytest.raises(RuntimeError):
        with telegraphy.coalesced():
            book = Book.objects.create(title="saved", author=author, price=Decimal("1"))
            raise RuntimeError("the import stops half way")
    assert event(received)[0] == f"book.created.{book.pk}"
    sentinel(received)


@db
def test_coalescing_is_per_thread(received, author):
    """While one thread coalesces, another thread's events leave at once."""
    inside, other_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def coalescing_worker() -> None:
        try:
            with telegraphy.coalesced():
                telegraphy.publish("thread.held.x", {}, on_commit=True)
                inside.set()
                assert other_done.wait(10)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=coalescing_worker)
    worker.start()
    assert inside.wait(10)
    telegraphy.publish("thread.free.x", {}, on_commit=True)  # autocommit here: published at once
    assert next_message(received).subject == "telegraphy.thread.free.x"
    other_done.set()
    worker.join(10)
    assert not worker.is_alive() and not errors
    assert next_message(received).subject == "telegraphy.thread.held.x"
    sentinel(received)


@db
def test_coalescing_is_per_asyncio_task(received, author):
    """Two tasks saving through sync_to_async (which carries their context to the worker thread): the
    coalescing task's saves become one event at its block's end, the other task's event leaves first."""

    def create_and_edit() -> Book:
        return saved_twice(author, "task draft", "task final")

    def create_other() -> Book:
        return Book.objects.create(title="other task", author=author, price=Decimal("1"))

    async def main() -> tuple[Book, Book]:
        saved, other_done = asyncio.Event(), asyncio.Event()

        async def coalescing_task() -> Book:
            with telegraphy.coalesced():
                book = await sync_to_async(create_and_edit)()
                saved.set()
                await asyncio.wait_for(other_done.wait(), 10)
            return book

        async def other_task() -> Book:
            await asyncio.wait_for(saved.wait(), 10)
            book = await sync_to_async(create_other)()
            other_done.set()
            return book

        return await asyncio.wait_for(asyncio.gather(coalescing_task(), other_task()), 20)

    coalesced_book, other_book = asyncio.run(main())
    assert event(received)[0] == f"book.created.{other_book.pk}"
    expect(received, f"book.created.{coalesced_book.pk}", "task final")
    sentinel(received)
