"""django-telegraphy: Django models and code publish events to NATS; the Telegraphy gateway fans them out to
browsers over WebSocket (protocol v1, see proto/PROTOCOL.md).

    import telegraphy
    telegraphy.publish("chat.lobby.message", {"text": "hi"})        # sync, never blocks on NATS
    await telegraphy.apublish("chat.lobby.message", {"text": "hi"})  # async
"""

from .events import BaseEvent, BaseEventModel, allow_patterns
from .publisher import PublishError, apublish, flush, publish

__version__ = "0.1.0"

__all__ = ["BaseEvent", "BaseEventModel", "PublishError", "allow_patterns", "apublish", "flush", "publish"]
