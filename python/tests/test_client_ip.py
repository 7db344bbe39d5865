"""The client address of the anonymous rate limits honours trusted proxies (issue 20, part 3), by the gateway's
rule (PROTOCOL section 3, "Connection quotas"): REMOTE_ADDR, unless it is one of TRUSTED_PROXIES; then
CLIENT_IP_HEADER names the client (X-Forwarded-For: the right-most address that is not a trusted proxy).
Behind a proxy, visitors get budgets of their own; a client cannot forge one."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from telegraphy import BaseEvent
from telegraphy.checks import check_settings
from telegraphy.client_ip import client_ip, rate_key
from telegraphy.events import unregister

from .helpers import SECRET

PROXIED = {"TRUSTED_PROXIES": ["10.0.0.0/8", "::1"], "CLIENT_IP_HEADER": "X-Forwarded-For"}


def configure(settings, **values):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, **values}


def ip(remote: str, xff: str | None = None, **meta) -> str:
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return client_ip({"REMOTE_ADDR": remote, **meta})


def test_without_trusted_proxies_the_peer_counts(settings):
    assert ip("198.51.100.1", "203.0.113.5") == "198.51.100.1", "off by default: the header is the client's word"
    configure(settings, CLIENT_IP_HEADER="X-Forwarded-For")
    assert ip("10.0.0.1", "203.0.113.5") == "10.0.0.1", "a header alone trusts nobody"


def test_forwarded_for_right_most_untrusted(settings):
    configure(settings, **PROXIED)
    assert ip("10.0.0.1", "203.0.113.5") == "203.0.113.5"
    assert ip("10.0.0.1", "203.0.113.5, 10.0.0.2") == "203.0.113.5", "a second trusted hop"
    assert ip("10.0.0.1", "6.6.6.6, 7.7.7.7, 203.0.113.5") == "203.0.113.5", "the client's own entries are ignored"
    assert ip("10.0.0.1", "10.1.1.1, 10.2.2.2") == "10.1.1.1", "all trusted: the left-most, as the gateway"
    assert ip("10.0.0.1") == "10.0.0.1" and ip("10.0.0.1", "nonsense") == "10.0.0.1", "missing or unparsable"
    assert ip("10.0.0.1", "203.0.113.5:8080") == "203.0.113.5" and ip("10.0.0.1", "[2001:db8::7]:443") == "2001:db8::7"
    assert ip("::ffff:10.0.0.1", "203.0.113.5") == "203.0.113.5", "an IPv4-mapped peer is that IPv4 address"
    assert ip("::1", "2001:db8::9") == "2001:db8::9"
    assert ip("198.51.100.1", "203.0.113.5") == "198.51.100.1", "an untrusted peer's header is ignored"
    assert ip("10.0.0.1", "9.9.9.9, " + "x" * 10000 + ", 203.0.113.5") == "203.0.113.5", "padding on the left"


def test_x_real_ip(settings):
    configure(settings, TRUSTED_PROXIES=["10.0.0.1"], CLIENT_IP_HEADER="X-Real-IP")
    assert ip("10.0.0.1", HTTP_X_REAL_IP="203.0.113.5") == "203.0.113.5"
    assert ip("10.0.0.2", HTTP_X_REAL_IP="203.0.113.5") == "10.0.0.2", "10.0.0.1 alone is trusted"


def test_rate_key_counts_ipv6_by_its_64():
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("203.0.113.5") == "203.0.113.5" and rate_key("") == ""


def test_malformed_values_are_E018_and_refused_at_run_time(settings):
    for bad in ({"TRUSTED_PROXIES": "10.0.0.0/8"}, {"TRUSTED_PROXIES": ["10.0.0.0/33"]},
                {"TRUSTED_PROXIES": ["proxy.local"]}, {"TRUSTED_PROXIES": [10]},
                {"CLIENT_IP_HEADER": "X Forwarded For"}, {"CLIENT_IP_HEADER": 5}):
        settings.TELEGRAPHY = {"SECRET": SECRET, **bad}
        assert [m.id for m in check_settings()] == ["telegraphy.E018"], bad
        with pytest.raises(ImproperlyConfigured, match="E018"):
            ip("10.0.0.1", "203.0.113.5")
    settings.TELEGRAPHY = {"SECRET": SECRET, **PROXIED}
    assert check_settings() == []
    configure(settings, TRUSTED_PROXIES=[" 10.0.0.0/8 ", "2001:db8::/32"], CLIENT_IP_HEADER="")
    assert check_settings() == []


def test_grant_fields_are_E019(settings):
    for bad in ("email", ["nope"], [3]):
        settings.TELEGRAPHY = {"SECRET": SECRET, "GRANT_FIELDS": bad}
        assert [m.id for m in check_settings()] == ["telegraphy.E019"], bad
    settings.TELEGRAPHY = {"SECRET": SECRET, "GRANT_FIELDS": ["email", "groups"]}
    assert check_settings() == []


# ---------------------------------------------------------------------------- the token endpoint, anonymous


@pytest.fixture
def anonymous_tokens(settings, nats_settings):
    class Lobby(BaseEvent):  # registered when defined
        name = "lobby.{topic}"

        def allowed(self, user):
            return True  # public: anonymous visitors too

    configure(settings, ANONYMOUS_TOKENS=True, TOKEN_RATE_LIMIT="2/3600")
    yield
    unregister(Lobby)


def post_token(remote: str, xff: str | None = None) -> int:
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=remote)
    client.cookies["csrftoken"] = csrf = "anon" * 8
    extra = {"HTTP_X_FORWARDED_FOR": xff} if xff is not None else {}
    return client.post("/rt/token/", HTTP_X_CSRFTOKEN=csrf, **extra).status_code


@pytest.mark.django_db
def test_visitors_behind_a_trusted_proxy_have_budgets_of_their_own(settings, anonymous_tokens):
    configure(settings, **PROXIED)
    assert [post_token("10.0.0.1", "203.0.113.5") for _ in range(3)] == [200, 200, 429]
    assert post_token("10.0.0.1", "198.51.100.7") == 200, "another visitor behind the same proxy is served"
    assert post_token("10.0.0.1", "1.2.3.4, 203.0.113.5") == 429, "a forged left entry is not a new budget"
    assert post_token("10.0.0.2", "203.0.113.5, 10.0.0.9") == 429, "the same visitor through two proxies"


@pytest.mark.django_db
def test_an_untrusted_peer_cannot_forge_budgets(settings, anonymous_tokens):
    configure(settings, **PROXIED)
    assert [post_token("198.51.100.1", f"203.0.113.{i}") for i in range(4)] == [200, 200, 429, 429]
    assert post_token("198.51.100.2") == 200, "another address is served"
    assert [post_token(f"2001:db8:1:2::{i}") for i in range(1, 4)] == [200, 200, 429], "one IPv6 /64, one budget"
