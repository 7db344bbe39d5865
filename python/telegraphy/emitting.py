"""When events leave: after their transaction commits, not at all inside ``muted()``, once per object at the
end of ``coalesced()``.

Both contexts are held in ``contextvars``: they apply to the thread or asyncio task that entered them (and to
tasks it creates meanwhile, which copy its context), not to other requests of the process. Both nest.

``coalesced()`` relies on Django's ``transaction.on_commit`` for what "committed" means: an event whose
transaction (or savepoint) rolls back never reaches it. A committed model event is merged with the object's
earlier ones (:data:`MERGED`: a create then updates is one ``create`` carrying the latest state, a create then a
delete is nothing, an update then a delete is one ``delete``), keeping the place of the object's first committed
event; ``publish(..., on_commit=True)`` events keep their place unmerged. When the outermost block ends, what
has committed is published in that order; what still waits for a transaction that is open then (a data
migration runs in one) is published when that transaction commits, after its other commit callbacks.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, Iterable, Iterator

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .nats_link import get_link

__all__ = ["muted", "coalesced", "is_muted", "current_coalescer", "after_commit", "MERGED"]

_muted: ContextVar[bool] = ContextVar("telegraphy_muted", default=False)
_coalescing: ContextVar["Coalescer | None"] = ContextVar("telegraphy_coalescing", default=None)

# (earlier operation, later operation) -> the one event they make together; None: no event at all.
MERGED: dict[tuple[str, str], str | None] = {
    ("create", "create"): "create",
    ("create", "update"): "create",
    ("create", "delete"): None,
    ("update", "create"): "update",
    ("update", "update"): "update",
    ("update", "delete"): "delete",
    ("delete", "create"): "update",  # the key was deleted and used again: it existed before and exists now
    ("delete", "update"): "update",
    ("delete", "delete"): "delete",
}


def is_muted() -> bool:
    return _muted.get()


def current_coalescer() -> "Coalescer | None":
    return _coalescing.get()


@contextmanager
def muted() -> Iterator[None]:
    """Nothing is published inside: no model events, and ``publish()``/``send()`` (acknowledged or not) only
    validate their arguments and return None. For imports, fixtures and data migrations. Also a decorator."""
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


@contextmanager
def coalesced() -> Iterator[None]:
    """Inside, the model events of one object become one event, published when the outermost block ends
    (see the module's documentation). Also a decorator."""
    outer = _coalescing.get()
    if outer is not None and not outer.exited:
        yield  # nested: the outermost block publishes
        return
    coalescer = Coalescer()
    token = _coalescing.set(coalescer)
    try:
        yield
    finally:
        _coalescing.reset(token)
        coalescer.exit()  # also after an exception: what committed before it is real


def publish_now(subject: str, payload: bytes) -> None:
    get_link().publish_raw(subject, payload)


def after_commit(subject: str, payload: bytes, using: str | None) -> None:
    """Publish when the transaction of database ``using`` commits (at once in autocommit)."""
    coalescer = _coalescing.get()
    if coalescer is not None:
        coalescer.add(object(), None, {None: subject}, payload, using, ())
        return
    transaction.on_commit(partial(publish_now, subject, payload), using=using)


class _Entry:
    __slots__ = ("operation", "subjects", "payload", "operations")

    def __init__(self, operation: str | None, subjects: dict, payload: bytes, operations: Iterable[str]):
        self.operation = operation
        self.subjects = subjects
        self.payload = payload
        self.operations = operations

    def subject(self) -> str | None:
        """The subject to publish, or None when the class does not publish this operation."""
        if self.operation is not None and self.operation not in self.operations:
            return None
        return self.subjects[self.operation]


class Coalescer:
    """The committed events of one outermost ``coalesced()`` block, merged per object, in commit order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Any, _Entry] = {}  # insertion order: each object's first committed event
        self._aliases: set[str] = set()
        self.exited = False
        self._open: set[str] = set()  # databases whose transaction was open when the block ended

    def add(self, key: Any, operation: str | None, subjects: dict, payload: bytes, using: str | None,
            operations: Iterable[str]) -> None:
        """Record an event now; it counts when its transaction commits. ``subjects`` maps each operation the
        merged event may end with to its subject; ``operations`` are those the class publishes."""
        alias = using or DEFAULT_DB_ALIAS
        with self._lock:
            self._aliases.add(alias)
        transaction.on_commit(partial(self._committed, alias, key, _Entry(operation, subjects, payload, operations)),
                              using=alias)

    def _committed(self, alias: str, key: Any, entry: _Entry) -> None:
        with self._lock:
            if not self.exited or alias in self._open:
                self._merge(key, entry)
                return
        # Committed after the block ended, outside the transactions it waits for (a task that outlived it).
        subject = entry.subject()
        if subject is not None:
            publish_now(subject, entry.payload)

    def _merge(self, key: Any, entry: _Entry) -> None:
        earlier = self._entries.get(key)
        if earlier is None:
            self._entries[key] = entry
            return
        operation = MERGED[(earlier.operation, entry.operation)]
        if operation is None:
            del self._entries[key]
            return
        earlier.operation, earlier.subjects, earlier.payload = operation, entry.subjects, entry.payload

    def exit(self) -> None:
        """The outermost block ended: publish what committed; what waits for an open transaction follows
        when it commits (a rollback discards it with the transaction's other callbacks)."""
        with self._lock:
            open_aliases = {alias for alias in self._aliases if connections[alias].in_atomic_block}
            self._open = set(open_aliases)
            self.exited = True
        self.flush()
        for alias in open_aliases:
            transaction.on_commit(partial(self._deferred_flush, alias), using=alias)

    def _deferred_flush(self, alias: str) -> None:
        with self._lock:
            self._open.discard(alias)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            subject = entry.subject()
            if subject is not None:
                publish_now(subject, entry.payload)

