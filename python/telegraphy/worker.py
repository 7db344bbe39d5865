"""The RPC and lifecycle worker (proto/PROTOCOL.md sections 14 and 15): what ``manage.py telegraphy_worker``
runs.

One asyncio loop and one nats-py connection. For each registered RPC method the worker subscribes to
``<prefix>_rpc.<method>`` in the queue group ``telegraphy_workers`` (N workers share the requests; a method
nobody serves answers "no responders", which the gateway turns into ``unavailable``), and to
``<prefix>_lifecycle.<kind>`` for each lifecycle kind that has handlers.

- **Bounded concurrency**: at most ``concurrency`` requests are handled at once. A message waits for a slot in
  its subscription's queue (nats-py holds it; the gateway's ``rpc.timeout`` bounds how long the client waits).
- **Sync handlers** run in the worker's thread pool (``concurrency`` threads), framed by
  ``close_old_connections()`` before and after, as Django's request cycle does; the user is loaded there too.
  **Async handlers** run on the loop (the user is loaded in the pool first).
- **Graceful drain** (``stop()``, SIGTERM in the command): every subscription is drained (the server sends no
  more; held messages are still handled), in-flight requests are answered, then the connection closes; bounded
  by ``drain_timeout``.
- The sender comes from the gateway's headers (PROTOCOL section 13), never from the request's data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import inspect
import json
import logging
from typing import Any, Callable

from django.core.serializers.json import DjangoJSONEncoder

from .conf import telegraphy_settings as ts
from .rpc import LIFECYCLE_KINDS, Handler, LifecycleEvent, RpcError, RpcRequest, handlers, lifecycle_handlers

logger = logging.getLogger("telegraphy.worker")

__all__ = ["Worker", "QUEUE_GROUP", "HEADERS", "rpc_subject", "lifecycle_subject", "decode_sender", "load_user"]

QUEUE_GROUP = "telegraphy_workers"
HEADERS = {"client": "Telegraphy-Client", "user": "Telegraphy-User", "session": "Telegraphy-Session",
           "info": "Telegraphy-Info", "node": "Telegraphy-Node"}
_LOG_INTERVAL = 10.0  # seconds between two logs of NATS connection errors
MAX_REPLY_BYTES = 65536  # the gateway's rpc.max_reply_bytes default: a larger reply would reach no client


def _suffixed(prefix: str, suffix: str) -> str:
    return f"{prefix}{suffix}"  # appended to the prefix's last token: acme.telegraphy -> acme.telegraphy_rpc


def rpc_subject(method: str, prefix: str | None = None) -> str:
    """``<prefix>_rpc.<method>`` (PROTOCOL section 14)."""
    return f"{_suffixed(prefix or ts.SUBJECT_PREFIX, '_rpc')}.{method}"


def lifecycle_subject(kind: str, prefix: str | None = None) -> str:
    """``<prefix>_lifecycle.<kind>`` (PROTOCOL section 15)."""
    return f"{_suffixed(prefix or ts.SUBJECT_PREFIX, '_lifecycle')}.{kind}"


def _b64decode(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).decode("ascii").rstrip("=") != text:
        raise ValueError("not canonical base64url")
    return data


def decode_sender(headers: dict[str, str] | None) -> dict[str, Any]:
    """The sender of an RPC request from its headers: ``sub`` (``""`` when ``Telegraphy-User`` is absent),
    ``client``, ``session``, ``info`` (a dict or None), ``node``. ``ValueError`` for a header that is not what
    PROTOCOL section 13 says (the request is answered ``internal``: a gateway never sends one)."""
    headers = headers or {}
    try:
        user = headers.get(HEADERS["user"])
        sub = "" if user is None else _b64decode(user).decode("utf-8")
        info_text = headers.get(HEADERS["info"])
        info = None if info_text is None else json.loads(_b64decode(info_text).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"bad sender header: {exc}") from None
    if info is not None and not isinstance(info, dict):
        raise ValueError("bad sender header: info is not an object")
    return {"sub": sub, "client": headers.get(HEADERS["client"], ""), "session": headers.get(HEADERS["session"], ""),
            "info": info, "node": headers.get(HEADERS["node"], "")}


def load_user(sub: str) -> Any:
    """The user whose pk is ``sub``, as Django's auth would accept them: ``AnonymousUser`` for ``""``, an
    unknown pk or an inactive user. Touches the database: call it from a thread."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser
    from django.core.exceptions import ValidationError

    if not sub:
        return AnonymousUser()
    model = get_user_model()
    try:
        user = model._default_manager.get(pk=model._meta.pk.to_python(sub))
    except (model.DoesNotExist, ValidationError, ValueError, TypeError):
        return AnonymousUser()
    return user if getattr(user, "is_active", True) else AnonymousUser()


