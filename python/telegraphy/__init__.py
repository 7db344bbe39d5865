"""django-telegraphy: Django models and code publish events to NATS; the Telegraphy gateway fans them out to
browsers over WebSocket (protocol v1, see proto/PROTOCOL.md).

    import telegraphy
    telegraphy.publish("chat.lobby.message", {"text": "hi"})        # sync, never blocks on NATS
    await telegraphy.apublish("chat.lobby.message", {"text": "hi"})  # async
    telegraphy.revoke_user(user)                                      # close the user's sockets (4003)
    telegraphy.grant_changed(user)                                    # the same, after commit (allow changed)
    telegraphy.presence("shop.order.42")                              # who is viewing it (section 11)
    with telegraphy.muted(): ...       # no events (imports, fixtures, data migrations)
    with telegraphy.coalesced(): ...   # one event per saved object, at the end

    @telegraphy.rpc("chat.send")                                      # a method browsers call (section 14),
    def send(request): ...                                            # served by manage.py telegraphy_worker

Every error it raises on purpose is a ``telegraphy.TelegraphyError`` (see ``telegraphy.exceptions``).
"""

from .auth_signals import grant_changed
from .emitting import coalesced, muted
from .events import BaseEvent, BaseEventModel, allow_patterns
from .exceptions import (
    CatalogError,
    EventDataError,
    FilterError,
    PresenceError,
    PublishError,
    RevocationError,
    TelegraphyError,
    TokenError,
    TokenRegistrationError,
)
from .presence import apresence, apresence_stats, presence, presence_stats
from .publisher import apublish, flush, publish
from .rpc import RpcError, RpcRequest, LifecycleEvent, on_connect, on_disconnect, on_subscribe, on_unsubscribe, rpc
from .revocations import arevoke_session, arevoke_user, arevoke_users, revoke_session, revoke_user, revoke_users

__version__ = "0.1.0"

__all__ = [
    "BaseEvent",
    "BaseEventModel",
    "CatalogError",
    "EventDataError",
    "FilterError",
    "LifecycleEvent",
    "PresenceError",
    "PublishError",
    "RevocationError",
    "RpcError",
    "RpcRequest",
    "TelegraphyError",
    "TokenError",
    "TokenRegistrationError",
    "allow_patterns",
    "apresence",
    "apresence_stats",
    "apublish",
    "arevoke_session",
    "arevoke_user",
    "arevoke_users",
    "coalesced",
    "flush",
    "grant_changed",
    "muted",
    "on_connect",
    "on_disconnect",
    "on_subscribe",
    "on_unsubscribe",
    "presence",
    "presence_stats",
    "publish",
    "revoke_session",
    "revoke_user",
    "revoke_users",
    "rpc",
]
