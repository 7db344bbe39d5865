"""Revoking a user or a session (proto/PROTOCOL.md section 4, "Revocation").

A revocation is KV key ``user.<base64url_nopad(sub)>`` or ``session.<sid>`` in the bucket
``telegraphy_revocations`` (``REVOCATIONS_BUCKET``), value the revocation time as ASCII decimal unix seconds.
Every gateway watches the bucket: it closes the live sockets of that user/session with 4003 within a second
and refuses their tokens with ``iat <= value`` (4001), including a token minted in the same second.

This module owns the bucket's writes; the put runs on the process's NATS link (its thread, nats-py client
and loop, :mod:`telegraphy.nats_link`), and the sync functions return only once NATS acknowledged it. A
token this process mints for a user it has just revoked is issued in the second after the revocation
(:func:`issue_time` waits for it), so that it is not refused with the revoked ones.
"""

from __future__ import annotations

import base64
import re
import threading
import time

from . import constants
from .conf import telegraphy_settings as ts
from .exceptions import RevocationError
from .nats_link import NatsLink, get_link
from .token_format import user_sub

__all__ = [
    "REVOCATIONS_MAX_AGE",
    "RevocationError",
    "user_key",
    "session_key",
    "revoke_user",
    "revoke_session",
    "arevoke_user",
    "arevoke_session",
    "issue_time",
]

# the bucket's max_age when this package creates it (>= the gateway's resume TTL)
REVOCATIONS_MAX_AGE = constants.BUCKETS_REVOCATIONS_MAX_AGE

_KV_KEY = re.compile(r"[-/_=.A-Za-z0-9]+")


# sub -> the latest revocation time this process wrote for it, while that second lasts (see issue_time).
_recent_lock = threading.Lock()
_recent: dict[str, int] = {}


def _revoked_sub(user_or_sub: object) -> str:
    if isinstance(user_or_sub, int) and not isinstance(user_or_sub, bool):
        user_or_sub = str(user_or_sub)
    elif hasattr(user_or_sub, "pk") and user_or_sub.pk is None and getattr(user_or_sub, "is_authenticated", False):
        raise ValueError("cannot revoke a user that has no pk (not saved)")
    sub = user_sub(user_or_sub)
    if not sub:
        raise ValueError("cannot revoke an anonymous user (empty sub): revoke its session instead")
    return sub


def user_key(user_or_sub: object) -> str:
    """``user.<base64url_nopad(sub)>`` for a Django user (``sub = str(user.pk)``), a ``sub`` string or an int pk."""
    sub = _revoked_sub(user_or_sub)
    return "user." + base64.urlsafe_b64encode(sub.encode("utf-8")).decode("ascii").rstrip("=")


def _remember(user_or_sub: object, revoked_at: int) -> int:
    sub = _revoked_sub(user_or_sub)
    now = int(time.time())
    with _recent_lock:
        for old in [k for k, v in _recent.items() if v < now]:  # past seconds no longer matter
            del _recent[old]
        _recent[sub] = max(revoked_at, _recent.get(sub, revoked_at))
    return revoked_at


def issue_time(sub: str) -> int:
    """The ``iat`` for a token of ``sub`` minted now: the current second, after waiting for the next second
    when this process revoked ``sub`` in this one (the gateway refuses ``iat <= revocation time``), so that
    "log out, log in again at once" gets a working token. Waiting (at most 1 s, only right after a
    revocation) rather than dating the token ahead keeps every later revocation covering it. Revocations
    written by other processes in the same second are not known here."""
    with _recent_lock:
        revoked_at = _recent.get(sub)
    if revoked_at is not None:
        delay = revoked_at + 1 - time.time()
        if delay > 0:
            time.sleep(delay)
    return int(time.time())


def session_key(sid: str) -> str:
    """``session.<sid>`` for a session id (the ``session`` field of a gateway's ``connected`` frame)."""
    if not isinstance(sid, str) or not _KV_KEY.fullmatch(sid) or sid.startswith(".") or sid.endswith("."):
        raise ValueError(f"not a session id: {sid!r}")
    return "session." + sid


def _put(key: str, timeout: float | None) -> int:
    """Put ``key`` = now (ASCII unix seconds) in the revocations bucket; returns the time written once NATS
    acknowledged it."""
    link, bucket = get_link(), ts.REVOCATIONS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return link.call(lambda: _write(link, bucket, key, limit), limit, _unacknowledged(key), RevocationError)


async def _aput(key: str, timeout: float | None) -> int:
    link, bucket = get_link(), ts.REVOCATIONS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return await link.acall(lambda: _write(link, bucket, key, limit), limit, _unacknowledged(key), RevocationError)


def _unacknowledged(key: str) -> str:
    return f"revocation {key!r} was not acknowledged"


async def _write(link: NatsLink, bucket: str, key: str, timeout: float) -> int:
    """On the link's loop: the put, with the time taken once the bucket is at hand."""
    try:
        nc = await link.wait_connected(timeout)
    except ConnectionError as exc:
        raise RevocationError(f"could not write revocation {key!r}: {exc}") from None
    try:
        kv = await link.bucket(nc, bucket, REVOCATIONS_MAX_AGE, timeout)
        # Taken once the bucket is at hand, right before the put: covers every token issued until now.
        revoked_at = int(time.time())
        await kv.put(key, str(revoked_at).encode("ascii"))
    except Exception as exc:
        link.forget_bucket(bucket)
        raise RevocationError(f"could not write revocation {key!r} to KV bucket {bucket!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
    return revoked_at


def revoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """Revoke every token and live socket of a user; returns the revocation time written (unix seconds).

    Waits (at most ``timeout``, default ``PUBLISH_TIMEOUT``) until NATS acknowledged the KV put; raises
    :class:`RevocationError` otherwise. This process then mints the user's tokens in a later second.
    """
    return _remember(user_or_sub, _put(user_key(user_or_sub), timeout))


def revoke_session(sid: str, *, timeout: float | None = None) -> int:
    """Revoke one session (its socket and resume tokens); like :func:`revoke_user`."""
    return _put(session_key(sid), timeout)


async def arevoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """:func:`revoke_user` for async code (awaits the acknowledgement without blocking the loop)."""
    return _remember(user_or_sub, await _aput(user_key(user_or_sub), timeout))


async def arevoke_session(sid: str, *, timeout: float | None = None) -> int:
    """:func:`revoke_session` for async code."""
    return await _aput(session_key(sid), timeout)
