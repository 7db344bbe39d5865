import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from telegraphy.checks import check_settings
from telegraphy.conf import DEFAULTS, parse_rate, telegraphy_settings
from telegraphy.tokens import secret_weakness

from .helpers import SECRET, load_vectors

GOOD = {"SECRET": SECRET}
SECRETS = load_vectors("secrets.json")


def ids(settings, **telegraphy):
    settings.TELEGRAPHY = telegraphy
    return sorted(m.id for m in check_settings())


def test_defaults_with_a_secret_pass(settings):
    assert ids(settings, **GOOD) == []


def test_defaults_are_documented_values(settings):
    settings.TELEGRAPHY = GOOD
    assert telegraphy_settings.NATS_URL == "nats://127.0.0.1:4222"
    assert telegraphy_settings.SUBJECT_PREFIX == "telegraphy"
    assert telegraphy_settings.GATEWAY_URL == "ws://127.0.0.1:8080/ws"
    assert telegraphy_settings.TOKEN_TTL == 60
    assert telegraphy_settings.REGISTER_TOKENS is True
    assert telegraphy_settings.PUBLISH_BUFFER == 10000
    assert set(telegraphy_settings.as_dict()) == set(DEFAULTS)


def test_settings_follow_override(settings):
    settings.TELEGRAPHY = {**GOOD, "SUBJECT_PREFIX": "one"}
    assert telegraphy_settings.SUBJECT_PREFIX == "one"
    settings.TELEGRAPHY = {**GOOD, "SUBJECT_PREFIX": "two"}
    assert telegraphy_settings.SUBJECT_PREFIX == "two"
    with pytest.raises(AttributeError):
        telegraphy_settings.NO_SUCH_SETTING


@pytest.mark.parametrize("secret", [None, "", "short", "x" * 31, b"x" * 40])
def test_missing_or_short_secret_is_E001(settings, secret):
    assert ids(settings, SECRET=secret) == ["telegraphy.E001"]


def test_secret_vectors_are_the_rule_of_the_protocol():
    """proto/vectors/secrets.json (PROTOCOL section 4, "Secrets"): every accepted secret passes, every refused
    one is refused for the stated reason; the constants are the vectors' ones."""
    from telegraphy import tokens

    assert (tokens.MIN_SECRET_BYTES, tokens.MIN_SECRET_ENTROPY_BITS) == (SECRETS["min_bytes"], SECRETS["min_entropy_bits"])
    assert list(tokens.PLACEHOLDER_WORDS) == SECRETS["placeholder_words"]
    assert [secret_weakness(s) for s in SECRETS["accepted"]] == [None] * len(SECRETS["accepted"])
    assert [(c["secret"], secret_weakness(c["secret"])) for c in SECRETS["refused"]] == [
        (c["secret"], c["why"]) for c in SECRETS["refused"]
    ]
    assert {c["why"] for c in SECRETS["refused"]} == {"too_short", "placeholder", "repetitive", "low_entropy"}


@pytest.mark.parametrize("secret", SECRETS["accepted"])
def test_accepted_secrets_pass_the_check(settings, secret):
    assert ids(settings, SECRET=secret) == []


@pytest.mark.parametrize("case", SECRETS["refused"], ids=lambda c: f'{c["why"]}-{len(c["secret"])}')
def test_weak_secrets_are_E001_without_showing_the_secret(settings, case):
    settings.TELEGRAPHY = {"SECRET": case["secret"]}
    [error] = check_settings()
    assert error.id == "telegraphy.E001"
    if case["secret"]:
        assert case["secret"] not in f"{error.msg} {error.hint}"


def test_secret_length_counts_utf8_bytes(settings):
    assert secret_weakness("é" * 15 + "a") == "too_short"  # 31 bytes
    assert secret_weakness("été-à-la-plage-avec-des-amis-2026") is None


@pytest.mark.parametrize("url", ["http://x:4222", "127.0.0.1:4222", "nats://", "nats://host:99999", "", 42, []])
def test_bad_nats_url_is_E002(settings, url):
    assert ids(settings, **GOOD, NATS_URL=url) == ["telegraphy.E002"]


@pytest.mark.parametrize(
    "url", ["http://django:s3cr3t-pw@x:4222", "nats://django:s3cr3t-pw@nats:99999", ["nats://a", "s3cr3t-pw@b:1"]]
)
def test_E002_never_shows_the_nats_password(settings, url):
    settings.TELEGRAPHY = {**GOOD, "NATS_URL": url}
    [error] = check_settings()
    assert error.id == "telegraphy.E002"
    assert "s3cr3t-pw" not in f"{error.msg} {error.hint}" and "***@" in error.msg


