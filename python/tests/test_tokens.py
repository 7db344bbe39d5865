import json
import re

import pytest

from telegraphy import token_format, tokens

from .helpers import load_vectors

V = load_vectors("tokens.json")
SECRETS = [V["secret"], V["secret2"]]


@pytest.mark.parametrize("case", V["valid"], ids=lambda c: c["what"])
def test_sign_reproduces_vectors_byte_exact(case):
    secret = V["secret2"] if "rotated" in case["what"] else V["secret"]
    assert tokens.sign(case["claims"], secret, prefix=case["prefix"]) == case["token"]


@pytest.mark.parametrize("case", V["valid"], ids=lambda c: c["what"])
def test_verify_valid_vectors(case):
    claims = tokens.verify(case["token"], SECRETS, now=V["now"])
    assert claims == case["claims"]
    assert list(claims) == list(case["claims"]), "claims keep protocol order"


@pytest.mark.parametrize("case", V["invalid"], ids=lambda c: c["what"])
def test_verify_invalid_vectors(case):
    with pytest.raises(tokens.TokenError) as err:
        tokens.verify(case["token"], SECRETS, now=V["now"])
    assert err.value.category == case["error"]


def test_verify_requires_the_asked_prefix():
    resume = next(c for c in V["valid"] if c["prefix"] == "tg1r")["token"]
    with pytest.raises(tokens.TokenError) as err:
        tokens.verify(resume, SECRETS, now=V["now"], prefix="tg1")
    assert err.value.category == "malformed"


def test_claims_for_builds_protocol_order_and_fresh_jti():
    a = tokens.claims_for("alice", ["shop.>", "shop.>", "chat.lobby.*"], 60, now=1800000000)
    b = tokens.claims_for("alice", ["shop.>"], 60, now=1800000000)
    assert list(a) == ["jti", "sub", "allow", "iat", "exp"]
    assert a["allow"] == ["shop.>", "chat.lobby.*"], "duplicates removed, order kept"
    assert a["exp"] == 1800000060
    assert re.fullmatch(r"[0-9a-f]{32}", a["jti"]) and a["jti"] != b["jti"]


@pytest.mark.parametrize("ttl", [0, -1, 3601, 1.5, True, "60"])
def test_claims_for_rejects_bad_ttl(ttl):
    with pytest.raises(ValueError):
        tokens.claims_for("alice", [], ttl)


def test_claims_for_rejects_bad_patterns_and_too_many():
    with pytest.raises(ValueError):
        tokens.claims_for("alice", ["a.>.b"], 60)
    with pytest.raises(ValueError):
        tokens.claims_for("alice", [f"p{i}" for i in range(65)], 60)
    assert len(tokens.claims_for("alice", [f"p{i}" for i in range(64)], 60)["allow"]) == 64


def test_signed_claims_are_compact_utf8_json():
    claims = tokens.claims_for("zoë", ["a"], 60, now=1800000000, jti="0" * 32)
    token = tokens.sign(claims, V["secret"])
    body = token_format._b64decode(token.split(".")[1]).decode("utf-8")
    assert body == json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
    assert tokens.verify(token, [V["secret"]], now=1800000000)["sub"] == "zoë"


def test_user_sub():
    from django.contrib.auth.models import AnonymousUser

    class U:
        pk = 7
        is_authenticated = True

    assert tokens.user_sub(None) == ""
    assert tokens.user_sub(AnonymousUser()) == ""
    assert tokens.user_sub("bob") == "bob"
    assert tokens.user_sub(U()) == "7"


def test_mint_without_registration_is_a_valid_token(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False, "TOKEN_TTL": 30}
    token = tokens.mint("carol", allow=["chat.lobby.*"])
    claims = tokens.verify(token, [settings.TELEGRAPHY["SECRET"]])
    assert claims["sub"] == "carol" and claims["allow"] == ["chat.lobby.*"]
    assert claims["exp"] - claims["iat"] == 30


def test_mint_with_nats_down_raises_registration_error_fast():
    import time

    start = time.monotonic()
    with pytest.raises(tokens.TokenRegistrationError):
        tokens.mint("carol", allow=["a"], timeout=2.0)
    assert time.monotonic() - start < 2.6


def test_info_claim_is_a_small_object_and_comes_last():
    claims = tokens.claims_for("alice", ["a"], 60, now=1800000000, info={"name": "Alice"})
    assert list(claims) == ["jti", "sub", "allow", "iat", "exp", "info"]
    assert tokens.verify(tokens.sign(claims, V["secret"]), [V["secret"]], now=1800000000)["info"] == {"name": "Alice"}
    # {"n":"..."} is 8 bytes around the string: 248 characters make 256 bytes, one more is too many.
    tokens.check_info({"n": "x" * (tokens.MAX_INFO_BYTES - 8)})
    for bad in [{"n": "x" * (tokens.MAX_INFO_BYTES - 7)}, {"n": "é" * 125}, "Alice", ["a"], {"n": float("nan")}]:
        with pytest.raises(ValueError):
            tokens.claims_for("alice", ["a"], 60, info=bad)


def name_info(user):
    """A TOKEN_INFO hook for the tests: the display name."""
    return {"name": str(user).title()}


def test_token_info_setting_gives_page_tokens_their_presence_info(settings):
    from django.contrib.auth.models import AnonymousUser, User

    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False, "TOKEN_INFO": f"{__name__}.name_info"}
    alice = User(pk=7, username="alice")
    claims = tokens.verify(tokens.mint(alice, allow=["chat.>"]), [settings.TELEGRAPHY["SECRET"]])
    assert claims["info"] == {"name": "Alice"}
    # An explicit info wins; anonymous tokens get none; a hook returning None adds none.
    explicit = tokens.verify(tokens.mint(alice, allow=["chat.>"], info={"name": "A."}), [settings.TELEGRAPHY["SECRET"]])
    assert explicit["info"] == {"name": "A."}
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "ANONYMOUS_TOKENS": True}
    assert "info" not in tokens.verify(tokens.mint(AnonymousUser(), allow=["chat.>"]), [settings.TELEGRAPHY["SECRET"]])
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "TOKEN_INFO": lambda user: None}
    assert "info" not in tokens.verify(tokens.mint(alice, allow=["chat.>"]), [settings.TELEGRAPHY["SECRET"]])
    # What the hook returns is checked like any info: too large is refused, not sent.
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "TOKEN_INFO": lambda user: {"n": "x" * 300}}
    with pytest.raises(ValueError):
        tokens.mint(alice, allow=["chat.>"])
