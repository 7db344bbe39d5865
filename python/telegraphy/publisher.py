"""Publishing events to NATS from Django (or any Python code) without ever blocking or breaking the caller.

``publish()`` validates the name, serialises the data (Django's JSON rules) and hands the message to the
process's NATS link (:mod:`telegraphy.nats_link`), which buffers it and sends it from its own thread; it
returns at once. ``publish(..., ack=True)`` and ``apublish(..., ack=True)`` wait for a JetStream
acknowledgement instead; ``flush()`` waits until NATS has everything. Model events and event classes
(:mod:`telegraphy.events`) publish through here.

Inside ``muted()`` nothing is published; inside ``coalesced()`` on-commit events wait for the end of the block
(:mod:`telegraphy.emitting`).

``get_publisher()`` and ``reset_publisher()`` are the names this module has always had for the process's link
(``get_publisher().stats()``); they are ``telegraphy.nats_link.get_link`` and ``reset_link``.
"""

from __future__ import annotations

import json
from typing import Any

from . import constants, emitting, names
from .conf import telegraphy_settings
from .exceptions import PublishError
from .nats_link import NatsLink, get_link, reset_link

__all__ = [
    "PublishError",
    "Publisher",
    "get_publisher",
    "reset_publisher",
    "encode_data",
    "subject_for",
    "publish",
    "apublish",
    "flush",
]

MAX_EVENT_BYTES = constants.LIMITS_MAX_EVENT_BYTES  # the gateway's default limits.max_event_bytes

# The names of the process's NATS link from before it had a module of its own (issue 14).
Publisher = NatsLink
get_publisher = get_link
reset_publisher = reset_link


_encoder: json.JSONEncoder | None = None  # one for the process: encoding keeps no state between calls


def encode_data(data: Any) -> bytes:
    """Serialise event data as compact UTF-8 JSON with Django's JSON rules (Decimal, datetime, UUID...).

    Raises ``ValueError`` for data that JSON cannot represent or that exceeds 1 MiB.
    """
    global _encoder
    encoder = _encoder
    if encoder is None:
        from django.core.serializers.json import DjangoJSONEncoder

        encoder = _encoder = DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text = encoder.encode(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event data is not JSON-serialisable: {exc}") from exc
    payload = text.encode("utf-8")
    if len(payload) > MAX_EVENT_BYTES:
        raise ValueError(f"event data is {len(payload)} bytes, more than the {MAX_EVENT_BYTES} bytes a gateway accepts")
    return payload


def subject_for(event: str, prefix: str | None = None) -> str:
    """The NATS subject of a valid event name: ``<prefix>.<event>``. Raises ``ValueError`` on a bad name."""
    names.validate_name(event)
    if prefix is None:
        prefix = telegraphy_settings.as_dict()["SUBJECT_PREFIX"]  # the cached dict: cheaper than the attribute
    return f"{prefix}.{event}"


def publish(
    event: str,
    data: Any = None,
    *,
    ack: bool = False,
    timeout: float | None = None,
    on_commit: bool = False,
    using: str | None = None,
) -> Any:
    """Publish ``data`` (JSON-serialisable) as event ``event`` on ``<prefix>.<event>``.

    Without ``ack`` this only enqueues (never blocks, never raises because NATS is down) and returns True,
    or False when the buffer was full and the event was dropped. With ``ack=True`` it waits (bounded by
    ``timeout``) for a JetStream acknowledgement and returns it, raising :class:`PublishError` on failure.
    ``on_commit=True`` defers the (non-acknowledged) publish until the current transaction of database
    ``using`` commits (nothing is sent on rollback) and returns None.
    Raises ``ValueError`` for an invalid name or data JSON cannot represent, before anything is queued.
    Inside ``muted()`` it returns None after these checks, publishing nothing.
    """
    subject = subject_for(event)
    payload = encode_data(data)
    if on_commit and ack:
        raise ValueError("ack=True cannot wait for a commit that has not happened: use one or the other")
    if emitting.is_muted():
        return None
    if on_commit:
        emitting.after_commit(subject, payload, using)
        return None
    link = get_link()
    if ack:
        return link.publish_acked(subject, payload, timeout)
    return link.publish_raw(subject, payload)


async def apublish(event: str, data: Any = None, *, ack: bool = False, timeout: float | None = None) -> Any:
    """:func:`publish` for async code: with ``ack=True`` the acknowledgement is awaited, not blocked on."""
    subject = subject_for(event)
    payload = encode_data(data)
    if emitting.is_muted():
        return None
    link = get_link()
    if ack:
        return await link.apublish_acked(subject, payload, timeout)
    return link.publish_raw(subject, payload)


def flush(timeout: float | None = None) -> bool:
    """Wait (bounded) until every event enqueued so far reached NATS. Returns False on timeout."""
    return get_link().flush(timeout)
