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

import asyncio
import base64
import re
import threading
import time
from typing import Any, Iterable

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
    "revoke_users",
    "revoke_session",
    "arevoke_user",
    "arevoke_users",
    "arevoke_session",
    "issue_time",
]

# the bucket's max_age when this package creates it (>= the gateway's resume TTL)
REVOCATIONS_MAX_AGE = constants.BUCKETS_REVOCATIONS_MAX_AGE
PUTS_IN_FLIGHT = 256  # revoke_users: KV puts awaiting their acknowledgement at once

_KV_KEY = re.compile(r"[-/_=.A-Za-z0-9]+")


# sub -> the latest revocation time this process wrote for it, while that second lasts (see issue_time).
_recent_lock = threading.Lock()
_recent: dict[str, int] = {}


def _revoked_sub(user_or_sub: object) -> str:
    if isinstance(user_or_sub, int) and not isinstance(user_or_sub, bool):
        user_or_sub = str(user_or_sub)
    elif user_or_sub is not None and not isinstance(user_or_sub, str) and not hasattr(user_or_sub, "pk"):
        user_or_sub = str(user_or_sub)  # another kind of pk, e.g. a UUID
    elif hasattr(user_or_sub, "pk") and user_or_sub.pk is None and getattr(user_or_sub, "is_authenticated", False):
        raise ValueError("cannot revoke a user that has no pk (not saved)")
    sub = user_sub(user_or_sub)
    if not sub:
        raise ValueError("cannot revoke an anonymous user (empty sub): revoke its session instead")
    return sub


def user_subs(users: Any) -> list[str]:
    """The distinct subs of ``users``: one user, pk or sub string, a QuerySet of the user model (only its pks
    are read), or an iterable of users, pks or sub strings."""
    if isinstance(users, (str, int)) or hasattr(users, "pk") or hasattr(users, "is_authenticated"):
        users = [users]
    elif hasattr(users, "values_list") and hasattr(users, "model"):
        users = [str(pk) for pk in users.values_list("pk", flat=True)]
    return list(dict.fromkeys(_revoked_sub(user) for user in users))


def _key_of_sub(sub: str) -> str:
    return "user." + base64.urlsafe_b64encode(sub.encode("utf-8")).decode("ascii").rstrip("=")


def user_key(user_or_sub: object) -> str:
    """``user.<base64url_nopad(sub)>`` for a Django user (``sub = str(user.pk)``), a ``sub`` string or a pk."""
    return _key_of_sub(_revoked_sub(user_or_sub))


def _remember(subs: Iterable[str], revoked_at: int) -> int:
    now = int(time.time())
    with _recent_lock:
        for old in [k for k, v in _recent.items() if v < now]:  # past seconds no longer matter
            del _recent[old]
        for sub in subs:
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


def _put(keys: list[str], timeout: float | None) -> int:
    """Put every key = now (ASCII unix seconds) in the revocations bucket; returns the time written once NATS
    acknowledged every put."""
    link, bucket = get_link(), ts.REVOCATIONS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return link.call(lambda: _write(link, bucket, keys, limit), limit, _unacknowledged(keys), RevocationError)


async def _aput(keys: list[str], timeout: float | None) -> int:
    link, bucket = get_link(), ts.REVOCATIONS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return await link.acall(lambda: _write(link, bucket, keys, limit), limit, _unacknowledged(keys), RevocationError)


def _what(keys: list[str]) -> str:
    return f"revocation {keys[0]!r}" if len(keys) == 1 else f"{len(keys)} revocations ({keys[0]!r}...)"


def _unacknowledged(keys: list[str]) -> str:
    return f"{_what(keys)} was not acknowledged"


async def _write(link: NatsLink, bucket: str, keys: list[str], timeout: float) -> int:
    """On the link's loop: the puts (at most ``PUTS_IN_FLIGHT`` at once), with the time taken once the bucket
    is at hand, all within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        nc = await link.wait_connected(timeout)
    except ConnectionError as exc:
        raise RevocationError(f"could not write {_what(keys)}: {exc}") from None
    slots = asyncio.Semaphore(PUTS_IN_FLIGHT)
    try:
        kv = await link.bucket(nc, bucket, REVOCATIONS_MAX_AGE, timeout)
        # Taken once the bucket is at hand, right before the puts: covers every token issued until now.
        revoked_at = int(time.time())
        value = str(revoked_at).encode("ascii")

        async def put(key: str) -> None:
            async with slots:
                await kv.put(key, value)

        await asyncio.wait_for(asyncio.gather(*(put(key) for key in keys)), max(deadline - loop.time(), 0.01))
    except Exception as exc:
        link.forget_bucket(bucket)
        raise RevocationError(f"could not write {_what(keys)} to KV bucket {bucket!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
    return revoked_at


def revoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """Revoke every token and live socket of a user; returns the revocation time written (unix seconds).

    Waits (at most ``timeout``, default ``PUBLISH_TIMEOUT``) until NATS acknowledged the KV put; raises
    :class:`RevocationError` otherwise. This process then mints the user's tokens in a later second.
    """
    sub = _revoked_sub(user_or_sub)
    return _remember([sub], _put([_key_of_sub(sub)], timeout))


def revoke_users(users: Any, *, timeout: float | None = None) -> int | None:
    """:func:`revoke_user` for many users at once: a QuerySet of the user model (only its pks are read, now:
    after ``QuerySet.update`` changed what its filter matches, pass the pks taken before), or one or an
    iterable of users, pks or sub strings. The KV puts run concurrently under one ``timeout`` (default
    ``PUBLISH_TIMEOUT``); returns the revocation time, or None when there was nobody to revoke. Raises
    :class:`RevocationError` unless NATS acknowledged every put (then call it again: a revocation is
    idempotent), ``ValueError`` for an anonymous or unsaved user before anything is written."""
    subs = user_subs(users)
    if not subs:
        return None
    return _remember(subs, _put([_key_of_sub(sub) for sub in subs], timeout))


def revoke_session(sid: str, *, timeout: float | None = None) -> int:
    """Revoke one session (its socket and resume tokens); like :func:`revoke_user`."""
    return _put([session_key(sid)], timeout)


async def arevoke_user(user_or_sub: object, *, timeout: float | None = None) -> int:
    """:func:`revoke_user` for async code (awaits the acknowledgement without blocking the loop)."""
    sub = _revoked_sub(user_or_sub)
    return _remember([sub], await _aput([_key_of_sub(sub)], timeout))


async def arevoke_users(users: Any, *, timeout: float | None = None) -> int | None:
    """:func:`revoke_users` for async code; a QuerySet is evaluated in a worker thread."""
    from asgiref.sync import sync_to_async

    subs = await sync_to_async(user_subs)(users)
    if not subs:
        return None
    return _remember(subs, await _aput([_key_of_sub(sub) for sub in subs], timeout))


async def arevoke_session(sid: str, *, timeout: float | None = None) -> int:
    """:func:`revoke_session` for async code."""
    return await _aput([session_key(sid)], timeout)