@pytest.mark.parametrize("url", ["nats://a:4222,nats://b:4222", ["nats://a", "tls://b:4443"], "wss://nats.example"])
def test_good_nats_urls(settings, url):
    assert ids(settings, **GOOD, NATS_URL=url) == []


@pytest.mark.parametrize("url", ["ftp://x/ws", "x/ws", "ws://", "//x/ws", "/w s", None])
def test_bad_gateway_url_is_E003(settings, url):
    assert ids(settings, **GOOD, GATEWAY_URL=url) == ["telegraphy.E003"]


@pytest.mark.parametrize("prefix", ["", "a.*", "a.>", "a..b", "a b", None])
def test_bad_prefix_is_E004(settings, prefix):
    assert ids(settings, **GOOD, SUBJECT_PREFIX=prefix) == ["telegraphy.E004"]


@pytest.mark.parametrize("ttl", [0, 3601, "60", 1.5])
def test_bad_ttl_is_E005(settings, ttl):
    assert ids(settings, **GOOD, TOKEN_TTL=ttl) == ["telegraphy.E005"]


@pytest.mark.parametrize("url", ["wss://rt.example.com/ws", "https://rt.example.com/ws", "/ws"])
def test_good_gateway_urls(settings, url):
    assert ids(settings, **GOOD, GATEWAY_URL=url) == []


def test_other_checks(settings):
    assert ids(settings, **GOOD, PUBLISH_BUFFER=0) == ["telegraphy.E006"]
    assert ids(settings, **GOOD, PUBLISH_TIMEOUT=0) == ["telegraphy.E007"]
    assert ids(settings, **GOOD, GATEWAY_HTTP_URL="ws://x") == ["telegraphy.E008"]
    assert ids(settings, **GOOD, NATS_OPTIONS=[]) == ["telegraphy.E009"]
    assert ids(settings, **GOOD, KV_REPLICAS=3) == []
    assert ids(settings, **GOOD, KV_REPLICAS=0) == ids(settings, **GOOD, KV_REPLICAS="3") == ["telegraphy.E010"]
    assert ids(settings, **GOOD, NATS_ULR="typo") == ["telegraphy.W001"]
    assert ids(settings, **GOOD, TOKEN_RATE_LIMIT=None) == ids(settings, **GOOD, TOKEN_RATE_LIMIT="5/1") == []
    for bad in ("30", "0/60", "30/0", "a/b", 30, "30/60/1", " 30/60"):
        assert ids(settings, **GOOD, TOKEN_RATE_LIMIT=bad) == ["telegraphy.E011"], bad
    assert ids(settings, **GOOD, ANONYMOUS_TOKENS=1) == ids(settings, **GOOD, REVOKE_ON_AUTH_CHANGE="no") == [
        "telegraphy.E012"
    ]


def test_client_transports_are_E014(settings):
    for good in (None, ["websocket", "sse"], ["sse"], ("sse", "websocket")):
        assert ids(settings, **GOOD, TRANSPORTS=good) == [], good
    for bad in ([], ["ws"], ["sse", "sse"], "sse", [1]):
        assert ids(settings, **GOOD, TRANSPORTS=bad) == ["telegraphy.E014"], bad
    for good in (None, "https://rt.example.com/sse", "/rt/sse"):
        assert ids(settings, **GOOD, SSE_URL=good) == [], good
    for bad in ("wss://x/sse", "sse", 5):
        assert ids(settings, **GOOD, SSE_URL=bad) == ["telegraphy.E014"], bad


def test_token_info_is_E015(settings):
    for good in (None, len, "telegraphy.names.validate_name"):
        assert ids(settings, **GOOD, TOKEN_INFO=good) == [], good
    for bad in ("telegraphy.names.no_such_function", "no_such_module.f", "telegraphy.names.MAX_TOKENS", 5):
        assert ids(settings, **GOOD, TOKEN_INFO=bad) == ["telegraphy.E015"], bad


def test_new_settings_defaults(settings):
    settings.TELEGRAPHY = GOOD
    assert telegraphy_settings.ANONYMOUS_TOKENS is False
    assert parse_rate(telegraphy_settings.TOKEN_RATE_LIMIT) == (30, 60)
    assert telegraphy_settings.REVOKE_ON_AUTH_CHANGE is True


def test_not_a_dict_is_E000(settings):
    settings.TELEGRAPHY = "nats://x"
    assert [m.id for m in check_settings()] == ["telegraphy.E000"]


def test_manage_py_check_reports_the_missing_secret(settings):
    settings.TELEGRAPHY = {}
    with pytest.raises(SystemCheckError, match="telegraphy.E001"):
        call_command("check")
