"""Every error this package raises on purpose, under one base: ``except telegraphy.TelegraphyError`` catches
them all. Each keeps the built-in base it had (a ``TokenError`` is still a ``ValueError``, a ``PublishError``
still a ``RuntimeError``), and each is importable where it was before (``telegraphy.tokens.TokenError``...).

This module imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

__all__ = [
    "EventDataError",
    "TelegraphyError",
    "PublishError",
    "RevocationError",
    "TokenError",
    "TokenRegistrationError",
    "FilterError",
    "PresenceError",
    "CatalogError",
]


class TelegraphyError(Exception):
    """Base of every public telegraphy error."""


class PublishError(TelegraphyError, RuntimeError):
    """An acknowledged NATS operation failed (NATS unreachable, no stream captures the subject, timeout)."""


class RevocationError(PublishError):
    """The revocation was not stored: NATS unreachable, no answer within the timeout, KV failure."""


class EventDataError(TelegraphyError, TypeError):
    """An event's ``data`` does not match its class's JSON Schema (the catalog's ``data``), raised where the event
    is emitted while ``VALIDATE_DATA`` is on (``DEBUG`` by default): contract drift fails tests, not browsers.
    ``event`` is the event name, ``path`` the JSON path of the first mismatch."""

    def __init__(self, event: str, path: str, message: str):
        super().__init__(f"{event}: data{path} {message} (its JSON Schema: manage.py telegraphy_catalog)")
        self.event, self.path = event, path


class TokenError(TelegraphyError, ValueError):
    """A token that does not verify. ``category`` is ``malformed``, ``bad_signature`` or ``expired``."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category


class TokenRegistrationError(TelegraphyError, RuntimeError):
    """The token id could not be stored in the ``telegraphy_tokens`` KV bucket (NATS down, jti reused...)."""


class FilterError(TelegraphyError, ValueError):
    """The gateway would refuse this filter with ``bad_request``; ``kind`` names why (as the vectors do:
    not_object, bad_key, bad_value, too_many_values, regex_too_long, too_many_conditions, too_many_regexes,
    too_big)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class PresenceError(TelegraphyError, RuntimeError):
    """Presence could not be read from the ``PRESENCE_BUCKET`` KV bucket (NATS unreachable, no answer in time)."""


class CatalogError(TelegraphyError, ValueError):
    """An event catalog entry that breaks proto/PROTOCOL.md section 12; ``reason`` is ``too_big``, ``not_json``,
    ``invalid`` or ``key_mismatch`` (as the vectors say)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
