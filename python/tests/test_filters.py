"""telegraphy.filters.check against proto/vectors/filters.json: it refuses what the gateway refuses (with the
same kind) and accepts every filter the cases use, unchanged."""

import datetime
import uuid
from decimal import Decimal

import pytest

from telegraphy.filters import FilterError, check

from .helpers import load_vectors

VECTORS = load_vectors("filters.json")

# Error kinds that need the gateway's regex engine (RE2): Python's re accepts look-around and back-references
# and lacks \p{...}, so the helper leaves regex syntax to the gateway.
NEEDS_RE2 = {"bad_regex": "regex syntax is RE2's, checked by the gateway only (Python's re reads another syntax)"}


def sides(vector: dict) -> dict:
    return {what: vector[what] for what in ("filter", "exclude") if what in vector}


@pytest.mark.parametrize("vector", VECTORS["errors"], ids=lambda v: v.get("note") or v["kind"])
def test_refuses_what_the_gateway_refuses(vector):
    if vector["kind"] in NEEDS_RE2:
        pytest.skip(NEEDS_RE2[vector["kind"]])
    given = sides(vector)
    if None in given.values():
        # On the wire a present null is refused; in Python None is the keyword's default: absent.
        present = {what: value for what, value in given.items() if value is not None}
        assert check(**given) == check(**present)
        return
    with pytest.raises(FilterError) as refused:
        check(**given)
    assert refused.value.kind == vector["kind"], str(refused.value)


@pytest.mark.parametrize("vector", VECTORS["cases"], ids=lambda v: str(sides(v))[:80])
def test_accepts_every_filter_of_the_cases_unchanged(vector):
    given = sides(vector)
    assert check(**given) == {what: value for what, value in given.items() if value}


def test_python_values_become_json_as_event_data_does():
    when = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.timezone.utc)
    ref = uuid.UUID(int=1)
    spec = check(
        filter={"price__gt": Decimal("10.50"), "created__gte": when, "status__in": ("paid", "sent"), "ref": ref},
        exclude={},
    )
    assert spec == {
        "filter": {"price__gt": "10.50", "created__gte": "2026-11-26T10:00:00Z", "status__in": ["paid", "sent"], "ref": str(ref)}
    }
    assert check() == {}


@pytest.mark.parametrize(
    "filter, kind",
    [
        ({1: "a"}, "bad_key"),
        ({"a": object()}, "bad_value"),
        ({"a__gt": float("nan")}, "bad_value"),
        ({"a__gt": True}, "bad_value"),
        ({"a__range": (1, Decimal("2"))}, None),
        ({"a__in": {"x"}}, "bad_value"),
        ({"a__regex": "é" * 128}, None),
        ({"a__regex": "é" * 128 + "x"}, "regex_too_long"),
        ({"k%d" % i: i for i in range(16)}, None),
    ],
)
def test_python_side_shapes(filter, kind):
    if kind is None:
        assert check(filter=filter)["filter"]
    else:
        with pytest.raises(FilterError) as refused:
            check(filter=filter)
        assert refused.value.kind == kind
