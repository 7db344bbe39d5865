"""The action grants of PROTOCOL.md section 13 in tokens (claims, vectors, minting from event classes and RPC
handlers), the RPC registry's rules, and proto/constants.json's `actions` against the Django app."""

from __future__ import annotations

import json

import pytest

import telegraphy
from telegraphy import conf, tokens
from telegraphy.events import BaseEvent, unregister
from telegraphy.minting import publish_grants
from telegraphy.rpc import PROTOCOL_ERROR_CODES, LIFECYCLE_KINDS, MAX_MESSAGE_BYTES, handlers, rpc_methods
from telegraphy.rpc import unregister as unregister_rpc
from telegraphy.worker import HEADERS, MAX_REPLY_BYTES, QUEUE_GROUP, decode_sender, lifecycle_subject, rpc_subject

from .helpers import REPO, WsClient, load_vectors

V = load_vectors("tokens.json")
RPC = load_vectors("rpc.json")
CONSTANTS = json.loads((REPO / "proto" / "constants.json").read_text(encoding="utf-8"))
SECRETS = [V["secret"], V["secret2"]]


@pytest.mark.parametrize("case", V["valid_grants"], ids=lambda c: c["what"])
def test_grant_vectors_mint_byte_exact_and_verify(case):
    assert tokens.sign(case["claims"], V["secret"], prefix=case["prefix"]) == case["token"]
    claims = tokens.verify(case["token"], SECRETS, now=V["now"])
    assert claims == case["claims"] and list(claims) == list(case["claims"])


@pytest.mark.parametrize("case", V["invalid_grants"], ids=lambda c: c["what"])
def test_bad_grants_are_malformed(case):
    with pytest.raises(tokens.TokenError) as err:
        tokens.verify(case["token"], SECRETS, now=V["now"])
    assert err.value.category == case["error"]


def test_claims_for_puts_grants_last_in_protocol_order_and_omits_empty_ones():
    claims = tokens.claims_for("alice", ["chat.>"], 60, now=1800000000, jti="0" * 32, info={"name": "A"},
                               publish=["chat.*.message"], publish_ephemeral=[], rpc=["chat.send", "chat.send"])
    assert list(claims) == ["jti", "sub", "allow", "iat", "exp", "info", "publish", "rpc"]
    assert claims["rpc"] == ["chat.send"]
    assert list(tokens.claims_for("alice", ["a"], 60)) == ["jti", "sub", "allow", "iat", "exp"]  # as before issue 22
    with pytest.raises(ValueError):
        tokens.claims_for("alice", [], 60, rpc=["chat..send"])
    with pytest.raises(ValueError):
        tokens.claims_for("alice", [], 60, publish=[f"p{i}" for i in range(65)])
    with pytest.raises(ValueError):
        tokens.claims_for("alice", [], 60, publish="chat.lobby.typing")  # a string, not a list


@pytest.fixture
def registered_grants():
    # Defined here, not at module level: a class registers itself when defined, and one left registered would
    # show up in every later test's grants and catalog.
    class Typing(BaseEvent):
        name = "grants.{room}.typing"
        ephemeral = True

        def publish_patterns(self, user):
            return ["grants.*.typing"] if self.allowed(user) else []

    class Said(BaseEvent):
        name = "grants.{room}.said"

        def publish_patterns(self, user):
            return ["grants.lobby.said"] if self.allowed(user) else []

    @telegraphy.rpc("grants.send")
    def send(request):
        return None

    @telegraphy.rpc("grants.admin", allow=lambda user: getattr(user, "is_staff", False))
    async def admin(request):
        return None

    yield
    unregister_rpc("grants.send")
    unregister_rpc("grants.admin")
    unregister(Typing)
    unregister(Said)


@pytest.mark.django_db
def test_minting_grants_what_the_event_classes_and_handlers_allow(settings, registered_grants, django_user_model):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REGISTER_TOKENS": False}
    alice = django_user_model.objects.create_user("alice")
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    assert publish_grants(alice) == (["grants.lobby.said"], ["grants.*.typing"])
    assert publish_grants(None) == ([], [])
    claims = tokens.verify(tokens.mint(alice), [settings.TELEGRAPHY["SECRET"]])
    assert (claims["publish"], claims["publish_ephemeral"]) == (["grants.lobby.said"], ["grants.*.typing"])
    assert "grants.send" in claims["rpc"] and "grants.admin" not in claims["rpc"]
    assert "grants.admin" in tokens.verify(tokens.mint(staff), [settings.TELEGRAPHY["SECRET"]])["rpc"]
    anonymous = tokens.verify(tokens.mint(None), [settings.TELEGRAPHY["SECRET"]])
    assert not {"publish", "publish_ephemeral", "rpc"} & set(anonymous)
    explicit = tokens.verify(tokens.mint(alice, publish=[], publish_ephemeral=[], rpc=["grants.admin"]),
                             [settings.TELEGRAPHY["SECRET"]])
    assert (explicit.get("publish"), explicit["rpc"]) == (None, ["grants.admin"])


