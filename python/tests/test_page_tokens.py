"""Page tokens count against TOKEN_RATE_LIMIT (issue 20, part 3: 25 tokens of one user opened 100 sockets, as
every page render minted one). One budget with the token endpoint; past it the page renders with
``"token": null`` and its ``tokenUrl``, which the JS client asks later (it waits for ``Retry-After`` on 429:
js/test/gateway.test.mjs "tokenUrl: ... 429 waits for Retry-After", js/test/client.test.mjs "token null or
empty ... unless the app can fetch one")."""

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from .helpers import WsClient as Ws
from .test_client_ip import PROXIED, anonymous_tokens, configure  # noqa: F401  (a fixture)
from .test_token_endpoint import kv_keys

pytestmark = pytest.mark.django_db
URL = "/rt/token/"


def page_config(client: Client, **extra) -> dict:
    html = client.get("/page/", **extra).content.decode()
    found = re.search(r'<script id="telegraphy-config" type="application/json">(.*?)</script>', html)
    return json.loads(found.group(1))


def signed_in(name: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user(name))
    return client


def test_page_tokens_share_the_token_endpoints_budget(fresh_nats, settings):
    _server, nats_client = fresh_nats
    configure(settings, TOKEN_RATE_LIMIT="3/3600")
    carol, dave = signed_in("carol"), signed_in("dave")
    pages = [page_config(carol) for _ in range(8)]
    assert [page["token"] is not None for page in pages] == [True] * 3 + [False] * 5
    assert all(page["tokenUrl"] == URL and page["csrfToken"] for page in pages), "the client can ask later"
    assert kv_keys(nats_client) == 3, "no KV write for a page past the limit"

    carol.cookies["csrftoken"] = csrf = "csrf" * 8
    response = carol.post(URL, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 3600, "the same budget"
    assert page_config(dave)["token"] is not None, "another user has a budget of their own"
    configure(settings, TOKEN_RATE_LIMIT=None)
    assert page_config(carol)["token"] is not None, "None turns the limit off"


def test_page_renders_of_one_user_open_no_more_sockets_than_the_limit(gateway, nats_settings, settings):
    """At the real gateway: 6 pages of one user, a limit of 3: 3 tokens, 3 sockets."""
    configure(settings, TOKEN_RATE_LIMIT="3/3600")
    erin = signed_in("erin")
    minted = [page_config(erin)["token"] for _ in range(6)]
    sockets = [Ws(gateway["ws"], token) for token in minted if token]
    try:
        assert [s.connected["type"] for s in sockets] == ["connected"] * 3
    finally:
        for s in sockets:
            s.close()


def test_anonymous_page_tokens_by_client_address_behind_a_proxy(settings, anonymous_tokens):  # noqa: F811
    configure(settings, **PROXIED)
    visitor = Client(REMOTE_ADDR="10.0.0.1")
    tokens = [page_config(visitor, HTTP_X_FORWARDED_FOR="203.0.113.5")["token"] for _ in range(3)]
    assert [t is not None for t in tokens] == [True, True, False]
    forged = page_config(visitor, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5")
    assert forged["token"] is None, "a forged left entry is not a new budget"
    assert page_config(visitor, HTTP_X_FORWARDED_FOR="198.51.100.7")["token"] is not None, "another visitor"
