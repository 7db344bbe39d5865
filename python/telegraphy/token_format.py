"""The connect-token format (proto/PROTOCOL.md section 4): pure functions, no settings, no NATS.

``tg1.<claims>.<sig>`` where ``claims`` is base64url (no padding) of the compact JSON claims in the order
``jti, sub, allow, iat, exp`` (+ ``rev``, the KV revision of the token's registration, on connect tokens;
``sid`` on ``tg1r`` resume tokens, then the optional ``info`` shown by presence, section 11, then the optional
action grants ``publish``, ``publish_ephemeral`` and ``rpc``, section 13) and ``sig`` is base64url of
HMAC-SHA256(secret, "<prefix>." + claims).

``telegraphy.minting.mint()`` (public as ``telegraphy.tokens.mint()``) is what a Django site uses; ``sign()``
and ``verify()`` here are the pure functions behind it (the gateway verifies in production, ``verify()``
exists for tests and tools). Users import all of it from ``telegraphy.tokens``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import json
import math
import re
import secrets as _secrets
import time
from typing import Any, Iterable

from . import constants, names
from .exceptions import TokenError

__all__ = [
    "CONNECT_PREFIX",
    "RESUME_PREFIX",
    "MAX_TOKEN_BYTES",
    "MAX_ALLOW",
    "MAX_TTL",
    "CLOCK_SKEW",
    "MIN_SECRET_BYTES",
    "MAX_INFO_BYTES",
    "GRANT_CLAIMS",
    "MAX_GRANT",
    "PLACEHOLDER_WORDS",
    "MIN_SECRET_ENTROPY_BITS",
    "TokenError",
    "secret_weakness",
    "sign",
    "verify",
    "claims_for",
    "check_info",
    "user_sub",
]

CONNECT_PREFIX = constants.TOKENS_CONNECT_PREFIX
RESUME_PREFIX = constants.TOKENS_RESUME_PREFIX
MAX_TOKEN_BYTES = constants.TOKENS_MAX_BYTES
MAX_ALLOW = constants.TOKENS_MAX_ALLOW
MAX_TTL = constants.TOKENS_MAX_TTL  # the telegraphy_tokens bucket's max_age: token TTLs must not exceed it
CLOCK_SKEW = constants.TOKENS_CLOCK_SKEW
MIN_SECRET_BYTES = constants.TOKENS_MIN_SECRET_BYTES
MAX_INFO_BYTES = constants.TOKENS_MAX_INFO_BYTES  # the presence `info` claim: at most this many bytes as compact JSON
# The action grants (PROTOCOL section 13), in claim order after `info`: arrays of at most MAX_GRANT patterns.
GRANT_CLAIMS = constants.ACTIONS_GRANT_CLAIMS
MAX_GRANT = constants.ACTIONS_MAX_GRANT_PATTERNS
# PROTOCOL section 4 "Secrets" (vectors/secrets.json): the words of the shipped examples, and the entropy floor.
PLACEHOLDER_WORDS = ("change", "replace", "example", "placeholder", "dummy", "insecure")
MIN_SECRET_ENTROPY_BITS = 80

_B64 = re.compile(r"[A-Za-z0-9_-]+")
_JTI = re.compile(f"[0-9a-f]{{{constants.TOKENS_JTI_HEX_CHARS}}}")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError("malformed", "not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "not base64url without padding") from None
    if _b64encode(data) != text:  # non-canonical trailing bits
        raise TokenError("malformed", "not canonical base64url")
    return data


def secret_weakness(secret: str | bytes) -> str | None:
    """Why ``secret`` is too weak to sign tokens (PROTOCOL section 4, "Secrets"), or None when it is fine.

    The reasons, tested in this order: ``too_short`` (< 32 bytes of UTF-8), ``placeholder`` (contains one of
    :data:`PLACEHOLDER_WORDS`, ignoring ASCII case), ``repetitive`` (the whole secret is periodic with a period
    <= half its length), ``low_entropy`` (length x Shannon entropy of its byte frequencies < 80 bits). The
    gateway applies the same rule to ``auth.secret`` and ``auth.previous_secrets`` at start-up.
    """
    data = _secret_bytes(secret)
    n = len(data)
    if n < MIN_SECRET_BYTES:
        return "too_short"
    folded = data.lower()  # bytes.lower() folds ASCII letters only
    if any(word.encode("ascii") in folded for word in PLACEHOLDER_WORDS):
        return "placeholder"
    if any(data[p:] == data[:-p] for p in range(1, n // 2 + 1)):
        return "repetitive"
    counts = collections.Counter(data).values()
    bits = -sum(c * math.log2(c / n) for c in counts)  # = n * H
    if bits < MIN_SECRET_ENTROPY_BITS:
        return "low_entropy"
    return None


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _signature(secret: str | bytes, signed_part: str) -> str:
    mac = hmac.new(_secret_bytes(secret), signed_part.encode("ascii"), hashlib.sha256)
    return _b64encode(mac.digest())


def sign(claims: dict[str, Any], secret: str | bytes, prefix: str = CONNECT_PREFIX) -> str:
    """Serialise ``claims`` compactly in their given order and sign them. Returns the token string."""
    if prefix not in (CONNECT_PREFIX, RESUME_PREFIX):
        raise ValueError(f"unknown token prefix {prefix!r}")
    body = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signed_part = f"{prefix}.{_b64encode(body)}"
    return f"{signed_part}.{_signature(secret, signed_part)}"


def _info_problem(info: object) -> str | None:
    if not isinstance(info, dict):
        return "info must be a JSON object"
    try:
        size = len(json.dumps(info, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError):
        return "info must be JSON"
    if size > MAX_INFO_BYTES:
        return f"info must be at most {MAX_INFO_BYTES} bytes of compact JSON"
    return None


def check_info(info: object) -> None:
    """Check a presence ``info`` claim (PROTOCOL section 11): a JSON object of at most :data:`MAX_INFO_BYTES`
    bytes as compact JSON. Raises ``ValueError``."""
    problem = _info_problem(info)
    if problem:
        raise ValueError(problem)


def _patterns(claim: str, patterns: Iterable[str], limit: int) -> list[str]:
    """``patterns`` validated, without duplicates, in order; ``ValueError`` past ``limit``."""
    if isinstance(patterns, str):
        raise ValueError(f"{claim} must be a list of patterns, not a string")
    result: list[str] = []
    for pattern in patterns:
        names.validate_pattern(pattern)
        if pattern not in result:
            result.append(pattern)
    if len(result) > limit:
        raise ValueError(f"a token may carry at most {limit} {claim} patterns, got {len(result)}")
    return result


def claims_for(
    sub: str,
    allow: Iterable[str],
    ttl: int,
    *,
    now: int | None = None,
    jti: str | None = None,
    info: dict | None = None,
    publish: Iterable[str] = (),
    publish_ephemeral: Iterable[str] = (),
    rpc: Iterable[str] = (),
) -> dict:
    """Build connect-token claims in protocol order after validating them (``info``: the presence claim,
    checked by :func:`check_info`; then the action grants of PROTOCOL section 13, each omitted when empty)."""
    if not isinstance(sub, str):
        raise ValueError("sub must be a string")
    allow_list = _patterns("allow", allow, MAX_ALLOW)
    grants = {
        claim: _patterns(claim, patterns, MAX_GRANT)
        for claim, patterns in zip(GRANT_CLAIMS, (publish, publish_ephemeral, rpc))
    }
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be an integer number of seconds in 1..{MAX_TTL}, got {ttl!r}")
    if info is not None:
        check_info(info)
    iat = int(time.time()) if now is None else int(now)
    claims = {
        "jti": jti if jti is not None else _secrets.token_hex(constants.TOKENS_JTI_HEX_CHARS // 2),
        "sub": sub,
        "allow": allow_list,
        "iat": iat,
        "exp": iat + ttl,
    }
    if info is not None:
        claims["info"] = info
    claims.update((claim, patterns) for claim, patterns in grants.items() if patterns)
    return claims


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify(token: object, secrets: Iterable[str | bytes], *, now: int | None = None, prefix: str | None = None) -> dict:
    """Check a token as a gateway does at ``connect`` (except the single-use KV step) and return its claims.

    ``secrets``: the signing secret first, then previous ones (rotation). ``prefix``: require ``tg1`` or
    ``tg1r``; ``None`` accepts both. Raises :class:`TokenError`.
    """
    if not isinstance(token, str) or not token or len(token.encode("utf-8")) > MAX_TOKEN_BYTES:
        raise TokenError("malformed", "empty, oversized or not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "expected three parts")
    tprefix, body, sig = parts
    allowed = (CONNECT_PREFIX, RESUME_PREFIX) if prefix is None else (prefix,)
    if tprefix not in allowed:
        raise TokenError("malformed", "unknown token prefix")
    raw = _b64decode(body)
    given = _b64decode(sig)
    signed_part = f"{tprefix}.{body}"
    ok = False
    for secret in secrets:
        expected = hmac.new(_secret_bytes(secret), signed_part.encode("ascii"), hashlib.sha256).digest()
        ok |= hmac.compare_digest(expected, given)
    if not ok:
        raise TokenError("bad_signature", "signature does not verify")
    try:
        claims = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenError("malformed", "claims are not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("malformed", "claims are not an object")
    if not isinstance(claims.get("jti"), str) or not _JTI.fullmatch(claims["jti"]):
        raise TokenError("malformed", "jti must be 32 lowercase hex characters")
    if not isinstance(claims.get("sub"), str):
        raise TokenError("malformed", "sub must be a string")
    allow = claims.get("allow")
    if not isinstance(allow, list) or len(allow) > MAX_ALLOW or not all(names.is_valid_pattern(p) for p in allow):
        raise TokenError("malformed", "allow must be a list of valid patterns")
    if not _is_int(claims.get("iat")) or not _is_int(claims.get("exp")):
        raise TokenError("malformed", "iat and exp must be integers")
    if tprefix == RESUME_PREFIX and not isinstance(claims.get("sid"), str):
        raise TokenError("malformed", "resume tokens carry a sid")
    if "rev" in claims and (tprefix == RESUME_PREFIX or not _is_int(claims["rev"]) or claims["rev"] < 1):
        raise TokenError("malformed", "rev must be an integer >= 1, on connect tokens only")
    if "info" in claims and _info_problem(claims["info"]):
        raise TokenError("malformed", "info must be a JSON object of at most 256 bytes")
    for claim in GRANT_CLAIMS:
        grant = claims.get(claim, [])
        if not isinstance(grant, list) or len(grant) > MAX_GRANT or not all(names.is_valid_pattern(p) for p in grant):
            raise TokenError("malformed", f"{claim} must be a list of at most {MAX_GRANT} valid patterns")
    current = int(time.time()) if now is None else int(now)
    if claims["iat"] > current + CLOCK_SKEW:
        raise TokenError("malformed", "issued in the future")
    if claims["exp"] + CLOCK_SKEW <= current:
        raise TokenError("expired", "token expired")
    return claims


def user_sub(user: object) -> str:
    """The ``sub`` claim for a user: ``""`` for anonymous/None, the string itself, else ``str(user.pk)``."""
    if user is None:
        return ""
    if isinstance(user, str):
        return user
    if not getattr(user, "is_authenticated", True):
        return ""
    return str(user.pk)