def test_a_registered_token_keeps_rev_before_info_and_the_grants(settings):
    from telegraphy.minting import _sign_registered

    claims = tokens.claims_for("alice", ["a"], 60, info={"n": 1}, rpc=["m"])
    signed = tokens.verify(_sign_registered(claims, 7), [settings.TELEGRAPHY["SECRET"]])
    assert list(signed) == ["jti", "sub", "allow", "iat", "exp", "rev", "info", "rpc"]


def test_rpc_registry_rules():
    with pytest.raises(ValueError):
        telegraphy.rpc("chat.*")  # a method is a name, never a pattern

    @telegraphy.rpc("grants.once")
    def first(request):
        return 1

    try:
        with pytest.raises(ValueError, match="already has a handler"):
            @telegraphy.rpc("grants.once")
            def second(request):
                return 2
        assert handlers()["grants.once"].func is first
        assert "grants.once" not in rpc_methods(None)  # the default permission: authenticated users
    finally:
        unregister_rpc("grants.once")


@pytest.mark.parametrize("code", ["", "NotFound", "9lives", "a" * 65, "forbidden", "internal", "unavailable",
                                  "timeout", "bad-code", None])
def test_rpc_error_refuses_codes_a_client_could_not_tell_from_the_protocols(code):
    with pytest.raises(ValueError):
        telegraphy.RpcError(code, "x")


def test_rpc_error_message_is_cut_to_256_bytes_at_a_character_boundary():
    err = telegraphy.RpcError("too_long", "é" * 200)
    assert len(err.message.encode("utf-8")) <= MAX_MESSAGE_BYTES and err.message == "é" * 128
    assert err.code == "too_long" and isinstance(err, telegraphy.TelegraphyError)


def test_sender_headers_of_the_vectors_decode():
    sender = RPC["sender"]
    assert decode_sender(sender["headers"]) == {"sub": sender["sub"], "client": sender["client"],
                                                "session": sender["session"], "info": sender["info"],
                                                "node": RPC["node"]}
    assert decode_sender(sender["anonymous_headers"])["sub"] == ""
    for bad in ({"Telegraphy-User": "%%%"}, {"Telegraphy-User": "YQ="}, {"Telegraphy-Info": b64("[1]")}):
        with pytest.raises(ValueError):
            decode_sender(bad)


def b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_subjects_of_the_vectors():
    for case in RPC["rpc_requests"]:
        method = json.loads(case["frame"])["method"]
        assert rpc_subject(method, case.get("prefix", RPC["prefix"])) == case["subject"]
    for case in RPC["lifecycle"]:
        assert lifecycle_subject(case["kind"], RPC["prefix"]) == case["subject"]
        assert json.loads(case["payload"])["kind"] == case["kind"]


def test_constants_json_actions_match_the_django_app():
    a = CONSTANTS["actions"]
    assert tuple(a["grant_claims"]) == tokens.GRANT_CLAIMS and a["max_grant_patterns"] == tokens.MAX_GRANT
    assert rpc_subject("m", "p") == f"p{a['rpc_suffix']}.m"
    assert lifecycle_subject("k", "p") == f"p{a['lifecycle_suffix']}.k"
    assert a["queue_group"] == QUEUE_GROUP and a["headers"] == HEADERS
    assert tuple(a["lifecycle_kinds"]) == LIFECYCLE_KINDS
    assert a["rpc_error_message_max_bytes"] == MAX_MESSAGE_BYTES
    assert a["limits"]["rpc_max_reply_bytes"]["default"] == MAX_REPLY_BYTES
    assert PROTOCOL_ERROR_CODES == set(CONSTANTS["error_codes"]) | set(CONSTANTS["action_error_codes"])
    assert not {"publish", "publish_ephemeral", "rpc"} & set(conf.DEFAULTS)  # no Django setting: grants come from code


def test_a_gateway_that_predates_section_13_accepts_tokens_with_grants(gateway, nats_settings):
    """Old gateways ignore unknown claims (section 4): a token with grants still connects."""
    client = WsClient(gateway["ws"], tokens.mint("zed", allow=["chat.>"], publish_ephemeral=["chat.*.typing"],
                                                 rpc=["chat.send"]))
    try:
        assert client.connected["type"] == "connected", client.connected
        assert client.subscribe("chat.lobby.*")["type"] == "subscribed"
    finally:
        client.close()