_FORBIDDEN = object()  # what the permission re-check returns instead of a user or a result


def _envelope_error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode("utf-8")


class Worker:
    """Serves the registered RPC methods and lifecycle handlers until :meth:`stop`.

    ``methods``: serve only these (default: every registered one); ``lifecycle``: subscribe to lifecycle kinds
    that have handlers (default True). ``on_ready`` is called once every subscription is live at the server."""

    def __init__(self, *, concurrency: int = 16, drain_timeout: float = 30.0, methods: list[str] | None = None,
                 lifecycle: bool = True, queue: str = QUEUE_GROUP, max_reply_bytes: int = MAX_REPLY_BYTES,
                 on_ready: Callable[["Worker"], None] | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.queue = queue
        self.max_reply_bytes = max_reply_bytes
        self.on_ready = on_ready
        registered = handlers()
        unknown = sorted(set(methods or ()) - set(registered))
        if unknown:
            raise ValueError(f"no handler registered for {', '.join(unknown)}")
        self.handlers = {m: h for m, h in registered.items() if methods is None or m in methods}
        self.lifecycle = {kind: lifecycle_handlers(kind) for kind in LIFECYCLE_KINDS} if lifecycle else {}
        self.lifecycle = {kind: funcs for kind, funcs in self.lifecycle.items() if funcs}
        self._stop: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- lifetime

    def stop(self) -> None:
        """Ask :meth:`run` to drain and return (call it on the worker's loop, e.g. from a signal handler)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        import nats

        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        nc = await self._connect(nats)
        if nc is None:
            logger.info("telegraphy worker stopped before NATS was reached")
            return
        self._pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="telegraphy-worker")
        try:
            subs = []
            for method in self.handlers:
                subs.append(await nc.subscribe(rpc_subject(method), queue=self.queue, cb=self._on_rpc))
            for kind in self.lifecycle:
                subs.append(await nc.subscribe(lifecycle_subject(kind), queue=self.queue, cb=self._on_lifecycle))
            await nc.flush()
            logger.info("telegraphy worker ready: %d rpc methods, lifecycle %s, concurrency %d",
                        len(self.handlers), sorted(self.lifecycle) or "off", self.concurrency)
            if self.on_ready is not None:
                self.on_ready(self)
            await self._stop.wait()
            logger.info("telegraphy worker draining")
            await self._drain(subs)
        finally:
            try:
                await asyncio.wait_for(nc.close(), 5)
            finally:
                self._pool.shutdown(wait=False, cancel_futures=True)
        logger.info("telegraphy worker stopped")

    async def _connect(self, nats: Any) -> Any:
        """The NATS connection, retried until it succeeds (logged every 10 s), or None when stopped first."""
        assert self._stop is not None
        logged = [-_LOG_INTERVAL]

        async def error_cb(exc: Exception) -> None:
            now = asyncio.get_running_loop().time()
            if now - logged[0] >= _LOG_INTERVAL:
                logged[0] = now
                logger.warning("telegraphy worker: NATS connection error: %s", exc or type(exc).__name__)

        async def disconnected_cb() -> None:
            logger.warning("telegraphy worker: disconnected from NATS, reconnecting")

        async def reconnected_cb() -> None:
            logger.info("telegraphy worker: reconnected to NATS")

        options = {"name": "telegraphy-worker", "allow_reconnect": True, "max_reconnect_attempts": -1,
                   "reconnect_time_wait": ts.RECONNECT_WAIT, "connect_timeout": 2, **(ts.NATS_OPTIONS or {})}
        connecting = asyncio.ensure_future(nats.connect(servers=ts.nats_servers, error_cb=error_cb,
                                                        disconnected_cb=disconnected_cb,
                                                        reconnected_cb=reconnected_cb, **options))
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            return None
        return connecting.result()

    async def _drain(self, subs: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        try:
            # The server sends no more; messages nats-py holds are still handed to the callbacks.
            await asyncio.wait_for(asyncio.gather(*(sub.drain() for sub in subs)), self.drain_timeout)
            logger.info("telegraphy worker unsubscribed: %d requests in flight", len(self._tasks))
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(deadline - loop.time(), 0.01))
        except asyncio.TimeoutError:
            pass
        if self._tasks:
            logger.warning("telegraphy worker: %d requests still running after the %ss drain; their answers are lost",
                           len(self._tasks), self.drain_timeout)

    async def _spawn(self, coro: Any) -> None:
        assert self._slots is not None
        await self._slots.acquire()  # held here, the subscription's next message waits: bounded concurrency
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self._slots.release()

        task.add_done_callback(done)

    # -- running user code

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in the pool, framed by close_old_connections() like a Django request."""
        from django.db import close_old_connections

        def framed() -> Any:
            close_old_connections()
            try:
                return func(*args)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self._pool, framed)

    async def _call(self, func: Callable[..., Any], is_async: bool, arg: Any) -> Any:
        if is_async:
            return await func(arg)
        return await self._in_thread(func, arg)

    # -- RPC

    async def _on_rpc(self, msg: Any) -> None:
        await self._spawn(self._answer(msg))

    async def _answer(self, msg: Any) -> None:
        base = rpc_subject("")
        method = msg.subject[len(base):] if msg.subject.startswith(base) else ""
        try:
            reply = await self._reply(method, msg)
        except Exception:  # never leave the gateway waiting for its timeout because of our own bug
            logger.exception("telegraphy worker: rpc %s failed", method)
            reply = _envelope_error("internal", "internal error")
        if msg.reply:
            try:
                await msg.respond(reply)
            except Exception as exc:
                logger.warning("telegraphy worker: could not answer rpc %s: %s", method, exc)

    async def _reply(self, method: str, msg: Any) -> bytes:
        handler = self.handlers.get(method)
        if handler is None:
            return _envelope_error("internal", "no handler for this method")
        try:
            sender = decode_sender(msg.headers)
            data = json.loads(msg.data.decode("utf-8")) if msg.data else None
        except ValueError as exc:
            logger.warning("telegraphy worker: rpc %s: bad request from %s: %s", method,
                           (msg.headers or {}).get(HEADERS["node"], "?"), exc)
            return _envelope_error("internal", "bad rpc request")
        try:
            if handler.is_async:
                user = await self._in_thread(self._permitted_user, handler, sender["sub"])
                result = _FORBIDDEN if user is _FORBIDDEN else await handler.func(
                    self._request(method, data, user, sender))
            else:
                result = await self._in_thread(self._sync_call, handler, method, data, sender)
        except RpcError as exc:
            return _envelope_error(exc.code, exc.message)
        except Exception:
            logger.exception("telegraphy worker: rpc %s raised", method)
            return _envelope_error("internal", "internal error")
        if result is _FORBIDDEN:
            return _envelope_error("forbidden", "rpc not allowed")
        try:
            body = json.dumps({"data": result}, cls=DjangoJSONEncoder, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            logger.error("telegraphy worker: rpc %s returned a value that is not JSON: %s", method, exc)
            return _envelope_error("internal", "internal error")
        if len(body) > self.max_reply_bytes:
            logger.error("telegraphy worker: rpc %s reply is %d bytes, over %d", method, len(body),
                         self.max_reply_bytes)
            return _envelope_error("internal", "rpc reply too large")
        return body

    @staticmethod
    def _request(method: str, data: Any, user: Any, sender: dict[str, Any]) -> RpcRequest:
        return RpcRequest(method=method, data=data, user=user, sub=sender["sub"], client=sender["client"],
                              session=sender["session"], info=sender["info"], node=sender["node"])

    @staticmethod
    def _permitted_user(handler: Handler, sub: str) -> Any:
        user = load_user(sub)
        return user if handler.allow(user) else _FORBIDDEN

    def _sync_call(self, handler: Handler, method: str, data: Any, sender: dict[str, Any]) -> Any:
        user = self._permitted_user(handler, sender["sub"])
        return _FORBIDDEN if user is _FORBIDDEN else handler.func(self._request(method, data, user, sender))

    # -- lifecycle

    async def _on_lifecycle(self, msg: Any) -> None:
        await self._spawn(self._dispatch_lifecycle(msg))

    async def _dispatch_lifecycle(self, msg: Any) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        try:
            payload = json.loads(msg.data.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            logger.warning("telegraphy worker: bad %s lifecycle message: %s", kind, exc)
            return
        user = await self._in_thread(load_user, str(payload.get("user") or ""))
        event = LifecycleEvent(kind=kind, user=user, payload=payload)
        for func in self.lifecycle.get(kind, ()):
            try:
                await self._call(func, inspect.iscoroutinefunction(func), event)
            except Exception:
                logger.exception("telegraphy worker: %s handler %s raised", kind, func.__qualname__)
