"""Event names and patterns: the single Python implementation of proto/PROTOCOL.md section 1 and of the
model-event key escaping of section 2.

Names are 1..16 tokens of ``[A-Za-z0-9_-]+`` joined by ``.``, at most 255 bytes. Patterns may use ``*`` for
any single token and ``>`` as the last token for one or more tokens (the NATS wildcards).
"""

from __future__ import annotations

import base64
import re

from . import constants

__all__ = [
    "MAX_TOKENS",
    "MAX_BYTES",
    "is_valid_token",
    "is_valid_name",
    "is_valid_pattern",
    "validate_name",
    "validate_pattern",
    "validate_token",
    "check_joined",
    "matches",
    "contains",
    "key_token",
]

MAX_TOKENS = constants.NAMES_MAX_TOKENS
MAX_BYTES = constants.NAMES_MAX_BYTES
MAX_PLAIN_KEY = constants.NAMES_MAX_PLAIN_KEY_CHARS

_TOKEN = re.compile(f"[{constants.NAMES_TOKEN_CHARS}]+")
_NAME = re.compile(f"[{constants.NAMES_TOKEN_CHARS}]+(?:\\.[{constants.NAMES_TOKEN_CHARS}]+){{0,{MAX_TOKENS - 1}}}")
_PLAIN_KEY = re.compile(f"[A-Za-z0-9_][{constants.NAMES_TOKEN_CHARS}]{{0,{MAX_PLAIN_KEY - 1}}}")
_PLAIN_INT_LIMIT = 10**MAX_PLAIN_KEY  # non-negative ints below it have at most MAX_PLAIN_KEY digits: plain keys


def is_valid_token(token: object) -> bool:
    """A single literal token: one or more of ``[A-Za-z0-9_-]``."""
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def _split(value: object) -> list[str] | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value.encode("utf-8")) > MAX_BYTES:
        return None
    tokens = value.split(".")
    if len(tokens) > MAX_TOKENS:
        return None
    return tokens


def is_valid_name(name: object) -> bool:
    """An event name: literal tokens only."""
    # One regex for the whole name (it runs on every publish): it matches ASCII only, so characters are bytes.
    return isinstance(name, str) and len(name) <= MAX_BYTES and _NAME.fullmatch(name) is not None


def is_valid_pattern(pattern: object) -> bool:
    """A name in which any token may be ``*`` and the last one may be ``>``."""
    tokens = _split(pattern)
    if tokens is None:
        return False
    last = len(tokens) - 1
    for i, t in enumerate(tokens):
        if t == "*" or (t == ">" and i == last):
            continue
        if not _TOKEN.fullmatch(t):
            return False
    return True


def _checked(ok: bool, value: object, what: str, expected: str) -> str:
    if not ok:
        raise ValueError(f"invalid {what} {value!r}: expected {expected}")
    return value  # type: ignore[return-value]


def validate_token(token: object, what: str = "token") -> str:
    """Return ``token`` or raise ``ValueError`` when it is not one literal token."""
    return _checked(is_valid_token(token), token, what, "one or more of [A-Za-z0-9_-]")


def validate_name(name: object) -> str:
    """Return ``name`` or raise ``ValueError`` when it is not a valid event name."""
    return _checked(
        is_valid_name(name),
        name,
        "event name",
        f"1..{MAX_TOKENS} tokens of [A-Za-z0-9_-] joined by '.', at most {MAX_BYTES} bytes, no wildcards",
    )


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` or raise ``ValueError`` when it is not a valid pattern."""
    return _checked(
        is_valid_pattern(pattern),
        pattern,
        "event pattern",
        f"1..{MAX_TOKENS} tokens of [A-Za-z0-9_-], '*' or a final '>', joined by '.', at most {MAX_BYTES} bytes",
    )


def check_joined(name: str) -> str:
    """Return ``name``, made by joining valid tokens (or names) with ``.``, or raise ``ValueError`` like
    :func:`validate_name` when it has too many tokens or bytes: the only way such a name can be invalid.
    The cheap check for names built on every model save (tokens are ASCII, so characters are bytes)."""
    if len(name) > MAX_BYTES or name.count(".") >= MAX_TOKENS:
        return validate_name(name)
    return name


def matches(pattern: str, name: str) -> bool:
    """True when ``pattern`` matches the event name ``name`` (both assumed valid)."""
    p = pattern.split(".")
    n = name.split(".")
    for i, pt in enumerate(p):
        if pt == ">":
            return len(n) > i
        if i >= len(n):
            return False
        if pt != "*" and pt != n[i]:
            return False
    return len(p) == len(n)


def contains(outer: str, inner: str) -> bool:
    """True when every name that pattern ``inner`` matches, pattern ``outer`` matches too."""
    a = outer.split(".")
    b = inner.split(".")
    for i, bt in enumerate(b):
        if i >= len(a):
            return False
        at = a[i]
        if at == ">":
            return True
        if bt == ">":
            return False
        if at != "*" and at != bt:
            return False
    return len(a) == len(b)


def key_token(pk: object) -> str:
    """Encode a primary key as one name token (proto section 2, injective).

    ``str(pk)`` is used as is when it is 1..64 characters of ``[A-Za-z0-9_-]`` not starting with ``-``;
    otherwise the token is ``-`` followed by base64url (no padding) of its UTF-8 bytes.
    """
    if type(pk) is int and 0 <= pk < _PLAIN_INT_LIMIT:  # the usual auto primary key: no regex needed
        return str(pk)
    text = str(pk)
    if _PLAIN_KEY.fullmatch(text):
        return text
    return "-" + base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")
