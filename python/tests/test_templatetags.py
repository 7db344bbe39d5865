import json
import logging
import re
import time

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template
from django.test import RequestFactory

from telegraphy import tokens

SECRET = "telegraphy-test-secret-0123456789abcdef"
pytestmark = pytest.mark.django_db


def config_of(html):
    match = re.search(r'<script id="telegraphy-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


def test_anonymous_page_gets_no_token_by_default(client, caplog):
    """No KV write for an anonymous page view: the client connects without a token (the gateway's
    auth.anonymous_allow decides)."""
    caplog.set_level(logging.WARNING, logger="telegraphy")
    html = client.get("/page/").content.decode()
    assert config_of(html) == {"url": "ws://127.0.0.1:8080/ws"}
    assert '<p id=t></p>' in html
    assert not caplog.records, "no mint was even attempted"


def test_page_renders_with_nats_down(client, caplog):
    caplog.set_level(logging.WARNING, logger="telegraphy")
    client.force_login(User.objects.create_user("nina"))
    start = time.monotonic()
    response = client.get("/page/")
    elapsed = time.monotonic() - start
    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/telegraphy/telegraphy.js"></script>' in html
    config = config_of(html)
    assert config.pop("csrfToken") and response.cookies["csrftoken"].value, "the endpoint's CSRF token and cookie"
    assert config == {"url": "ws://127.0.0.1:8080/ws", "token": None, "tokenUrl": "/rt/token/"}
    assert '<p id=t></p>' in html, "telegraphy_token renders empty without a token"
    assert '<p id=u>ws://127.0.0.1:8080/ws</p>' in html
    assert elapsed < 3.0, "the wait for token registration is bounded"
    assert any("no token for this page" in r.getMessage() for r in caplog.records)


def test_page_has_a_registered_token_for_the_user(client, nats_settings, nats_client):
    alice = User.objects.create_user("alice")
    client.force_login(alice)
    html = client.get("/page/").content.decode()
    config = config_of(html)
    claims = tokens.verify(config["token"], [SECRET])
    assert claims["sub"] == str(alice.pk)
    assert claims["allow"] == [f"notes.{alice.pk}.>", "chat.*.message"]
    assert f"<p id=t>{config['token']}</p>" in html, "one token per request, shared by the tags"
    kv = nats_client.run(nats_client.js.key_value("telegraphy_tokens"))
    entry = nats_client.run(kv.get(claims["jti"]))
    assert entry.value == b"1"


def test_config_is_escaped_for_html(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False,
                           "GATEWAY_URL": "ws://x/ws?</script><script>alert(1)</script>"}
    request = RequestFactory().get("/")
    request.user = User(pk=1, username="x")
    html = Template("{% load telegraphy %}{% telegraphy_scripts %}").render(Context({"request": request}))
    assert "<script>alert(1)" not in html
    assert config_of(html)["url"] == "ws://x/ws?</script><script>alert(1)</script>"


def test_config_carries_the_client_transports_when_set(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False}
    request = RequestFactory().get("/")
    request.user = User(pk=1, username="x")
    render = lambda: config_of(Template("{% load telegraphy %}{% telegraphy_scripts %}").render(  # noqa: E731
        Context({"request": request})))
    assert "transports" not in render() and "sseUrl" not in render()  # the JS client's defaults
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "TRANSPORTS": ("sse",), "SSE_URL": "/rt/sse"}
    config = render()
    assert (config["transports"], config["sseUrl"]) == (["sse"], "/rt/sse")


def test_tags_without_request_use_context_user(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False}
    user = User(pk=5, username="svc")
    html = Template("{% load telegraphy %}{% telegraphy_token %}").render(Context({"user": user}))
    assert tokens.verify(html, [SECRET])["sub"] == "5"


def test_static_client_is_the_js_build():
    """The package ships a copy of js/dist/telegraphy.global.js; it must not drift from the build."""
    from pathlib import Path

    from .helpers import REPO

    shipped = Path(__file__).resolve().parents[1] / "telegraphy" / "static" / "telegraphy" / "telegraphy.js"
    built = REPO / "js" / "dist" / "telegraphy.global.js"
    assert shipped.is_file(), "python/telegraphy/static/telegraphy/telegraphy.js is missing"
    if built.is_file():
        assert shipped.read_bytes() == built.read_bytes(), (
            "copy js/dist/telegraphy.global.js to python/telegraphy/static/telegraphy/telegraphy.js"
        )
    assert b"Telegraphy" in shipped.read_bytes()
