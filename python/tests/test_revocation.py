"""Revoking users and sessions (PROTOCOL section 4): the KV entry Django writes, and its effect on the real
gateway (started by `manage.py run_telegraph`): live sockets closed with 4003, older tokens refused with 4001."""

import asyncio
import base64
import json
import secrets
import time

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.management import call_command
from django.core.management.base import CommandError
from websockets.exceptions import ConnectionClosed

import telegraphy
from telegraphy import tokens
from telegraphy.revocations import RevocationError, session_key, user_key

from .helpers import SECRET
from .helpers import WsClient as Client

BUCKET = "telegraphy_revocations"


def kv_value(client, key):
    async def get():
        kv = await client.js.key_value(BUCKET)
        return (await kv.get(key)).value, await kv.status()

    return client.run(get())


def test_keys():
    assert user_key("alice") == "user.YWxpY2U"
    assert user_key(User(pk=42, username="x")) == "user." + base64.urlsafe_b64encode(b"42").decode().rstrip("=")
    assert user_key(42) == user_key("42")
    assert user_key("é/ü?") == "user.w6kvw7w_"  # base64url without padding: '-' and '_', never '/' or '='
    assert session_key("s-1_A") == "session.s-1_A"
    for bad in (None, "", AnonymousUser()):
        with pytest.raises(ValueError, match="anonymous"):
            user_key(bad)
    with pytest.raises(ValueError, match="no pk"):
        user_key(User(username="unsaved"))
    for bad in ("", "a b", "a.", ".a", "a*", 7):
        with pytest.raises(ValueError, match="session id"):
            session_key(bad)


def test_revocations_are_written_acknowledged(fresh_nats):
    """Into a bucket Django creates (max_age 86400 s, history 1): the key, and the time as ASCII seconds."""
    _server, client = fresh_nats
    before = int(time.time())
    revoked_at = telegraphy.revoke_user("alice")
    assert before <= revoked_at <= time.time()
    value, status = kv_value(client, "user.YWxpY2U")
    assert value == str(revoked_at).encode("ascii")
    assert (status.ttl, status.history) == (86400, 1)

    revoked_at = telegraphy.revoke_session("sess-1")
    assert kv_value(client, "session.sess-1")[0] == str(revoked_at).encode("ascii")

    async def revoke_async():
        return await telegraphy.arevoke_user(User(pk=7, username="x")), await telegraphy.arevoke_session("s2")

    user_at, session_at = asyncio.run(revoke_async())
    assert kv_value(client, "user.Nw")[0] == str(user_at).encode("ascii")
    assert kv_value(client, "session.s2")[0] == str(session_at).encode("ascii")


def test_revoking_without_nats_is_a_clear_bounded_error():
    # tests.settings points NATS_URL at a port that refuses connections
    started = time.monotonic()
    with pytest.raises(RevocationError, match=r"could not write revocation 'user\.Ym9i'.*NATS is not connected"):
        telegraphy.revoke_user("bob", timeout=1)
    with pytest.raises(RevocationError, match="NATS is not connected"):
        asyncio.run(telegraphy.arevoke_session("s1", timeout=1))
    assert time.monotonic() - started < 4
    assert isinstance(RevocationError("x"), telegraphy.PublishError)


@pytest.mark.django_db
def test_telegraphy_revoke_command(fresh_nats, capsys):
    _server, client = fresh_nats
    gina = User.objects.create_user("gina")
    call_command("telegraphy_revoke", "--user", "gina")
    key = user_key(gina)
    assert f"revoked user {gina.pk} (gina): {key} = " in capsys.readouterr().out
    first = int(kv_value(client, key)[0])
    call_command("telegraphy_revoke", "--user", str(gina.pk))
    assert int(kv_value(client, key)[0]) >= first
    call_command("telegraphy_revoke", "--session", "abc")
    assert capsys.readouterr().out.count("session.abc = ") == 1
    with pytest.raises(CommandError, match="no user with pk or username 'nobody'"):
        call_command("telegraphy_revoke", "--user", "nobody")
    User.objects.create_user(str(gina.pk))  # a username that is another user's pk
    with pytest.raises(CommandError, match="pk of one user and the username of another"):
        call_command("telegraphy_revoke", "--user", str(gina.pk))
    with pytest.raises(CommandError, match="not a session id"):
        call_command("telegraphy_revoke", "--session", "a b")


