"""``POST <mount>/token/`` (issue 11, part 2): POST with Django's CSRF check, no tokens for anonymous visitors
unless the project opts in, a rate limit per user, and every refusal answered before any KV write (counted in
the real ``telegraphy_tokens`` bucket of a nats-server of the test's own)."""

import json
import re
import time

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from telegraphy import BaseEvent, ratelimit, tokens
from telegraphy.events import unregister

from .helpers import SECRET

pytestmark = pytest.mark.django_db
URL = "/rt/token/"


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def kv_keys(nats_client) -> int:
    """How many token ids the tokens bucket holds (0 while it does not exist): the messages of its stream (one
    per key, nothing is deleted here). One JetStream API request; nats-py's ``kv.keys()`` runs a watcher that
    once answered "no keys" for a bucket holding two under CI load."""
    from nats.js.errors import NotFoundError

    async def count() -> int:
        try:
            info = await nats_client.js.stream_info("KV_telegraphy_tokens")
        except NotFoundError:
            return 0
        return info.state.messages

    return nats_client.run(count())


def anonymous_client() -> tuple[Client, str]:
    """A browser-like anonymous client with a CSRF cookie (its secret is also a valid unmasked token)."""
    client = Client(enforce_csrf_checks=True)
    csrf = "anon" * 8
    client.cookies["csrftoken"] = csrf
    return client, csrf


def signed_in(name: str) -> tuple[Client, str]:
    """A browser-like client (CSRF enforced) signed in as ``name``, and the CSRF token its page carries."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user(name))
    html = client.get("/page/").content.decode()
    config = json.loads(re.search(r'<script id="telegraphy-config" type="application/json">(.*?)</script>', html).group(1))
    assert config["tokenUrl"] == URL and config["csrfToken"], config
    return client, config["csrfToken"]


def test_post_with_csrf_mints_a_registered_token(fresh_nats):
    _server, nats_client = fresh_nats
    client, csrf = signed_in("alice")
    before = kv_keys(nats_client)
    response = client.post(URL, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200, response.content
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    claims = tokens.verify(body["token"], [SECRET])
    assert claims["sub"] == str(User.objects.get(username="alice").pk) and body["expires_in"] == 60
    assert kv_keys(nats_client) == before + 1


def test_refusals_come_before_any_kv_write(fresh_nats, settings):
    """GET (405), POST without or with a wrong CSRF token (403), anonymous (403): none writes to KV."""
    _server, nats_client = fresh_nats
    client, csrf = signed_in("bob")
    assert client.post(URL, HTTP_X_CSRFTOKEN=csrf).status_code == 200  # the bucket exists now
    base = kv_keys(nats_client)
    assert base == 2, "the page's token and the endpoint's"
    assert client.get(URL).status_code == 405
    assert client.post(URL).status_code == 403, "no CSRF token"
    assert client.post(URL, HTTP_X_CSRFTOKEN="x" * 64).status_code == 403, "a wrong CSRF token"
    anonymous, anon_csrf = anonymous_client()
    response = anonymous.post(URL, HTTP_X_CSRFTOKEN=anon_csrf)
    assert (response.status_code, response.json()) == (403, {"token": None, "error": "forbidden"})
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "ANONYMOUS_TOKENS": True}
    response = anonymous.post(URL, HTTP_X_CSRFTOKEN=anon_csrf)
    assert response.status_code == 403, "opted in, but no event class grants anonymous visitors anything"
    assert kv_keys(nats_client) == base


def test_anonymous_tokens_when_the_project_opts_in(fresh_nats, settings):
    _server, nats_client = fresh_nats

    class Lobby(BaseEvent):
        name = "lobby.{topic}"

        def allowed(self, user):
            return True  # public: anonymous visitors too

    try:
        anonymous, csrf = anonymous_client()
        assert anonymous.post(URL, HTTP_X_CSRFTOKEN=csrf).status_code == 403, "off by default"
        assert kv_keys(nats_client) == 0
        settings.TELEGRAPHY = {**settings.TELEGRAPHY, "ANONYMOUS_TOKENS": True}
        response = anonymous.post(URL, HTTP_X_CSRFTOKEN=csrf)
        assert response.status_code == 200, response.content
        claims = tokens.verify(response.json()["token"], [SECRET])
        assert (claims["sub"], claims["allow"]) == ("", ["lobby.*"])
        assert kv_keys(nats_client) == 1
    finally:
        unregister(Lobby)


def test_rate_limit_per_user_answers_429_with_retry_after_before_kv(fresh_nats, settings):
    _server, nats_client = fresh_nats
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "TOKEN_RATE_LIMIT": "3/3600"}
    carol, carol_csrf = signed_in("carol")
    dave, dave_csrf = signed_in("dave")
    # One budget with the page tags: carol's page token (signed_in renders /page/) was the first of the 3.
    assert [carol.post(URL, HTTP_X_CSRFTOKEN=carol_csrf).status_code for _ in range(2)] == [200] * 2
    base = kv_keys(nats_client)
    refused = [carol.post(URL, HTTP_X_CSRFTOKEN=carol_csrf) for _ in range(20)]
    assert {r.status_code for r in refused} == {429}
    assert refused[0].json() == {"token": None, "error": "rate_limited"}
    assert all(1 <= int(r["Retry-After"]) <= 3600 for r in refused)
    assert kv_keys(nats_client) == base, "no KV write for a refused call"
    assert dave.post(URL, HTTP_X_CSRFTOKEN=dave_csrf).status_code == 200, "another user has a budget of their own"
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "TOKEN_RATE_LIMIT": None}
    assert carol.post(URL, HTTP_X_CSRFTOKEN=carol_csrf).status_code == 200, "None turns the limit off"


def test_rate_limit_windows():
    rate = (2, 60)
    t0 = 1_800_000_000.0  # a window boundary (divisible by 60)
    assert [ratelimit.take("u", rate, now=t0 + 1) for _ in range(2)] == [None, None]
    assert ratelimit.take("u", rate, now=t0 + 1.5) == 59, "whole seconds until the window ends"
    assert ratelimit.take("u", rate, now=t0 + 59.9) == 1, "never 0"
    assert ratelimit.take("other", rate, now=t0 + 2) is None
    assert ratelimit.take("u", rate, now=t0 + 60) is None, "a new window"


def test_endpoint_with_nats_down_is_503():
    client, csrf = signed_in("erin")
    started = time.monotonic()
    response = client.post(URL, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 503 and response.json() == {"token": None, "error": "unavailable"}
    assert time.monotonic() - started < 3.0
