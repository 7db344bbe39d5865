"""Minting connect tokens for a Django site: claims from the settings, the registered event classes and RPC
handlers (the action grants of PROTOCOL section 13),
the token id registered create-only in the JetStream KV bucket ``telegraphy_tokens`` (the gateway accepts
each token once, proto/PROTOCOL.md section 4), then signed.

This module owns that bucket's writes; the token format itself is :mod:`telegraphy.token_format`. Users
import all of it from ``telegraphy.tokens`` (``tokens.mint()``, ``tokens.amint()``...).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from asgiref.sync import sync_to_async
from django.utils.module_loading import import_string

from .conf import telegraphy_settings as ts
from . import names
from .rpc import rpc_methods
from .events import allow_patterns, registered
from .exceptions import TokenRegistrationError
from .nats_link import NatsLink, get_link
from .revocations import issue_time
from .token_format import MAX_TTL, claims_for, sign, user_sub

logger = logging.getLogger("telegraphy")

__all__ = ["token_allowed", "mint", "amint", "register", "aregister", "publish_grants"]


def token_allowed(user: object) -> bool:
    """Whether the page tags and the token endpoint hand ``user`` a connect token: every authenticated user;
    anonymous visitors only with ``TELEGRAPHY["ANONYMOUS_TOKENS"]`` (otherwise a page connects them without a
    token, which the gateway accepts only when its ``auth.anonymous_allow`` is set)."""
    return bool(user_sub(user)) or bool(ts.ANONYMOUS_TOKENS)


def token_info(user: object) -> dict | None:
    """The presence ``info`` of ``user``'s tokens by default: ``TELEGRAPHY["TOKEN_INFO"]`` (a callable or its
    dotted path) called with the user, for authenticated users only; None when it is not set."""
    hook = ts.TOKEN_INFO
    if hook is None or not user_sub(user):
        return None
    if isinstance(hook, str):
        hook = import_string(hook)
    return hook(user)


def publish_grants(user: object) -> tuple[list[str], list[str]]:
    """What ``user`` may publish as a client (PROTOCOL section 13): ``(stored, ephemeral)``, the union over the
    registered event classes that define ``publish_patterns(user)``; a class with ``ephemeral = True`` grants
    into the second list (never stored: typing, cursors). Both in registration order, without duplicates."""
    stored: list[str] = []
    ephemeral: list[str] = []
    for event in registered():
        hook = getattr(event, "publish_patterns", None)
        if hook is None:
            continue
        target = ephemeral if getattr(event, "ephemeral", False) is True else stored
        for pattern in hook(user):
            names.validate_pattern(pattern)
            if pattern not in target:
                target.append(pattern)
    return stored, ephemeral


class Grants:
    """The action grants of a token; ``None`` fields are filled from the event classes and RPC handlers."""

    __slots__ = ("publish", "publish_ephemeral", "rpc")

    def __init__(self, publish: Iterable[str] | None, publish_ephemeral: Iterable[str] | None,
                 rpc_methods: Iterable[str] | None):
        self.publish, self.publish_ephemeral, self.rpc = publish, publish_ephemeral, rpc_methods

    def resolve(self, user: object) -> dict[str, Iterable[str]]:
        publish, ephemeral = self.publish, self.publish_ephemeral
        if publish is None or ephemeral is None:
            stored, temporary = publish_grants(user)
            publish = stored if publish is None else publish
            ephemeral = temporary if ephemeral is None else ephemeral
        methods = rpc_methods(user) if self.rpc is None else self.rpc
        return {"publish": publish, "publish_ephemeral": ephemeral, "rpc": methods}


def _prepare(user: object, allow: Iterable[str] | None, ttl: int | None, info: dict | None = None,
             grants: Grants | None = None) -> tuple[dict, bool]:
    if allow is None:
        allow = allow_patterns(user)
    sub = user_sub(user)
    if info is None:
        info = token_info(user)
    ttl = ts.TOKEN_TTL if ttl is None else ttl
    actions = (grants or Grants(None, None, None)).resolve(user)
    claims = claims_for(sub, allow, ttl, now=issue_time(sub) if sub else None, info=info, **actions)
    return claims, bool(ts.REGISTER_TOKENS)


def _sign_registered(claims: dict, rev: int | None) -> str:
    """Signs connect-token claims, adding ``rev`` (the registration's KV revision) when known: the gateway then
    consumes the token with one revision-guarded write instead of a read and a write."""
    if rev is not None:
        # Protocol order: `rev` right after `exp`, before the optional `info` and the action grants.
        ordered: dict = {}
        for key, value in claims.items():
            ordered[key] = value
            if key == "exp":
                ordered["rev"] = rev
        claims = ordered
    return sign(claims, ts.secret_bytes)


_REGISTRATION_TIMED_OUT = "token registration in NATS KV timed out"


def register(jti: str, timeout: float | None = None) -> int | None:
    """Store ``jti`` create-only (value ``b"1"``) in the ``telegraphy_tokens`` KV bucket; returns the entry's
    revision (``None`` in the rare case where a retried write found its own earlier write stored).

    Raises :class:`TokenRegistrationError` when NATS is not connected, the wait exceeds ``timeout`` (default
    ``PUBLISH_TIMEOUT``) or the key exists already.
    """
    link, bucket = get_link(), ts.TOKENS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return link.call(lambda: _create(link, bucket, jti, limit), limit, _REGISTRATION_TIMED_OUT,
                     TokenRegistrationError)


async def aregister(jti: str, timeout: float | None = None) -> int | None:
    """:func:`register` for async code: awaits the KV write without blocking the event loop."""
    link, bucket = get_link(), ts.TOKENS_BUCKET
    limit = link.timeout if timeout is None else timeout
    return await link.acall(lambda: _create(link, bucket, jti, limit), limit, _REGISTRATION_TIMED_OUT,
                            TokenRegistrationError)


async def _create(link: NatsLink, bucket: str, jti: str, timeout: float) -> int | None:
    """On the link's loop: create-only write of ``jti`` in ``bucket``, retried within ``timeout`` while NATS or
    the bucket's JetStream leader cannot answer (a leader election after a NATS node died). A retry that finds
    the key means an earlier attempt was stored and only its answer was lost: 128 random bits do not collide
    otherwise."""
    from nats.js.errors import KeyWrongLastSequenceError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause, creates = 0.05, 0
    while True:
        remaining = deadline - loop.time()
        try:
            nc = await link.wait_connected(max(remaining, 0.01))
        except ConnectionError as exc:
            raise TokenRegistrationError(str(exc)) from None
        try:
            kv = await asyncio.wait_for(link.bucket(nc, bucket, MAX_TTL, timeout), remaining)
            creates += 1
            return await asyncio.wait_for(kv.create(jti, b"1"), max(deadline - loop.time(), 0.01))
        except KeyWrongLastSequenceError:
            if creates > 1:  # an earlier create of ours was stored; its answer was lost: revision unknown
                return None
            raise TokenRegistrationError("token id already registered") from None
        except Exception as exc:
            link.forget_bucket(bucket)
            if loop.time() + pause >= deadline:
                raise TokenRegistrationError(
                    f"could not register the token id in KV: {type(exc).__name__}: {exc}") from exc
            logger.warning("token registration failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


def mint(user: object, allow: Iterable[str] | None = None, ttl: int | None = None, *,
         timeout: float | None = None, info: dict | None = None, publish: Iterable[str] | None = None,
         publish_ephemeral: Iterable[str] | None = None, rpc: Iterable[str] | None = None) -> str:
    """A fresh single-use connect token for ``user`` (a Django user, ``None``/anonymous, or a ``sub`` string).

    ``allow`` defaults to the patterns the registered event classes grant ``user``. ``ttl`` defaults to
    ``TELEGRAPHY["TOKEN_TTL"]`` and must be <= 3600. The token id is registered in JetStream KV unless
    ``REGISTER_TOKENS`` is False; that wait is bounded by ``timeout`` (default ``PUBLISH_TIMEOUT``).
    ``info`` is the presence claim (PROTOCOL section 11, e.g. ``{"name": user.get_full_name()}``): a dict of at
    most 256 bytes as compact JSON, checked (``ValueError``) before anything is registered.
    ``publish``/``publish_ephemeral``/``rpc`` are the action grants (PROTOCOL section 13); each defaults to
    what the event classes (``publish_patterns(user)``, ``ephemeral``) and RPC handlers (``allow``) grant.
    """
    claims, do_register = _prepare(user, allow, ttl, info, Grants(publish, publish_ephemeral, rpc))
    rev = register(claims["jti"], timeout) if do_register else None
    return _sign_registered(claims, rev)


async def amint(user: object, allow: Iterable[str] | None = None, ttl: int | None = None, *,
                timeout: float | None = None, info: dict | None = None, publish: Iterable[str] | None = None,
                publish_ephemeral: Iterable[str] | None = None, rpc: Iterable[str] | None = None) -> str:
    """:func:`mint` for async code: awaits the KV registration without blocking the event loop.

    Resolving default ``allow`` may touch the database (``allow_patterns``), so pass ``allow`` explicitly
    or call this where synchronous ORM access is fine (it is run in a worker thread here).
    """
    grants = Grants(publish, publish_ephemeral, rpc)
    claims, do_register = await sync_to_async(_prepare)(user, allow, ttl, info, grants)
    rev = await aregister(claims["jti"], timeout) if do_register else None
    return _sign_registered(claims, rev)
