"""Connect tokens (proto/PROTOCOL.md section 4), as users import them: ``from telegraphy import tokens``.

``tg1.<claims>.<sig>`` where ``claims`` is base64url (no padding) of the compact JSON claims in the order
``jti, sub, allow, iat, exp`` (+ ``rev``, the KV revision of the token's registration, on connect tokens;
``sid`` on ``tg1r`` resume tokens; the optional presence ``info``; then the optional action grants ``publish``,
``publish_ephemeral`` and ``rpc`` of PROTOCOL section 13) and ``sig`` is base64url of HMAC-SHA256(secret, "<prefix>." + claims).

``mint()``/``amint()`` are what a Django site uses; ``sign()`` and ``verify()`` are the pure functions behind
them (the gateway verifies in production, ``verify()`` exists for tests and tools). Two modules do the work,
and this one gathers their public names: :mod:`telegraphy.token_format` (the format, pure) and
:mod:`telegraphy.minting` (minting and the KV registration of token ids).
"""

from __future__ import annotations

from . import minting, token_format
from .exceptions import TokenError, TokenRegistrationError
from .minting import amint, aregister, mint, publish_grants, register, token_allowed
from .token_format import (
    CLOCK_SKEW,
    CONNECT_PREFIX,
    GRANT_CLAIMS,
    MAX_ALLOW,
    MAX_GRANT,
    MAX_INFO_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TTL,
    MIN_SECRET_BYTES,
    MIN_SECRET_ENTROPY_BITS,
    PLACEHOLDER_WORDS,
    RESUME_PREFIX,
    check_info,
    claims_for,
    secret_weakness,
    sign,
    user_sub,
    verify,
)

# The format's names, then minting's (with the error of its KV registration).
__all__ = [*token_format.__all__, "TokenRegistrationError", *minting.__all__]