def test_telegraphy_revoke_command_without_nats():
    with pytest.raises(CommandError, match="NATS is not connected"):
        call_command("telegraphy_revoke", "--session", "abc", "--timeout", "1")


# ---------------------------------------------------------------------------- through the real gateway


def closed_code(client: Client, deadline: float) -> int:
    """The close code the gateway sends before ``deadline`` (time.monotonic; frames before it are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=max(deadline - time.monotonic(), 0.001))
    return closed.value.rcvd.code if closed.value.rcvd else None


def refused(url: str, **connect: str) -> int:
    """Connect with ``connect`` (token= or resume=); assert `unauthorized` and return the close code."""
    from websockets.sync.client import connect as ws_connect

    with ws_connect(url, open_timeout=5, close_timeout=2) as ws:
        ws.send(json.dumps({"type": "connect", "id": 1, **connect}))
        answer = json.loads(ws.recv(timeout=5))
        assert (answer["type"], answer["code"]) == ("error", "unauthorized"), answer
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        return closed.value.rcvd.code


def token_issued_at(sub: str, iat: int) -> str:
    claims = tokens.claims_for(sub, ["chat.>"], 60, now=iat)
    tokens.register(claims["jti"])
    return tokens.sign(claims, SECRET)


def fresh_user(name: str) -> User:
    # A pk no other test uses: revocations stay in the session's nats-server for a day.
    return User(pk=10**9 + secrets.randbelow(10**9), username=name)


def test_revoke_user_closes_its_sockets_at_the_gateway_and_refuses_older_tokens(gateway, nats_settings):
    xavier, yves = fresh_user("xavier"), fresh_user("yves")
    old_token = tokens.mint(xavier, allow=["chat.>"])  # issued before the revocation, never used
    clients = [Client(gateway["ws"], tokens.mint(user, allow=["chat.>"])) for user in (xavier, xavier, yves)]
    try:
        assert [c.connected["type"] for c in clients] == ["connected"] * 3, [c.connected for c in clients]
        revoked_at = telegraphy.revoke_user(xavier)
        deadline = time.monotonic() + 1.0
        assert [closed_code(c, deadline) for c in clients[:2]] == [4003, 4003], "both of xavier's sockets"
        assert clients[2].subscribe("chat.>", id=5)["type"] == "subscribed", "another user's socket stays open"

        assert refused(gateway["ws"], token=old_token) == 4001
        assert refused(gateway["ws"], token=token_issued_at(str(xavier.pk), revoked_at)) == 4001, "same second"
        later = Client(gateway["ws"], token_issued_at(str(xavier.pk), revoked_at + 1))
        assert later.connected["type"] == "connected", "a token issued after the revocation second is accepted"
        later.close()
    finally:
        for client in clients:
            client.close()


def test_revoke_session_closes_that_session_only(gateway, nats_settings):
    zoe = fresh_user("zoe")
    one, two = (Client(gateway["ws"], tokens.mint(zoe, allow=["chat.>"])) for _ in range(2))
    try:
        assert one.connected["type"] == two.connected["type"] == "connected"
        telegraphy.revoke_session(one.connected["session"])
        assert closed_code(one, time.monotonic() + 1.0) == 4003
        assert two.subscribe("chat.>", id=5)["type"] == "subscribed", "the user's other session stays open"
        assert refused(gateway["ws"], resume=one.connected["resume"]) == 4001
    finally:
        one.close()
        two.close()
