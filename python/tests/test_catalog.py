"""The event catalog without NATS: the shared vectors (proto/vectors/catalog.json), the entry JSON Schema, the
entries of the test app's events and the schemas of their data checked against real payloads."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from pathlib import Path
from typing import Literal, Optional, TypedDict

import pytest
from django.core.files.base import ContentFile
from jsonschema import Draft202012Validator, FormatChecker

from telegraphy import BaseEvent, catalog
from telegraphy.events import registered, unregister
from telegraphy.publisher import encode_data
from tests.testapp.events import BookEvents, ChatMessage
from tests.testapp.models import Author, Book, Tag

from .helpers import REPO, load_vectors

VECTORS = load_vectors("catalog.json")
CONSTANTS = json.loads((REPO / "proto" / "constants.json").read_text(encoding="utf-8"))
ENTRY_SCHEMA = Draft202012Validator(
    json.loads((REPO / "proto" / "schema" / "catalog-entry.schema.json").read_text(encoding="utf-8")))


def value_of(case: dict) -> bytes:
    if "value" in case:
        return case["value"].encode()
    entry = dict(case["entry"])
    if "description_chars" in case:
        entry["description"] = "x" * case["description_chars"]
    return catalog.encode_entry(entry)


def test_constants_agree():
    c = VECTORS["constants"]  # joins constants.json with the gateway's implementation (PROTOCOL section 12)
    assert (catalog.BUCKET, catalog.FORMAT, catalog.MAX_ENTRY_BYTES, catalog.MAX_PATTERNS,
            catalog.MAX_DESCRIPTION_CHARS) == (c["bucket"]["name"], c["format"], c["max_entry_bytes"],
                                               c["max_patterns"], c["max_description_chars"])
    # The gateway sends unknown_event (strict mode): it is in error_codes, and the section's values are in
    # constants.json's catalog section, which the package's constants are generated from.
    assert set(c["reserved_error_codes"]) <= set(CONSTANTS["error_codes"])
    assert CONSTANTS["catalog"]["bucket"]["name"] == c["bucket"]["name"] == catalog.BUCKET
    assert CONSTANTS["catalog"]["mode"]["default"] == c["mode"]["default"]
    assert CONSTANTS["catalog"]["modes"] == c["mode"]["values"]


@pytest.mark.parametrize("case", VECTORS["overlap"], ids=lambda c: f"{c['a']}~{c['b']}")
def test_overlap_vectors(case):
    assert catalog.overlaps(case["a"], case["b"]) is case["overlap"]
    assert catalog.overlaps(case["b"], case["a"]) is case["overlap"]  # symmetric


def test_overlap_agrees_with_match_for_names():
    """A name overlaps a pattern exactly when the pattern matches it (the match vectors)."""
    from telegraphy import names

    cases = load_vectors("match.json")["cases"]
    for case in cases:
        assert catalog.overlaps(case["pattern"], case["name"]) is names.matches(case["pattern"], case["name"]), case


@pytest.mark.parametrize("case", VECTORS["keys"], ids=lambda c: f"{c['owner']}/{c['name']}")
def test_key_vectors(case):
    if case["key"] is None:
        with pytest.raises(ValueError):
            catalog.entry_key(case["owner"], case["name"])
    else:
        assert catalog.entry_key(case["owner"], case["name"]) == case["key"]


@pytest.mark.parametrize("case", VECTORS["entries"]["valid"], ids=lambda c: c["key"])
def test_valid_entry_vectors(case):
    assert catalog.check_entry(value_of(case), case["key"]) == case["entry"]
    ENTRY_SCHEMA.validate(case["entry"])


@pytest.mark.parametrize("case", VECTORS["entries"]["invalid"], ids=lambda c: f"{c['reason']}:{c['key']}")
def test_invalid_entry_vectors(case):
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.check_entry(value_of(case), case["key"])
    assert caught.value.reason == case["reason"]
    if case["reason"] == "invalid" and case.get("schema_can_tell", True):  # what the JSON Schema can say, it says
        assert not ENTRY_SCHEMA.is_valid(json.loads(value_of(case))), case


def test_other_format_is_left_alone():
    for case in VECTORS["entries"]["other_format"]:
        assert catalog.check_entry(value_of(case), case["key"]) is None


def test_size_is_checked_before_parsing():
    """Over the bound, even bytes that are not JSON at all are refused as too_big, not parsed."""
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.check_entry(b"\xff" * (catalog.MAX_ENTRY_BYTES + 1))
    assert caught.value.reason == "too_big"


@pytest.mark.parametrize("case", VECTORS["sync"], ids=lambda c: c["comment"][:40])
def test_sync_plan_vectors(case):
    def raw(value):
        return value.encode() if isinstance(value, str) else catalog.encode_entry(value)

    mine = {k: catalog.encode_entry(v) for k, v in case["mine"].items()}
    existing = {k: raw(v) for k, v in case["existing"].items()}
    assert catalog.plan_sync(case["owner"], case["generation"], mine, existing) == case["plan"]


def listed(allow: list[str], event: str | None, entries: dict) -> list[str]:
    """The events frame rule of section 12, as the gateway implements it."""
    return [key for key, entry in sorted(entries.items())
            if any(catalog.overlaps(p, a) for p in entry["patterns"] for a in allow)
            and (event is None or any(catalog.overlaps(p, event) for p in entry["patterns"]))]


@pytest.mark.parametrize("case", VECTORS["listing"], ids=lambda c: c["comment"][:40])
def test_listing_vectors(case):
    assert listed(case["allow"], case["event"], case["entries"]) == case["listed"]


@pytest.mark.parametrize("case", VECTORS["strict"], ids=lambda c: c["subscribe"])
def test_strict_vectors(case):
    known = any(catalog.overlaps(case["subscribe"], p) for e in case["entries"].values() for p in e["patterns"])
    assert ("subscribed" if known else "unknown_event") == case["result"]


# ----------------------------------------------------------------------- the test app's entries


def test_entries_of_the_test_app():
    built = catalog.build("tests-owner", 42)
    assert built.problems == []
    assert len(built.entries) == len(registered())
    book = built.entries["tests-owner.testapp.book.=.="]
    assert book["name"] == "testapp.book.{action}.{key}"
    assert book["patterns"] == ["testapp.book.created.*", "testapp.book.updated.*", "testapp.book.deleted.*",
                                "testapp.book.present.*"]
    assert (book["kind"], book["operations"], book["presence"]) == ("model", ["create", "update", "delete"],
                                                                    "testapp.book.present.{key}")
    assert (book["owner"], book["generation"], book["version"], book["format"]) == ("tests-owner", 42, 1, 1)
    assert "secret_note" not in book["data"]["properties"]  # exclude is honoured
    tag = built.entries["tests-owner.testapp.tag.=.="]
    assert tag["operations"] == ["create", "delete"]
    assert tag["patterns"] == ["testapp.tag.created.*", "testapp.tag.deleted.*", "testapp.tag.present.*"]
    notes = built.entries["tests-owner.notes.=.=.="]
    assert notes["name"] == "notes.{owner_id}.{action}.{key}"
    assert notes["description"].startswith("Per-owner stream")  # the class docstring
    assert set(notes["data"]["properties"]) == {"pk", "text"}
    chat = built.entries["tests-owner.chat.=.message"]
    assert (chat["kind"], chat["patterns"], chat["operations"], chat["presence"], chat["data"]) == (
        "custom", ["chat.*.message"], [], "chat.{room}.message", {})
    for key, entry in built.entries.items():
        ENTRY_SCHEMA.validate(entry)
        assert catalog.check_entry(catalog.encode_entry(entry), key) == entry
        Draft202012Validator.check_schema(entry["data"])


def test_every_event_name_matches_a_pattern_of_its_entry(db):
    """The patterns cover what the classes really publish (and their presence channels)."""
    built = catalog.build("o", 1)
    book_entry = built.entries["o.testapp.book.=.="]
    book = Book.objects.create(title="t", author=Author.objects.create(name="a"), price=decimal.Decimal("1.50"))
    event = next(e for e in registered() if isinstance(e, BookEvents))
    from telegraphy import names

    for name in [event.event_name(book, op) for op in ("create", "update", "delete")] + [event.presence_channel(book)]:
        assert any(names.matches(p, name) for p in book_entry["patterns"]), name
    assert any(names.matches(p, ChatMessage.event_name(room="lobby"))
               for p in built.entries["o.chat.=.message"]["patterns"])


def payload_validator(entry: dict) -> Draft202012Validator:
    return Draft202012Validator(entry["data"], format_checker=FormatChecker())


def test_model_schema_accepts_what_the_serialiser_writes(db, settings, tmp_path):
    """Decimal (as a string), datetime (ISO 8601), UUID, FK (the related pk), a file (URL, or null), nullable."""
    built = catalog.build("o", 1)
    schema = built.entries["o.testapp.book.=.="]["data"]
    props = schema["properties"]
    assert props["price"]["type"] == "string" and "pattern" in props["price"]
    assert props["published"]["type"] == ["string", "null"] and props["published"]["format"] == "date-time"
    assert props["author"]["type"] == "integer"  # the related pk
    assert props["ref"]["format"] == "uuid" and props["cover"]["type"] == ["string", "null"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(props)
    settings.MEDIA_ROOT = str(tmp_path)
    validator = payload_validator(built.entries["o.testapp.book.=.="])
    event = next(e for e in registered() if isinstance(e, BookEvents))
    author = Author.objects.create(name="a")
    rows = [
        Book.objects.create(title="t", author=author, price=decimal.Decimal("12.50")),
        Book.objects.create(title="u", author=author, price=decimal.Decimal("-3"), ref=uuid.uuid4(),
                            published=datetime.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)),
    ]
    rows[1].cover.save("c.txt", ContentFile(b"x"), save=True)
    for book in rows:
        book.refresh_from_db()
        data = json.loads(encode_data(event.to_dict(book)))
        validator.validate(data)
    wrong = json.loads(encode_data(event.to_dict(rows[0])))
    for field, value in (("price", 12.5), ("published", 5), ("author", "1"), ("title", None), ("ref", "no-uuid")):
        assert not validator.is_valid({**wrong, field: value}), field
    assert not validator.is_valid({**wrong, "secret_note": "x"})  # excluded fields are not there
    tag_validator = payload_validator(built.entries["o.testapp.tag.=.="])
    tag_validator.validate(json.loads(encode_data({"pk": "a b", "label": "a b"})))
    assert Tag  # the string pk of Tag is a string in the schema
    assert built.entries["o.testapp.tag.=.="]["data"]["properties"]["pk"]["type"] == "string"


def test_decimal_pattern_accepts_every_str_of_decimal():
    pattern = catalog.build("o", 1).entries["o.testapp.book.=.="]["data"]["properties"]["price"]
    validator = Draft202012Validator(pattern)
    for value in ("0", "12.50", "-3", "0E-8", "1E+2", "-0.001"):
        assert validator.is_valid(str(decimal.Decimal(value))), value
    assert not validator.is_valid("12,50") and not validator.is_valid("NaN")


class _Typed(TypedDict):
    text: str
    sent: datetime.datetime


@pytest.fixture
def custom_events():
    made = []

    def make(**attrs):
        cls = type(f"Tmp{len(made)}", (BaseEvent,), {"__module__": __name__, **attrs})
        made.append(cls)
        return cls

    yield make
    for cls in made:
        unregister(cls)


def test_custom_event_declares_schema_fields_or_version(custom_events):
    custom_events(name="typed.{room}.msg", fields={"text": str, "total": decimal.Decimal, "at": datetime.datetime,
                                                  "tags": list[str], "by": Optional[int],
                                                  "level": Literal["info", "warn"]},
                  version=3, __doc__="A typed message.")
    custom_events(name="td.msg", fields=_Typed)
    custom_events(name="raw.schema", schema={"type": "object", "properties": {"n": {"type": "integer"}}},
                  description="declared by hand")
    built = catalog.build("o", 1)
    typed = built.entries["o.typed.=.msg"]
    assert (typed["version"], typed["description"]) == (3, "A typed message.")
    validator = payload_validator(typed)
    good = {"text": "hi", "total": "1.50", "at": "2026-12-03T10:00:00Z", "tags": ["a"], "by": None, "level": "info"}
    validator.validate(good)
    assert not validator.is_valid({**good, "level": "debug"}) and not validator.is_valid({**good, "tags": [1]})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "text"})
    assert built.entries["o.td.msg"]["data"]["required"] == ["text", "sent"]
    assert built.entries["o.raw.schema"]["data"]["properties"]["n"] == {"type": "integer"}
    assert built.entries["o.raw.schema"]["description"] == "declared by hand"


def test_a_class_that_cannot_be_catalogued_is_a_problem_not_a_failure(custom_events):
    custom_events(name="bad.types", fields={"x": set})
    custom_events(name="bad.version", version=0)
    custom_events(name="chat.{other}.message")  # same key as ChatMessage
    built = catalog.build("o", 1)
    text = "\n".join(built.problems)
    assert "bad.types" not in " ".join(built.entries) and "no JSON Schema for the type" in text
    assert "version must be a positive integer" in text and "already declared" in text
    assert "o.chat.=.message" in built.entries and "o.testapp.book.=.=" in built.entries  # the others are there


def test_owner_and_generation_defaults(monkeypatch):
    monkeypatch.delenv(catalog.OWNER_ENV, raising=False)
    monkeypatch.delenv(catalog.GENERATION_ENV, raising=False)
    assert catalog.default_owner() == "django-tests"
    newest = max(int(Path(p).stat().st_mtime) for p in (REPO / "python/tests/testapp").glob("*.py"))
    assert catalog.default_generation() == newest  # the event classes' and models' sources
    monkeypatch.setenv(catalog.OWNER_ENV, "shop-eu")
    monkeypatch.setenv(catalog.GENERATION_ENV, "1733000000")
    assert (catalog.default_owner(), catalog.default_generation()) == ("shop-eu", 1733000000)
    monkeypatch.setenv(catalog.GENERATION_ENV, "soon")
    with pytest.raises(ValueError, match="GENERATION"):
        catalog.default_generation()
    with pytest.raises(ValueError, match="owner"):
        catalog.build("no.dots", 1)


def test_events_frames_follow_the_frame_schemas():
    """The frames of section 12 as proto/schema describes them (the events reply refers to the entry schema)."""
    from referencing import Registry, Resource

    schemas = {name: json.loads((REPO / "proto" / "schema" / f"{name}.schema.json").read_text(encoding="utf-8"))
               for name in ("client-frame", "server-frame", "catalog-entry")}
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values())
    server = Draft202012Validator(schemas["server-frame"], registry=registry)
    client = Draft202012Validator(schemas["client-frame"], registry=registry)
    listed = [{k: v for k, v in e.items() if k not in ("format", "owner", "generation")}
              for e in catalog.build("o", 1).entries.values()]
    reply = {"type": "events", "id": 5, "mode": "strict", "events": listed, "truncated": False}
    server.validate(reply)
    assert not server.is_valid({**reply, "events": [{**listed[0], "kind": "thing"}]})
    assert not server.is_valid({**reply, "mode": "lenient"})
    server.validate({"type": "error", "id": 2, "code": "unknown_event", "message": "no catalogued event matches"})
    client.validate({"type": "events", "id": 5})
    client.validate({"type": "events", "id": 6, "event": "shop.>"})
    assert not client.is_valid({"type": "events", "event": "shop..x"})
