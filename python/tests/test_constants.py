"""proto/constants.json (PROTOCOL.md section 9) against the Django app's constants and defaults, and the filter
limits ``filters.check`` reads from ``TELEGRAPHY["FILTER_LIMITS"]``."""

import json
import re

import pytest

from telegraphy import conf, filters, names, revocations, tokens
from telegraphy.checks import check_settings
from telegraphy.filters import FilterError, check

from .helpers import REPO, SECRET

CONSTANTS = json.loads((REPO / "proto" / "constants.json").read_text(encoding="utf-8"))


def class_chars(spec: str) -> set[str]:
    """The characters of a class such as ``A-Za-z0-9_-``."""
    return {c for c in map(chr, range(0x20, 0x7F)) if re.fullmatch(f"[{spec}]", c)}


def test_class_chars_reads_ranges_and_a_final_dash():
    assert class_chars("a-c_-") == {"a", "b", "c", "_", "-"}


def test_names():
    n = CONSTANTS["names"]
    assert (names.MAX_TOKENS, names.MAX_BYTES, names.MAX_PLAIN_KEY) == (
        n["max_tokens"], n["max_bytes"], n["max_plain_key_chars"]
    )
    allowed = class_chars(n["token_chars"])
    for c in map(chr, range(0x20, 0x7F)):
        assert names.is_valid_token(c) == (c in allowed), repr(c)
    assert names.is_valid_pattern(f"a.{n['single_wildcard']}.b")
    assert names.is_valid_pattern(f"a.{n['tail_wildcard']}")
    assert not names.is_valid_pattern(f"a.{n['tail_wildcard']}.b")
    longest = "k" * n["max_plain_key_chars"]
    assert names.key_token(longest) == longest
    assert names.key_token(longest + "k").startswith("-")


def test_filter_lookups_and_default_limits():
    f = CONSTANTS["filters"]
    assert filters.LOOKUPS == set(f["lookups"]) and len(f["lookups"]) == len(set(f["lookups"]))
    limits = {key: limit["default"] for key, limit in f["limits"].items()}
    assert (filters.MAX_BYTES, filters.MAX_IN_VALUES, filters.MAX_REGEX_BYTES) == (
        limits["max_bytes"], limits["max_in_values"], limits["max_regex_bytes"]
    )
    # The configurable ones, under the gateway's setting names.
    configurable = {
        limit["gateway_setting"].removeprefix("limits."): limit["default"]
        for limit in f["limits"].values() if "gateway_setting" in limit
    }
    assert filters.DEFAULT_LIMITS == configurable
    assert conf.DEFAULTS["FILTER_LIMITS"] == configurable
    assert (filters.MAX_CONDITIONS, filters.MAX_REGEX_CONDITIONS) == (
        limits["max_conditions"], limits["max_regex_conditions"]
    )


def test_tokens():
    t = CONSTANTS["tokens"]
    assert (tokens.CONNECT_PREFIX, tokens.RESUME_PREFIX) == (t["connect_prefix"], t["resume_prefix"])
    assert (tokens.MAX_TOKEN_BYTES, tokens.MAX_ALLOW, tokens.CLOCK_SKEW, tokens.MAX_TTL, tokens.MIN_SECRET_BYTES) == (
        t["max_bytes"], t["max_allow"], t["clock_skew"], t["max_ttl"], t["min_secret_bytes"]
    )
    assert len(tokens.claims_for("u", [], 1)["jti"]) == t["jti_hex_chars"]
    assert tokens.MAX_INFO_BYTES == t["max_info_bytes"]


def test_buckets():
    b = CONSTANTS["buckets"]
    assert (conf.DEFAULTS["TOKENS_BUCKET"], conf.DEFAULTS["REVOCATIONS_BUCKET"]) == (
        b["tokens"]["name"], b["revocations"]["name"]
    )
    # The tokens bucket's max_age is the longest TTL (the publisher creates it with MAX_TTL).
    assert (tokens.MAX_TTL, revocations.REVOCATIONS_MAX_AGE) == (b["tokens"]["max_age"], b["revocations"]["max_age"])


def test_presence():
    assert conf.DEFAULTS["PRESENCE_BUCKET"] == CONSTANTS["presence"]["bucket"]["name"]


def conditions(n: int, lookup: str = "exact") -> dict:
    return {f"f{i}__{lookup}": "x" for i in range(n)}


def test_check_uses_the_protocol_limits_by_default(settings):
    settings.TELEGRAPHY = {"SECRET": SECRET}
    limits = CONSTANTS["filters"]["limits"]
    most, regexes = limits["max_conditions"]["default"], limits["max_regex_conditions"]["default"]
    assert filters.limits() == {"max_filter_conditions": most, "max_regex_conditions": regexes}
    check(filter=conditions(most))
    with pytest.raises(FilterError, match=f"more than {most} filter conditions") as refused:
        check(filter=conditions(most + 1))
    assert refused.value.kind == "too_many_conditions"
    check(filter=conditions(regexes, "regex"))
    with pytest.raises(FilterError) as refused:
        check(filter=conditions(regexes + 1, "regex"))
    assert refused.value.kind == "too_many_regexes"


def test_check_follows_filter_limits_key_by_key(settings):
    settings.TELEGRAPHY = {"SECRET": SECRET, "FILTER_LIMITS": {"max_filter_conditions": 20}}
    assert filters.limits() == {"max_filter_conditions": 20, "max_regex_conditions": 4}
    check(filter=conditions(10), exclude=conditions(10))
    with pytest.raises(FilterError, match="more than 20 filter conditions"):
        check(filter=conditions(21))
    settings.TELEGRAPHY = {"SECRET": SECRET, "FILTER_LIMITS": {"max_regex_conditions": 1}}
    check(filter=conditions(1, "iregex"))
    with pytest.raises(FilterError, match="more than 1 regex conditions") as refused:
        check(filter=conditions(1, "iregex"), exclude=conditions(1, "regex"))
    assert refused.value.kind == "too_many_regexes"


def ids(settings, limits):
    settings.TELEGRAPHY = {"SECRET": SECRET, "FILTER_LIMITS": limits}
    return [m.id for m in check_settings()]


def test_filter_limits_check(settings):
    assert ids(settings, {}) == []
    assert ids(settings, {"max_filter_conditions": 0, "max_regex_conditions": 1}) == []
    for bad in (None, [], {"max_conditions": 16}, {"max_regex_conditions": 0}, {"max_filter_conditions": -1},
                {"max_filter_conditions": True}, {"max_filter_conditions": "16"}):
        assert ids(settings, bad) == ["telegraphy.E013"], bad
    assert ids(settings, {"max_regex_conditions": 0, "max_filter_conditions": 1.5}) == ["telegraphy.E013"] * 2
