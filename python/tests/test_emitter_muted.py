"""``telegraphy.muted()`` (issue 25): nothing is published inside it, in its thread or asyncio task only.

Against a real nats-server. "Nothing arrived" is shown by ordering: the link sends events in the order they
were enqueued, so when a sentinel published after the muted code is the next message, nothing came before it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal

import pytest

import telegraphy
from telegraphy.publisher import get_publisher

from .helpers import next_message
from .testapp.models import Author, Book

db = pytest.mark.django_db(transaction=True)


def sentinel(received, name: str = "sentinel.after.muted") -> None:
    """Publish a sentinel and check that it is the next message: nothing else was sent before it."""
    telegraphy.publish(name, {})
    assert next_message(received).subject == f"telegraphy.{name}"


@db
def test_muted_saves_and_publishes_send_nothing_and_nest(nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.>")
    author = Author.objects.create(name="Ann")
    with telegraphy.muted():
        book = Book.objects.create(title="quiet", author=author, price=Decimal("1"))
        with telegraphy.muted():
            book.title = "still quiet"
            book.save()
        book.price = Decimal("2")  # the inner block ended: the outer one still mutes
        book.save()
        assert telegraphy.publish("muted.plain.x", {"n": 1}) is None
        assert telegraphy.publish("muted.acked.x", {"n": 1}, ack=True, timeout=0.5) is None
        assert telegraphy.publish("muted.commit.x", {"n": 1}, on_commit=True) is None
        from .testapp.events import ChatMessage

        assert ChatMessage.send({"text": "hi"}, room="lobby") is None
    sentinel(received)
    book.title = "loud again"
    book.save()
    msg = next_message(received)
    assert msg.subject == f"telegraphy.testapp.book.updated.{book.pk}"
    assert json.loads(msg.data)["title"] == "loud again"
    assert get_publisher().stats()["dropped"] == 0


def test_muted_still_rejects_bad_input():
    """Muting skips sending, not the checks: a bug in an import still shows."""
    with telegraphy.muted():
        with pytest.raises(ValueError, match="invalid event name"):
            telegraphy.publish("bad..name", {})
        with pytest.raises(ValueError, match="not JSON-serialisable"):
            telegraphy.publish("ok.name", {"x": object()})


def test_muted_as_a_decorator(nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.>")

    @telegraphy.muted()
    def quiet_import(n: int) -> int:
        for i in range(n):
            telegraphy.publish("import.row.x", {"i": i})
        return n

    assert quiet_import(3) == 3
    assert quiet_import(2) == 2  # a decorator enters a fresh context each call
    sentinel(received)


def test_muted_is_per_thread(nats_settings, nats_client):
    """One thread mutes; another thread publishing meanwhile is not muted."""
    received = nats_client.subscribe("telegraphy.>")
    inside, outside_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def muted_worker() -> None:
        try:
            with telegraphy.muted():
                inside.set()
                assert outside_done.wait(10)
                telegraphy.publish("thread.muted.x", {})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=muted_worker)
    worker.start()
    assert inside.wait(10)
    assert telegraphy.publish("thread.loud.x", {}) is True  # while the other thread is muted
    outside_done.set()
    worker.join(10)
    assert not worker.is_alive() and not errors
    assert next_message(received).subject == "telegraphy.thread.loud.x"
    sentinel(received)


def test_muted_is_per_asyncio_task(nats_settings, nats_client):
    """Two tasks of one loop: the muted one sends nothing, the other is heard; a task created inside the
    muted block inherits it (contextvars are copied when a task is created)."""
    received = nats_client.subscribe("telegraphy.>")

    async def main() -> None:
        muted_in, loud_done = asyncio.Event(), asyncio.Event()

        async def muted_task() -> None:
            with telegraphy.muted():
                muted_in.set()
                await asyncio.wait_for(loud_done.wait(), 10)
                assert await telegraphy.apublish("task.muted.x", {}) is None
                child = asyncio.create_task(telegraphy.apublish("task.child.x", {}))
            assert await child is None  # created inside: muted too, though it ran after the block

        async def loud_task() -> None:
            await asyncio.wait_for(muted_in.wait(), 10)
            assert await telegraphy.apublish("task.loud.x", {}) is True
            loud_done.set()

        await asyncio.wait_for(asyncio.gather(muted_task(), loud_task()), 20)

    asyncio.run(main())
    assert next_message(received).subject == "telegraphy.task.loud.x"
    sentinel(received)
