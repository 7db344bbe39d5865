import pytest

from telegraphy import names

from .helpers import load_vectors

NAMES = load_vectors("names.json")
MATCH = load_vectors("match.json")["cases"]
CONTAINS = load_vectors("contains.json")["cases"]
KEYS = load_vectors("keys.json")["cases"]


@pytest.mark.parametrize("name", NAMES["valid_names"])
def test_valid_names(name):
    assert names.is_valid_name(name)
    assert names.is_valid_pattern(name), "a name is also a pattern"
    assert names.validate_name(name) == name


@pytest.mark.parametrize("name", NAMES["invalid_names"])
def test_invalid_names(name):
    assert not names.is_valid_name(name)
    with pytest.raises(ValueError):
        names.validate_name(name)


@pytest.mark.parametrize("pattern", NAMES["valid_patterns"])
def test_valid_patterns(pattern):
    assert names.is_valid_pattern(pattern)


@pytest.mark.parametrize("pattern", NAMES["invalid_patterns"])
def test_invalid_patterns(pattern):
    assert not names.is_valid_pattern(pattern)
    with pytest.raises(ValueError):
        names.validate_pattern(pattern)


@pytest.mark.parametrize("value", [None, 42, b"a.b", ["a"]])
def test_non_strings_are_neither_names_nor_patterns(value):
    assert not names.is_valid_name(value)
    assert not names.is_valid_pattern(value)


@pytest.mark.parametrize("case", MATCH, ids=lambda c: f"{c['pattern']}~{c['name']}")
def test_match(case):
    assert names.matches(case["pattern"], case["name"]) is case["match"]


@pytest.mark.parametrize("case", CONTAINS, ids=lambda c: f"{c['outer']}>={c['inner']}")
def test_contains(case):
    assert names.contains(case["outer"], case["inner"]) is case["contains"]


@pytest.mark.parametrize("case", KEYS, ids=lambda c: c["token"][:20])
def test_key_token(case):
    token = names.key_token(case["key"])
    assert token == case["token"]
    assert names.is_valid_token(token)


def test_key_token_of_non_string_pks():
    import uuid

    assert names.key_token(42) == "42"
    u = uuid.UUID("3f2b8c1e-9d4a-4c55-8e2f-1a2b3c4d5e6f")
    assert names.key_token(u) == "3f2b8c1e-9d4a-4c55-8e2f-1a2b3c4d5e6f"


def test_key_token_is_injective_on_vectors():
    tokens = [names.key_token(c["key"]) for c in KEYS]
    assert len(set(tokens)) == len(tokens)
