"""proto/vectors/rpc.json against the frame schemas (proto/schema/*.schema.json) and against itself: every
frame a gateway sends or accepts for sections 13-15 is what the schemas say, and the subjects, headers and
payloads of the vectors follow the rules of the text."""

from __future__ import annotations

import base64
import json

import pytest

from telegraphy import names

from .helpers import REPO, load_vectors

jsonschema = pytest.importorskip("jsonschema")

RPC = load_vectors("rpc.json")
SCHEMAS = REPO / "proto" / "schema"


def validator(name: str):
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


CLIENT = validator("client-frame.schema.json")
SERVER = validator("server-frame.schema.json")


@pytest.mark.parametrize("case", RPC["client_frames"], ids=lambda c: c["what"])
def test_client_frames_follow_the_schema(case):
    valid = CLIENT.is_valid(case["frame"])
    # Bad frames are refused by the schema; size limits are settings, not schema rules.
    assert valid == (not case.get("bad_frame", False)), case["what"]


def server_frames():
    for case in RPC["rpc_replies"]:
        yield case["what"], case["frame"]
    for case in RPC["publish"]:
        yield case["what"], case["event_frame"]
        if "reply" in case:
            yield case["what"] + " (reply)", case["reply"]


@pytest.mark.parametrize("what,frame", list(server_frames()), ids=lambda v: v if isinstance(v, str) else "")
def test_server_frames_follow_the_schema(what, frame):
    errors = [e.message for e in SERVER.iter_errors(json.loads(frame))]
    assert errors == [], what


def test_an_error_frame_with_a_code_that_is_not_a_code_is_refused():
    assert not SERVER.is_valid({"type": "error", "id": 7, "code": "Not Found", "message": "x"})
    assert SERVER.is_valid({"type": "error", "id": 7, "code": "not_found", "message": "x"})


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_publish_vectors_follow_the_rules():
    sender = RPC["sender"]
    for case in RPC["publish"]:
        if "frame" not in case:  # a NATS message from elsewhere: no `from` unless its headers are right
            assert "from" not in json.loads(case["event_frame"])
            continue
        frame = json.loads(case["frame"])
        event = frame["event"]
        assert names.is_valid_name(event)
        live = RPC["live_prefix"] if case["kind"] == "ephemeral" else RPC["prefix"]
        assert case["subject_history_on"] == f"{live}.{event}"
        assert case["subject_history_off"] == f"{RPC['prefix']}.{event}"
        assert json.loads(case["payload"]) == frame.get("data")
        sent = json.loads(case["event_frame"])
        user = b64decode(case["headers"]["Telegraphy-User"]).decode() if "Telegraphy-User" in case["headers"] else ""
        assert sent["from"] == {"user": user, "client": sender["client"]}
        assert list(sent) == ["type", "sub", "name", "data", "from"]  # `from` right after `data`
        assert names.matches(sent["sub"], event)


def test_rpc_request_vectors_carry_the_data_as_sent():
    for case in RPC["rpc_requests"]:
        frame = json.loads(case["frame"])
        assert json.loads(case["payload"]) == frame.get("data")
        prefix = case.get("prefix", RPC["prefix"])
        assert case["subject"] == f"{prefix}_rpc.{frame['method']}"


def test_lifecycle_payloads_keep_the_field_order():
    common = ["kind", "node", "session", "client", "user"]
    extra = {"connect": ["resumed"], "disconnect": ["code", "reason"], "subscribe": ["event", "sub"],
             "unsubscribe": ["event", "sub"]}
    for case in RPC["lifecycle"]:
        payload = json.loads(case["payload"])
        keys = [k for k in payload if k != "info"]
        assert keys == common + extra[case["kind"]] + ["time"], case["kind"]
        if "info" in payload:
            assert list(payload).index("info") == len(common)
        assert json.dumps(payload, separators=(",", ":"), ensure_ascii=False) == case["payload"]  # compact


def granted(grant: list[str], name: str) -> bool:
    return any(names.contains(pattern, name) for pattern in grant)


@pytest.mark.parametrize("case", RPC["grants"], ids=lambda c: c["what"])
def test_grant_vectors_follow_containment(case):
    """Section 13's rule: ephemeral when publish_ephemeral contains the name, else stored when publish does;
    an rpc method when an rpc entry contains it."""
    if "method" in case:
        assert ("allowed" if granted(case["rpc"], case["method"]) else "forbidden") == case["result"]
        return
    event = case["event"]
    result = ("ephemeral" if granted(case["publish_ephemeral"], event)
              else "stored" if granted(case["publish"], event) else "forbidden")
    assert result == case["result"]
