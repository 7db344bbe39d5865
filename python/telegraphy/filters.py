"""Subscription filters (proto/PROTOCOL.md section 8) checked in Python before a page gets them.

A browser may ask the gateway for only the events whose ``data`` passes Django-style lookups; the same
dict also selects rows with the ORM. A view that hands a filter to a page checks it here first, so a mistake
is a Python exception instead of a ``bad_request`` in the browser:

    from telegraphy.filters import check
    spec = check(filter={"owner": request.user.pk, "price__gt": Decimal("10")})
    # {"filter": {"owner": 7, "price__gt": "10"}}: JSON as the gateway reads it, for the page:
    # tg.subscribe(pattern, handler, {name: "tracker", ...spec})

Values are converted with Django's JSON rules, as event data is (a Decimal becomes its string, which the
gateway compares as a number with numbers and decimal strings; datetimes ISO 8601; tuples lists). Checked as
the gateway does: key shapes, value shapes per lookup, the limits (4096 bytes of compact JSON for filter and
exclude together, 100 ``in`` values, 256-byte regex, and the two a gateway may change, read from
``TELEGRAPHY["FILTER_LIMITS"]``: ``max_filter_conditions``, default 16, and ``max_regex_conditions``, default 4,
the gateway's ``limits.*`` keys of the same names). Not checked: regex syntax (the gateway reads RE2, which
Python's ``re`` does not: it answers ``bad_request`` for a pattern it refuses).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import constants
from .conf import DEFAULT_FILTER_LIMITS, telegraphy_settings
from .exceptions import FilterError

__all__ = ["LOOKUPS", "DEFAULT_LIMITS", "FilterError", "check", "limits"]

LOOKUPS = frozenset(constants.FILTERS_LOOKUPS)
TEXT_LOOKUPS = frozenset({"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"})
# TELEGRAPHY["FILTER_LIMITS"]: the limits a gateway may change, by its setting names (proto/constants.json).
DEFAULT_LIMITS = DEFAULT_FILTER_LIMITS
MAX_CONDITIONS = DEFAULT_LIMITS["max_filter_conditions"]  # the protocol's default of limits.max_filter_conditions
MAX_REGEX_CONDITIONS = DEFAULT_LIMITS["max_regex_conditions"]  # ... and of limits.max_regex_conditions
MAX_BYTES = constants.FILTERS_LIMITS_MAX_BYTES
MAX_IN_VALUES = constants.FILTERS_LIMITS_MAX_IN_VALUES
MAX_REGEX_BYTES = constants.FILTERS_LIMITS_MAX_REGEX_BYTES


def limits() -> dict[str, int]:
    """The configurable limits ``check`` applies: ``TELEGRAPHY["FILTER_LIMITS"]`` over :data:`DEFAULT_LIMITS`
    (set them to the gateway's ``limits.max_filter_conditions`` and ``limits.max_regex_conditions``)."""
    return {**DEFAULT_LIMITS, **telegraphy_settings.FILTER_LIMITS}


def check(filter: Mapping[str, Any] | None = None, exclude: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """``{"filter": {...}, "exclude": {...}}`` as JSON-ready dicts, leaving out a side that is None or empty.

    Raises FilterError where the gateway would answer ``bad_request`` (with the limits of :func:`limits`).
    """
    sides = {what: _as_json(what, conditions) for what, conditions in (("filter", filter), ("exclude", exclude))
             if conditions is not None}
    size = sum(len(text.encode("utf-8")) for _, text in sides.values())
    if size > MAX_BYTES:
        raise FilterError("too_big", f"filter and exclude are {size} bytes of JSON, more than {MAX_BYTES}")
    bounds = limits()
    max_conditions, max_regexes = bounds["max_filter_conditions"], bounds["max_regex_conditions"]
    if sum(len(conditions) for conditions, _ in sides.values()) > max_conditions:
        raise FilterError("too_many_conditions", f"more than {max_conditions} filter conditions")
    regexes = 0
    for what, (conditions, _) in sides.items():
        for key, value in conditions.items():
            regexes += _check_condition(what, key, value) in ("regex", "iregex")
    # Checked after every condition, as the gateway does (before it compiles anything).
    if regexes > max_regexes:
        raise FilterError("too_many_regexes", f"more than {max_regexes} regex conditions")
    return {what: conditions for what, (conditions, _) in sides.items() if conditions}


def _as_json(what: str, conditions: Any) -> tuple[dict, str]:
    """The conditions as the gateway will read them, and their compact JSON text (what its size limit counts)."""
    from django.core.serializers.json import DjangoJSONEncoder

    if not isinstance(conditions, Mapping):
        raise FilterError("not_object", f'{what} must be a dict of "field__lookup": value')
    for key in conditions:
        if not isinstance(key, str):
            raise FilterError("bad_key", f"{what} key {key!r}: keys are strings")
    try:
        text = json.dumps(conditions, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FilterError("bad_value", f"{what}: not JSON: {exc}") from exc
    return json.loads(text), text


def _is_ordered(value: Any) -> bool:
    """gt..lte and range bounds: a number or a string (a decimal string compares as a number)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)  # JSON: floats are finite


def _check_condition(what: str, key: str, value: Any) -> str:
    """Raises FilterError for a condition the gateway refuses; returns its lookup."""
    parts = key.split("__")
    if any(part == "" for part in parts):
        raise FilterError("bad_key", f"{what} key {key!r}: empty field name")
    lookup = parts[-1] if len(parts) > 1 and parts[-1] in LOOKUPS else "exact"

    def bad(expected: str) -> FilterError:
        return FilterError("bad_value", f"{what} key {key!r}: {lookup} takes {expected}")

    if lookup == "exact":
        return lookup
    if lookup == "iexact":
        if value is not None and not isinstance(value, str):
            raise bad("a string or None")
    elif lookup in TEXT_LOOKUPS:
        if not isinstance(value, str):
            raise bad("a string")
    elif lookup == "in":
        if not isinstance(value, list):
            raise bad("a list")
        if len(value) > MAX_IN_VALUES:
            raise FilterError("too_many_values", f"{what} key {key!r}: in takes at most {MAX_IN_VALUES} values")
    elif lookup in ("gt", "gte", "lt", "lte"):
        if not _is_ordered(value):
            raise bad("a number or a string")
    elif lookup == "range":
        if not (isinstance(value, list) and len(value) == 2 and all(_is_ordered(v) for v in value)):
            raise bad("[low, high] of numbers or strings")
    elif lookup == "isnull":
        if not isinstance(value, bool):
            raise bad("True or False")
    else:  # regex, iregex
        if not isinstance(value, str):
            raise bad("a string")
        if len(value.encode("utf-8")) > MAX_REGEX_BYTES:
            raise FilterError("regex_too_long", f"{what} key {key!r}: regex longer than {MAX_REGEX_BYTES} bytes")
    return lookup
