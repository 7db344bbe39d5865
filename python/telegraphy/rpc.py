"""RPC handlers and lifecycle handlers (proto/PROTOCOL.md sections 14 and 15), as a Django site declares them::

    import telegraphy

    @telegraphy.rpc("chat.send", allow=lambda user: user.is_authenticated)
    def send(request):                      # sync handlers run in a thread: the ORM is fine here
        if not request.data.get("text"):
            raise telegraphy.RpcError("empty", "say something")
        return {"id": Message.objects.create(author=request.user, text=request.data["text"]).pk}

    @telegraphy.on_disconnect
    async def gone(event): ...              # async handlers run on the worker's loop

Declare them in ``<app>/rpc.py`` (or ``events.py``); :func:`discover` imports those modules. This module is
the registry: ``manage.py telegraphy_worker`` (:mod:`telegraphy.worker`) serves what it holds, and minting
(:func:`rpc_methods`) grants each user the methods whose ``allow`` admits them (the token's ``rpc`` claim).

``telegraphy.rpc`` is the decorator (the package exports it under this module's name): import this module's
other names with ``from telegraphy.rpc import RpcRequest, handlers, ...``.
"""

from __future__ import annotations

import inspect
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from . import constants, names
from .exceptions import TelegraphyError

__all__ = [
    "RpcError",
    "RpcRequest",
    "LifecycleEvent",
    "Handler",
    "rpc",
    "on_connect",
    "on_disconnect",
    "on_subscribe",
    "on_unsubscribe",
    "handlers",
    "lifecycle_handlers",
    "rpc_methods",
    "unregister",
    "discover",
    "PROTOCOL_ERROR_CODES",
    "LIFECYCLE_KINDS",
    "MAX_MESSAGE_BYTES",
]

# PROTOCOL section 3 error codes, section 14's gateway codes and section 12's unknown_event included
# (constants.json error_codes): a handler's RpcError may not use them, so a client can tell its codes from the
# protocol's.
PROTOCOL_ERROR_CODES = frozenset(constants.ERROR_CODES)
LIFECYCLE_KINDS = ("connect", "disconnect", "subscribe", "unsubscribe")
MAX_MESSAGE_BYTES = 256
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, at a character boundary."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


class RpcError(TelegraphyError):
    """Raise it in a handler to answer the client ``{"type":"error","id":..,"code":code,"message":message}``.

    ``code``: 1..64 characters of ``[a-z0-9_]`` starting with a letter, not one of the protocol's own codes
    (``ValueError``); ``message``: shown to the client, cut to 256 bytes of UTF-8 (keep secrets out of it).
    """

    def __init__(self, code: str, message: str = ""):
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise ValueError(f"RpcError code must be 1..64 characters of [a-z0-9_] starting with a letter, "
                             f"got {code!r}")
        if code in PROTOCOL_ERROR_CODES:
            raise ValueError(f"RpcError code {code!r} is a protocol error code; choose one of your own")
        message = truncate_utf8(str(message), MAX_MESSAGE_BYTES)
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class RpcRequest:
    """What a handler receives. ``user`` is loaded from the database (``AnonymousUser`` for an anonymous
    client, or a user that no longer exists or is inactive); ``sub`` is the token's user id as sent;
    ``client``/``session``/``info``/``node`` come from the gateway (PROTOCOL section 13), never from the client."""

    method: str
    data: Any
    user: Any
    sub: str
    client: str
    session: str
    info: dict | None = None
    node: str = ""


@dataclass
class LifecycleEvent:
    """A lifecycle message (PROTOCOL section 15): ``kind``, the loaded ``user``, and the gateway's payload in
    ``payload``, also readable as attributes (``event.session``, ``.client``, ``.code``, ``.reason``, ``.event``,
    ``.sub``, ``.time``... as the kind has them)."""

    kind: str
    user: Any
    payload: dict = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "payload":
            raise AttributeError(name)
        try:
            return self.payload[name]
        except KeyError:
            raise AttributeError(name) from None


def _authenticated(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False))


@dataclass
class Handler:
    method: str
    func: Callable[..., Any]
    allow: Callable[[Any], bool]
    is_async: bool

    @property
    def origin(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


_lock = threading.Lock()
_handlers: dict[str, Handler] = {}
_lifecycle: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in LIFECYCLE_KINDS}
_discovered = False


def rpc(method: str, *, allow: Callable[[Any], bool] | None = None) -> Callable[[Callable], Callable]:
    """Register the decorated function (sync or ``async``) as the handler of RPC ``method`` (an event-style
    name without wildcards, e.g. ``"chat.send"``). ``allow(user)`` (default: authenticated users) decides
    whether a user's tokens carry the method in their ``rpc`` grant; the worker asks it again for each call
    with the user as the database has it then (``forbidden`` when it says no). A method has one handler: a
    second, different function for it raises ``ValueError`` (re-importing the same module replaces it)."""
    names.validate_name(method)
    check = allow or _authenticated

    def decorate(func: Callable) -> Callable:
        handler = Handler(method, func, check, inspect.iscoroutinefunction(func))
        with _lock:
            old = _handlers.get(method)
            if old is not None and old.origin != handler.origin:
                raise ValueError(f"rpc method {method!r} already has a handler ({old.origin})")
            _handlers[method] = handler
        return func

    return decorate


def _lifecycle_decorator(kind: str) -> Callable[[Callable], Callable]:
    def decorate(func: Callable) -> Callable:
        with _lock:
            _lifecycle[kind][f"{func.__module__}.{func.__qualname__}"] = func
        return func

    decorate.__name__ = f"on_{kind}"
    decorate.__doc__ = (f"Run the decorated function (sync or async) with a :class:`LifecycleEvent` for each "
                        f"``{kind}`` message of the gateways (PROTOCOL section 15; the gateway's "
                        f"``lifecycle.events`` must include it).")
    return decorate


on_connect = _lifecycle_decorator("connect")
on_disconnect = _lifecycle_decorator("disconnect")
on_subscribe = _lifecycle_decorator("subscribe")
on_unsubscribe = _lifecycle_decorator("unsubscribe")


def discover() -> None:
    """Import ``<app>.rpc`` of every installed app, once (``<app>.events`` is imported at start-up already)."""
    global _discovered
    if _discovered:
        return
    from django.apps import apps

    if not apps.ready:
        # Outside a configured Django project (a script minting tokens with only TELEGRAPHY_* variables, as
        # deploy/tests/cluster_test.py does): no app to look in; only handlers registered by hand count.
        return
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("rpc")
    _discovered = True


def handlers() -> dict[str, Handler]:
    """The registered RPC handlers by method (after :func:`discover`)."""
    discover()
    with _lock:
        return dict(_handlers)


def lifecycle_handlers(kind: str) -> list[Callable[..., Any]]:
    discover()
    with _lock:
        return list(_lifecycle[kind].values())


def rpc_methods(user: Any) -> list[str]:
    """The methods whose ``allow(user)`` is true: the ``rpc`` grant of ``user``'s tokens."""
    return [method for method, handler in handlers().items() if handler.allow(user)]


def unregister(target: str | Callable) -> None:
    """Forget an RPC method (by name) or a lifecycle handler (by function). Mostly for tests."""
    with _lock:
        if isinstance(target, str):
            _handlers.pop(target, None)
            return
        for registered in _lifecycle.values():
            registered.pop(f"{target.__module__}.{target.__qualname__}", None)
