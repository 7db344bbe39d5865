"""What the demo publishes, and who may receive it (the patterns end up in each user's token)."""

from telegraphy import BaseEvent, BaseEventModel
from telegraphy.names import key_token

from .models import Item


class ItemEvents(BaseEventModel):
    """demo.item.<created|updated|deleted>.<pk>: every item, for staff only (the default allowed())."""

    model = Item
    fields = ["name", "description", "price", "owner", "updated_at"]

    def to_dict(self, instance):
        data = super().to_dict(instance)
        data["owner_name"] = instance.owner.get_username()
        return data


class MyItemEvents(ItemEvents):
    """demo.mine.<owner_id>.<action>.<pk>: the same items, keyed by owner, so that a user's token can allow
    exactly their own: demo.mine.<their id>.>"""

    name = "demo.mine.{owner_id}"

    def allow_patterns(self, user):
        if user is None or not user.is_authenticated:
            return []
        return [f"demo.mine.{key_token(user.pk)}.>"]


class ItemViewers(BaseEvent):
    """demo.viewing.<owner_id>.<pk>: never sent; a presence channel (PROTOCOL section 11) for "who else is viewing
    this item". Its allow patterns put it in the tokens: staff may be present on every item's channel, a user on
    those of their own items, so the owner and the staff viewing an item see each other. (``presence = True`` on
    ItemEvents or MyItemEvents would not do: their channels, demo.item.present.<pk> and
    demo.mine.<owner_id>.present.<pk>, are each inside the grant of only one of the two.)"""

    name = "demo.viewing.{owner_id}.{pk}"
    presence = True

    def allow_patterns(self, user):
        if user is None or not user.is_authenticated:
            return []
        if user.is_staff:
            return ["demo.viewing.*.*"]
        return [f"demo.viewing.{key_token(user.pk)}.*"]


class ChatMessage(BaseEvent):
    """demo.chat.<room>.message, for any signed-in user (the default allowed()); a room's page is present on
    that name too, so ``ChatMessage.present(room=...)`` says who is in the room. Only the ``chat.send`` RPC
    handler (demo/rpc.py, in the worker) publishes it, after saving the message: no token may publish it."""

    name = "demo.chat.{room}.message"
    presence = True


class ChatTyping(BaseEvent):
    """demo.chat.<room>.typing: "alice is typing", published by the pages themselves (client publish, PROTOCOL
    section 13.1) with empty data; the receivers show the sender the gateway stamps (``from.user``), never
    anything from the data. Ephemeral: never stored, so it is not in history and never recovered.

    The publish grant is the typing names and nothing else: every room is open to every signed-in user here
    (the pages receive any room's events, the default allowed()), so ``demo.chat.*.typing`` is exactly the
    rooms a user may be in, and a token can publish no message, presence or model event. (A site with
    private rooms would grant the rooms the user is a member of.)"""

    name = "demo.chat.{room}.typing"
    ephemeral = True

    def publish_patterns(self, user):
        if user is None or not user.is_authenticated:
            return []
        return ["demo.chat.*.typing"]
