"""Revoking a user or a session (proto/PROTOCOL.md section 4, "Revocation").

A revocation is KV key ``user.<base64url_nopad(sub)>`` or ``session.<sid>`` in the bucket
``telegraphy_revocations`` (``REVOCATIONS_BUCKET``), value the revocation time as ASCII decimal unix seconds.
Every gateway watches the bucket: it closes the live sockets of that user/session with 4003 within a second
and refuses their tokens with ``iat <= value`` (4001), including a token minted in the same second.

The put goes through the process's publisher thread (its nats-py client and loop), and the sync functions
return only once NATS acknowledged it.
"""

from __future__ import annotations

import base64
import re

from .publisher import PublishError, get_publisher
from .tokens import user_sub

__all__ = [
    "REVOCATIONS_MAX_AGE",
    "RevocationError",
    "user_key",
    "session_key",
    "revoke_user",
    "revoke_session",
    "arevoke_user",
    "arevoke_session",
]

REVOCATIONS_MAX_AGE = 86400  # the bucket's max_age when this package creates it (>= the gateway's resume TTL)

_KV_KEY = re.compile(r"[-/_=.A-Za-z0-9]+")


class RevocationError(PublishError):
    """The revocation was not stored: NATS unreachable, no answer within the timeout, KV failure."""


def user_key(user_or_sub: object) -> str:
    """``user.<base64url_nopad(sub)>`` for a Django user (``sub = str(user.pk)``), a ``sub`` string or an int pk."""
    if isinstance(user_or_sub, int) and not isinstance(user_or_sub, bool):
        user_or_sub = str(user_or_sub)
    elif hasattr(user_or_sub, "pk") and user_or_sub.pk is None and getattr(user_or_sub, "is_authenticated", False):
        raise ValueError("cannot revoke a user that has no pk (not saved)")
    sub = user_sub(user_or_sub)
    if not sub:
        raise ValueError("cannot revoke an anonymous user (empty sub): revoke its session instead")
    return "user." + base64.urlsafe_b64encode(sub.encode("utf-8")).decode("ascii").rstrip("=")


def session_key(sid: str) -> str:
    """``session.<sid>`` for a session id (the ``session`` field of a gateway's ``connected`` frame)."""
    if not isinstance(sid, str) or not _KV_KEY.fullmatch(sid) or sid.startswith(".") or sid.endswith("."):
        raise ValueError(f"not a session id: {sid!r}")
    return "session." + sid


def revoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """Revoke every token and live socket of a user; returns the revocation time written (unix seconds).

    Waits (at most ``timeout``, default ``PUBLISH_TIMEOUT``) until NATS acknowledged the KV put; raises
    :class:`RevocationError` otherwise. Mint a new token for this user only in a later second.
    """
    return get_publisher().revoke_key(user_key(user_or_sub), timeout)


def revoke_session(sid: str, *, timeout: float | None = None) -> int:
    """Revoke one session (its socket and resume tokens); like :func:`revoke_user`."""
    return get_publisher().revoke_key(session_key(sid), timeout)


async def arevoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """:func:`revoke_user` for async code (awaits the acknowledgement without blocking the loop)."""
    return await get_publisher().arevoke_key(user_key(user_or_sub), timeout)


async def arevoke_session(sid: str, *, timeout: float | None = None) -> int:
    """:func:`revoke_session` for async code."""
    return await get_publisher().arevoke_key(session_key(sid), timeout)
