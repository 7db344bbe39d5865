"""Who is present on a channel (proto/PROTOCOL.md section 11), read from the Django side.

The gateways keep presence in the JetStream KV bucket ``PRESENCE_BUCKET`` (gateway ``presence.bucket``): one
entry per (channel, session), key ``<channel>.<client>``, value ``{"user": ..., "info": ...}``, refreshed by the
gateway holding the socket and removed when the client leaves (or expired by the bucket's ``max_age`` when its
gateway died). This module reads that bucket: one ordered consumer over ``<channel>.*`` per call, which replays
the current entries and is dropped. It never writes (presence is the gateways'); a bucket that does not exist
yet means nobody is present.

    import telegraphy
    telegraphy.presence("shop.order.42")        # {"clients": [{"client": ..., "user": "7", "info": {...}}], "truncated": False}
    telegraphy.presence_stats("shop.order.42")  # {"clients": 3, "users": 2}
"""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import Any

from . import names
from .conf import telegraphy_settings as ts
from .exceptions import PresenceError
from .kv_replay import current_entries
from .nats_link import NatsLink, get_link

__all__ = ["presence", "apresence", "presence_stats", "apresence_stats", "MAX_CLIENTS"]

MAX_CLIENTS = 10000  # most entries one call reads (a bound on the work of a request path)
_TIMED_OUT = "presence read timed out"


def _check(channel: str, limit: int) -> None:
    names.validate_name(channel)  # presence channels have no wildcards (ValueError)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLIENTS:
        raise ValueError(f"limit must be an integer in 1..{MAX_CLIENTS}, got {limit!r}")


def presence(channel: str, *, limit: int = 100, timeout: float | None = None) -> dict[str, Any]:
    """The clients present on ``channel``: ``{"clients": [{"client", "user", "info"?}], "truncated": bool}``
    (at most ``limit`` clients; ``truncated`` when there were more). Raises ``ValueError`` for a bad channel,
    :class:`telegraphy.PresenceError` when NATS does not answer within ``timeout`` (default PUBLISH_TIMEOUT)."""
    _check(channel, limit)
    link = get_link()
    limit_s = link.timeout if timeout is None else timeout
    clients, truncated = link.call(lambda: _read(link, channel, limit, limit_s), limit_s, _TIMED_OUT, PresenceError)
    return {"clients": clients, "truncated": truncated}


async def apresence(channel: str, *, limit: int = 100, timeout: float | None = None) -> dict[str, Any]:
    """:func:`presence` for async code."""
    _check(channel, limit)
    link = get_link()
    limit_s = link.timeout if timeout is None else timeout
    clients, truncated = await link.acall(lambda: _read(link, channel, limit, limit_s), limit_s, _TIMED_OUT,
                                          PresenceError)
    return {"clients": clients, "truncated": truncated}


def _stats(clients: list[dict[str, Any]]) -> dict[str, int]:
    return {"clients": len(clients), "users": len({c["user"] for c in clients if c["user"]})}


def presence_stats(channel: str, *, timeout: float | None = None) -> dict[str, int]:
    """How many are present on ``channel``: ``{"clients": N, "users": M}`` (distinct non-empty users), counted
    over at most MAX_CLIENTS entries."""
    return _stats(presence(channel, limit=MAX_CLIENTS, timeout=timeout)["clients"])


async def apresence_stats(channel: str, *, timeout: float | None = None) -> dict[str, int]:
    """:func:`presence_stats` for async code."""
    return _stats((await apresence(channel, limit=MAX_CLIENTS, timeout=timeout))["clients"])


async def _read(link: NatsLink, channel: str, limit: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
    """On the link's loop: replay the channel's current entries (:mod:`telegraphy.kv_replay`)."""
    from nats.js.errors import BucketNotFoundError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    nc = await link.wait_connected(timeout)
    try:
        kv = await asyncio.wait_for(nc.jetstream(timeout=timeout).key_value(ts.PRESENCE_BUCKET), timeout)
    except BucketNotFoundError:
        return [], False
    clients: list[dict[str, Any]] = []
    truncated = False
    async with aclosing(current_entries(kv, f"{channel}.*", deadline)) as entries:
        async for entry in entries:
            client = entry.key.rsplit(".", 1)[-1]
            try:
                value = json.loads(entry.value)
            except ValueError:
                continue
            if not isinstance(value, dict) or not isinstance(value.get("user"), str):
                continue
            if len(clients) >= limit:
                truncated = True
                break
            shown = {"client": client, "user": value["user"]}
            if isinstance(value.get("info"), dict):
                shown["info"] = value["info"]
            clients.append(shown)
    return clients, truncated
