from telegraphy import BaseEvent, BaseEventModel
from telegraphy.names import key_token

from .models import Book, FilterRow, Note


class BookEvents(BaseEventModel):
    model = Book
    exclude = ["secret_note"]
    presence = True  # testapp.book.present.<pk>


class TagEvents(BaseEventModel):
    model = "testapp.Tag"
    operations = ("create", "delete")
    presence = True  # testapp.tag.present.<escaped label>


class NoteEvents(BaseEventModel):
    """Per-owner stream: notes.<owner_id>.<action>.<pk>, each user may read only their own."""

    model = Note
    name = "notes.{owner_id}"
    fields = ["text"]
    presence = True  # notes.<owner_id>.present.<pk>, inside the owner's notes.<owner_id>.>

    def allow_patterns(self, user):
        if user is None or not user.is_authenticated:
            return []
        return [f"notes.{key_token(user.pk)}.>"]


class ChatMessage(BaseEvent):
    name = "chat.{room}.message"
    presence = True  # a room page is present on chat.<room>.message


class FilterRowEvents(BaseEventModel):
    """testapp.filterrow.<action>.<pk>: rows of the filter vectors' orm_schema, for staff."""

    model = FilterRow
