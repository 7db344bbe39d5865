"""Against a real nats-server: model events reach subscribers, tokens reach KV, restarts lose nothing."""

import json
import logging
import os
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

import telegraphy
from telegraphy import tokens
from telegraphy.publisher import PublishError, get_publisher

from .helpers import NatsClient, NatsServer, free_port, next_message
from .testapp.models import Author, Book

db = pytest.mark.django_db(transaction=True)


@db
def test_model_save_reaches_a_subscriber(nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.testapp.book.>")
    author = Author.objects.create(name="Ann")
    book = Book.objects.create(title="Dune", author=author, price=Decimal("9.50"))
    msg = next_message(received)
    assert msg.subject == f"telegraphy.testapp.book.created.{book.pk}"
    data = json.loads(msg.data)
    assert data["pk"] == book.pk and data["price"] == "9.50" and data["author"] == author.pk
    first_id = msg.headers["Nats-Msg-Id"]  # lets a capturing stream drop a resent copy
    pk = book.pk
    book.delete()
    msg = next_message(received)
    assert (msg.subject, json.loads(msg.data)["pk"]) == (f"telegraphy.testapp.book.deleted.{pk}", pk)
    assert msg.headers["Nats-Msg-Id"] not in ("", first_id)


@db
def test_rolled_back_save_publishes_nothing(nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.>")
    author = Author.objects.create(name="Ann")  # Author has no event class: publishes nothing
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Book.objects.create(title="never", author=author, price=Decimal("1"))
            raise RuntimeError("roll back")
    telegraphy.publish("sentinel.after.rollback", {})
    # Events leave in order: the first one after the rollback must be the sentinel.
    assert next_message(received).subject == "telegraphy.sentinel.after.rollback"


@db
def test_views_publish_and_custom_events(client, nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.>")
    pk = int(client.get("/create-book/").content)
    # The view publishes after the save; with autocommit the model event left first.
    subjects = [next_message(received).subject for _ in range(2)]
    assert subjects == [f"telegraphy.testapp.book.created.{pk}", "telegraphy.shop.view.done"]
    from .testapp.events import ChatMessage

    ChatMessage.send({"text": "hi"}, room="lobby")
    msg = next_message(received)
    assert (msg.subject, json.loads(msg.data)) == ("telegraphy.chat.lobby.message", {"text": "hi"})


@db
def test_async_view_publishes(async_client, nats_settings, nats_client):
    import asyncio

    received = nats_client.subscribe("telegraphy.shop.view.done")
    response = asyncio.run(async_client.get("/async-create-book/"))
    assert response.status_code == 200
    assert json.loads(next_message(received).data) == {"pk": int(response.content)}


def test_mint_registers_jti_create_only(nats_settings, nats_client):
    token = tokens.mint("alice", allow=["chat.lobby.*"])
    claims = tokens.verify(token, [nats_settings["SECRET"]])
    kv = nats_client.run(nats_client.js.key_value("telegraphy_tokens"))
    entry = nats_client.run(kv.get(claims["jti"]))
    assert entry.value == b"1"
    # The signed rev lets the gateway consume the token with one revision-guarded write.
    assert claims["rev"] == entry.revision >= 1
    status = nats_client.run(kv.status())
    assert status.history == 1 and status.ttl == 3600
    with pytest.raises(tokens.TokenRegistrationError, match="already"):
        tokens.register(claims["jti"])


def test_mint_with_a_presence_info_claim(nats_settings, nats_client):
    token = tokens.mint("alice", allow=["chat.>"], info={"name": "Alice"})
    claims = tokens.verify(token, [nats_settings["SECRET"]])
    assert list(claims)[-2:] == ["rev", "info"], "protocol order: rev, then info"
    assert claims["info"] == {"name": "Alice"}
    with pytest.raises(ValueError, match="256 bytes"):
        tokens.mint("alice", allow=["chat.>"], info={"n": "x" * 300})


def test_mint_retries_until_the_bucket_answers(nats_settings, nats_client, caplog):
    # The publisher caches the bucket; a bucket deleted behind its back (or a stream without a leader during a
    # JetStream election) makes the create fail: the mint retries within TOKEN_TIMEOUT, re-creating the bucket.
    tokens.mint("alice", allow=["a.>"])
    nats_client.run(nats_client.js.delete_key_value("telegraphy_tokens"))
    with caplog.at_level(logging.WARNING, logger="telegraphy"):
        token = tokens.mint("alice", allow=["a.>"])
    jti = tokens.verify(token, [nats_settings["SECRET"]])["jti"]
    kv = nats_client.run(nats_client.js.key_value("telegraphy_tokens"))
    assert nats_client.run(kv.get(jti)).value == b"1"
    assert "token registration failed" in caplog.text and "retrying" in caplog.text


def test_amint_from_async_code(nats_settings, nats_client):
    import asyncio

    token = asyncio.run(tokens.amint("bob", allow=["a.>"]))
    jti = tokens.verify(token, [nats_settings["SECRET"]])["jti"]
    kv = nats_client.run(nats_client.js.key_value("telegraphy_tokens"))
    assert nats_client.run(kv.get(jti)).value == b"1"


def test_acknowledged_publish(fresh_nats):
    import asyncio

    _, nats_client = fresh_nats
    with pytest.raises(PublishError, match="no JetStream stream captures"):
        telegraphy.publish("acked.nostream.x", {"a": 1}, ack=True, timeout=3)
    nats_client.run(nats_client.js.add_stream(name="ACKED", subjects=["telegraphy.acked.>"]))
    ack = telegraphy.publish("acked.yes.x", {"a": 1}, ack=True)
    assert ack.stream == "ACKED" and ack.seq == 1
    ack2 = asyncio.run(telegraphy.apublish("acked.yes.y", [1, 2], ack=True))
    assert ack2.seq == 2
    msg = nats_client.run(nats_client.js.get_msg("ACKED", 2))
    assert json.loads(msg.data) == [1, 2]


def test_acknowledged_publish_with_nats_down_raises_in_bounded_time():
    with pytest.raises(PublishError, match="not acknowledged"):
        telegraphy.publish("acked.down.x", {}, ack=True, timeout=0.5)


def test_publishing_with_nats_down_never_raises_and_counts_drops(settings, caplog):
    caplog.set_level(logging.WARNING, logger="telegraphy")
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "PUBLISH_BUFFER": 5}
    results = [telegraphy.publish("down.event.x", {"i": i}) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    stats = get_publisher().stats()
    assert (stats["connected"], stats["buffered"], stats["dropped"]) == (False, 5, 3)
    assert any("publish buffer full" in r.getMessage() for r in caplog.records)
    assert telegraphy.flush(0.2) is False


@db
def test_view_with_nats_down_still_answers(client, settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "PUBLISH_BUFFER": 1}
    for _ in range(3):  # overflows the buffer of 1
        assert client.get("/create-book/").status_code == 200
    assert get_publisher().stats()["dropped"] >= 2


def test_nats_restart_loses_nothing_buffered(settings, tmp_path):
    server = NatsServer(tmp_path / "store").start()
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "NATS_URL": server.url}
    client = None
    try:
        client = NatsClient(server.url)
        client.run(client.js.add_stream(name="RESTART", subjects=["telegraphy.restart.>"]))
        telegraphy.publish("restart.before.x", {"i": -1})
        assert telegraphy.flush(5), "connected before the restart"
        server.stop()
        for i in range(50):
            assert telegraphy.publish("restart.during.x", {"i": i}) is True  # never raises while down
        assert get_publisher().stats()["dropped"] == 0
        server.start()  # same port, same store dir
        assert telegraphy.flush(15), get_publisher().stats()
        info = client.run(client.js.stream_info("RESTART"), timeout=15)
        seen = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            seen.append(json.loads(client.run(client.js.get_msg("RESTART", seq)).data)["i"])
        # Everything buffered arrived, in order, and once: resent batches carry the same Nats-Msg-Id.
        assert seen == list(range(-1, 50)), (info.state, get_publisher().stats())
    finally:
        if client is not None:
            client.close()
        server.stop()


def test_publisher_restarts_in_a_forked_child(nats_settings, nats_client):
    received = nats_client.subscribe("telegraphy.fork.>")
    telegraphy.publish("fork.parent.x", {})
    assert telegraphy.flush(5)
    assert next_message(received).subject == "telegraphy.fork.parent.x"
    pid = os.fork()
    if pid == 0:  # child: the parent's thread does not exist here
        code = 1
        try:
            telegraphy.publish("fork.child.x", {"pid": os.getpid()})
            code = 0 if telegraphy.flush(5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    msg = next_message(received)
    assert (msg.subject, json.loads(msg.data)) == ("telegraphy.fork.child.x", {"pid": pid})


def test_telegraphy_publish_command(nats_settings, nats_client, capsys):
    received = nats_client.subscribe("telegraphy.cmd.>")
    call_command("telegraphy_publish", "cmd.hello.x", '{"n": 1}')
    assert "published cmd.hello.x" in capsys.readouterr().out
    msg = next_message(received)
    assert (msg.subject, json.loads(msg.data)) == ("telegraphy.cmd.hello.x", {"n": 1})
    with pytest.raises(CommandError, match="JSON"):
        call_command("telegraphy_publish", "cmd.hello.x", "{nope")
    with pytest.raises(CommandError, match="invalid event name"):
        call_command("telegraphy_publish", "cmd..x", "1")


def test_telegraphy_publish_command_fails_when_nats_is_down():
    with pytest.raises(CommandError, match="did not confirm"):
        call_command("telegraphy_publish", "cmd.hello.x", "1", "--timeout", "0.5")


def test_telegraphy_check_command(settings, tmp_path, capsys):
    server = NatsServer(tmp_path / "store").start()
    try:
        settings.TELEGRAPHY = {**settings.TELEGRAPHY, "NATS_URL": server.url}
        with pytest.raises(CommandError, match="1 check"):
            call_command("telegraphy_check", "--skip-gateway")
        assert "missing" in capsys.readouterr().out
        call_command("telegraphy_check", "--skip-gateway", "--create-bucket")
        call_command("telegraphy_check", "--skip-gateway")
        out = capsys.readouterr().out
        assert "ok   NATS reachable" in out and "present" in out
        settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_URL": f"ws://127.0.0.1:{free_port()}/ws"}
        with pytest.raises(CommandError, match="1 check"):  # no gateway listens there
            call_command("telegraphy_check", "--timeout", "1")
        assert "FAIL gateway not reachable" in capsys.readouterr().out
    finally:
        server.stop()


def test_telegraphy_check_with_nats_down(capsys):
    with pytest.raises(CommandError):
        call_command("telegraphy_check", "--skip-gateway", "--timeout", "1")
    assert "FAIL NATS not reachable" in capsys.readouterr().out


def test_plain_script_without_django_settings_delivers_at_exit(nats_client, nats_server):
    """A script (Celery task, Flask app...) without Django settings: env configuration, and what it published
    reaches NATS before the interpreter exits (bounded atexit flush)."""
    import subprocess
    import sys
    from pathlib import Path

    received = nats_client.subscribe("telegraphy.script.>")
    env = {**os.environ, "TELEGRAPHY_NATS_URL": nats_server.url, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = "import telegraphy, decimal; telegraphy.publish('script.done.x', {'total': decimal.Decimal('1.50')})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    msg = next_message(received)
    assert (msg.subject, json.loads(msg.data)) == ("telegraphy.script.done.x", {"total": "1.50"})
