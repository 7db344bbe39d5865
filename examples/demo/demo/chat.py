"""The chat's rules, in one place for its two ways in: the ``chat.send`` RPC the page calls over its socket
(demo/rpc.py, served by ``manage.py telegraphy_worker``) and the form's no-JavaScript fallback (views.chat_send).
Validate, save, then publish ``demo.chat.<room>.message``."""

from telegraphy.names import is_valid_token

from .events import ChatMessage
from .models import Message

ROOM_MAX = Message._meta.get_field("room").max_length  # 64 characters
RECENT = 50  # messages a room's page shows when it loads


class ChatError(Exception):
    """A message refused: ``code`` for programs (the RPC error code), ``message`` for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def valid_room(room: object) -> bool:
    """A room name is one event-name token of at most 64 characters ([A-Za-z0-9_-])."""
    return is_valid_token(room) and len(room) <= ROOM_MAX


def clean(room: object, text: object) -> tuple[str, str]:
    """``(room, text)`` as they will be saved, or ChatError: the checks come before any database work."""
    if not valid_room(room):
        raise ChatError("bad_room", f"room names are 1..{ROOM_MAX} characters of [A-Za-z0-9_-]")
    if not isinstance(text, str):
        raise ChatError("bad_text", "text must be a string")
    text = text.strip()
    if not text:
        raise ChatError("empty", "say something")
    if len(text) > Message.TEXT_MAX:
        raise ChatError("too_long", f"at most {Message.TEXT_MAX} characters")
    return room, text


def event_data(message: Message) -> dict:
    """What a room's pages receive (and render when they load): the author by name, as the page shows it."""
    return {"id": message.pk, "user": message.author.get_username(), "text": message.text,
            "at": message.created_at.isoformat()}


def post(user, room: object, text: object) -> Message:
    """Save a message by ``user`` (signed in) and publish it to the room. Raises ChatError."""
    if not getattr(user, "is_authenticated", False):
        raise ChatError("sign_in", "sign in first")
    room, text = clean(room, text)
    message = Message.objects.create(room=room, author=user, text=text)
    # Saved (committed: Django's autocommit) before anyone hears of it; the publish only enqueues, it never
    # waits for NATS nor raises because NATS is down.
    ChatMessage.send(event_data(message), room=room)
    return message


def recent(room: str) -> list[dict]:
    """The room's last messages, oldest first, as event data."""
    last = Message.objects.filter(room=room).select_related("author").order_by("-pk")[:RECENT]
    return [event_data(m) for m in reversed(last)]
