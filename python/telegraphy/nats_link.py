"""The process's link to NATS: one background thread owns an asyncio loop and the nats-py client, and every
other module reaches NATS through it (events: :mod:`telegraphy.publisher`; KV writes: :mod:`telegraphy.minting`
and :mod:`telegraphy.revocations`).

What it does:

- Buffered publishing: ``publish_raw()`` appends to a bounded in-memory buffer and returns (it wakes the thread
  only when that one is idle); the thread sends the buffer in batches and confirms each batch with PING/PONG
  round trips. While events stream in, a batch that is not full leaves at most every ``_LINGER`` (10 ms): a
  loop of saves then pays for a batch, not for each event, in time the thread holds the GIL (issue 25); an
  event after a quiet moment leaves at once. A batch that is not confirmed
  (the link dropped) goes back to the front of the buffer and is sent again after the reconnect, so delivery
  across NATS restarts is at-least-once for what fits in the buffer (``PUBLISH_BUFFER``); beyond that, new
  events are dropped, counted and logged. Each event carries a ``Nats-Msg-Id`` header, so a JetStream stream
  capturing it (the gateway's history stream) stores a resent event once. ``flush()`` waits until NATS has
  everything; ``publish_acked()`` waits for a JetStream acknowledgement.
- The bridge for other work on the loop: ``call()`` (sync callers) and ``acall()`` (async callers, awaited
  without blocking their loop) run a coroutine on the link's loop and bound the wait; ``wait_connected()``
  and ``bucket()`` are what such coroutines use (KV buckets are cached per link, created if missing).
- Its lifetime: the thread is started lazily and again after ``fork()`` (gunicorn/uwsgi workers); the
  process-wide link (``get_link()``) is closed when Django's ``setting_changed`` says ``TELEGRAPHY`` changed
  (the next use opens one with the new settings), and at interpreter exit the buffer gets a bounded chance to
  reach NATS.

Why a thread and not ``async_to_sync``/``asyncio.run``: a nats-py client bound to a short-lived loop stays
"connected" after a NATS restart while its publishes are silently lost; its reconnect logic only runs while
its own loop runs, which this thread guarantees.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import itertools
import logging
import os
import threading
import time
from typing import Any, Awaitable, Callable, Iterable

from django.core.signals import setting_changed

from .conf import telegraphy_settings
from .exceptions import PublishError

logger = logging.getLogger("telegraphy")

__all__ = ["NatsLink", "get_link", "reset_link"]

_BATCH_BYTES = 512 * 1024
_BATCH_ITEMS = 1000
_LINGER = 0.01  # seconds: while events stream in, at most one (non-full) batch leaves per _LINGER (_pump)
_DROP_LOG_INTERVAL = 10.0
_GRACE = 0.5  # a bridged call waits this much longer than the timeout its coroutine enforces itself

_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def _message_id() -> str:
    # Unique per event (process-random prefix + counter), the same across resends of that event.
    return f"{_ID_PREFIX}-{os.getpid()}-{next(_ids)}"


class _Item:
    __slots__ = ("subject", "payload", "future", "headers")

    def __init__(self, subject: str, payload: bytes, future: concurrent.futures.Future | None = None):
        self.subject = subject
        self.payload = payload
        self.future = future
        # A JetStream stream that captures the subject (the gateway's history stream) drops a resent copy
        # with the same Nats-Msg-Id within its duplicate window: resends after a lost link do not duplicate.
        # Given by the link's thread when the item is first sent (not in the caller's thread), kept for resends.
        self.headers: dict[str, str] | None = None

    def message_headers(self) -> dict[str, str]:
        headers = self.headers
        if headers is None:
            headers = self.headers = {"Nats-Msg-Id": _message_id()}
        return headers


class NatsLink:
    """A process-local NATS link running in its own thread. Thread-safe; fork-aware."""

    def __init__(
        self,
        servers: Iterable[str] | str = "nats://127.0.0.1:4222",
        *,
        buffer_size: int = 10000,
        timeout: float = 5.0,
        reconnect_wait: float = 1.0,
        kv_replicas: int = 1,
        nats_options: dict[str, Any] | None = None,
    ) -> None:
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.buffer_size = int(buffer_size)
        self.timeout = float(timeout)
        self.reconnect_wait = float(reconnect_wait)
        self.kv_replicas = int(kv_replicas)
        self.nats_options = dict(nats_options or {})
        self._reset_state()


    # ----------------------------------------------------------------- state, thread, fork

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._buffer: collections.deque[_Item] = collections.deque()
        # True while the pump waits for work: the next enqueue wakes it (one wake-up per batch, not per event).
        self._sleeping = False
        self._in_flight = 0
        self._published = 0
        self._batches = 0  # batches confirmed by NATS (stats()): what the link thread's work is counted in
        self._dropped = 0
        self._drops_unlogged = 0
        self._last_drop_log = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task | None = None
        self._nc: Any = None
        self._buckets: dict[str, Any] = {}  # KV bucket name -> nats-py KeyValue (loop side)
        self._closed = False
        self._started = threading.Event()
        self._attempted = threading.Event()  # first connect attempt finished (either way)

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():
            # Forked child: the parent's thread does not exist here and its buffer belongs to the parent.
            self._reset_state()
        if self._closed:
            raise PublishError("the NATS link is closed")
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            return loop
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                self._loop = asyncio.new_event_loop()
                self._started.clear()
                self._thread = threading.Thread(target=self._run_thread, name="telegraphy-nats-link", daemon=True)
                self._thread.start()
            loop = self._loop
        self._started.wait(5)
        return loop

    def _run_thread(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._main_task = loop.create_task(self._main())
            loop.call_soon(self._started.set)
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - a bug; keep the process alive
            logger.exception("telegraphy NATS link thread crashed")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (buffered events that were not sent are discarded). Used by tests and resets."""
        if self._pid != os.getpid():
            self._reset_state()
            self._closed = True
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def stop() -> None:
            task = self._main_task
            # nats-py's connect loop swallows a cancellation now and then (it waits on its own futures under
            # `except CancelledError: pass`), so cancel until the task is really done, bounded.
            for _ in range(int(timeout / 0.05)):
                if task is None or task.done():
                    break
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            nc = self._nc
            if nc is not None and (nc.is_connected or nc.is_reconnecting):
                try:
                    await asyncio.wait_for(nc.close(), timeout)
                except Exception:
                    pass

        try:
            asyncio.run_coroutine_threadsafe(stop(), loop)
        except RuntimeError:  # loop already closed
            return
        thread.join(timeout + 1)

    # ----------------------------------------------------------------- public API (any thread)

    def publish_raw(self, subject: str, payload: bytes) -> bool:
        """Enqueue one message. Returns False when the buffer is full (the message is dropped and counted)."""
        loop = self._ensure_started()
        with self._lock:
            if len(self._buffer) >= self.buffer_size:
                self._dropped += 1
                self._drops_unlogged += 1
                now = time.monotonic()
                if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
                    logger.warning(
                        "telegraphy: publish buffer full (%d events, NATS unreachable?); dropped %d event(s), "
                        "%d in total",
                        self.buffer_size,
                        self._drops_unlogged,
                        self._dropped,
                    )
                    self._last_drop_log = now
                    self._drops_unlogged = 0
                return False
            self._buffer.append(_Item(subject, payload))
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._wake(loop)
        return True

    def publish_acked_future(self, subject: str, payload: bytes) -> concurrent.futures.Future:
        """Enqueue a JetStream publish; the future resolves to the PubAck (or a PublishError)."""
        loop = self._ensure_started()
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._buffer.append(_Item(subject, payload, future))
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._wake(loop)
        return future

    def publish_acked(self, subject: str, payload: bytes, timeout: float | None = None) -> Any:
        """Enqueue a JetStream publish and wait (at most ``timeout``) for its PubAck; raises PublishError."""
        future = self.publish_acked_future(subject, payload)
        return _result(future, self.timeout if timeout is None else timeout, f"publish to {subject!r} was not acknowledged")

    async def apublish_acked(self, subject: str, payload: bytes, timeout: float | None = None) -> Any:
        """:meth:`publish_acked` for async callers: the acknowledgement is awaited, not blocked on."""
        future = self.publish_acked_future(subject, payload)
        return await _aresult(future, self.timeout if timeout is None else timeout,
                              f"publish to {subject!r} was not acknowledged")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything enqueued so far is confirmed by NATS. Returns False on timeout."""
        if self._pid != os.getpid() or self._thread is None:
            return not self._buffer
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._idle:
            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connected": self.connected,
                "buffered": len(self._buffer) + self._in_flight,
                "published": self._published,
                "batches": self._batches,
                "dropped": self._dropped,
            }

    @property
    def connected(self) -> bool:
        nc = self._nc
        return bool(nc is not None and nc.is_connected and self._pid == os.getpid())

    def call(self, coro_fn: Callable[[], Awaitable[Any]], timeout: float, message: str,
             error: type[Exception] = PublishError) -> Any:
        """Run ``await coro_fn()`` on the link's loop and return its result (sync bridge). The coroutine bounds
        its own work by ``timeout``; past that (plus a grace) the caller gets ``error(message ...)``, and so it
        does for a failure that is not already a ``PublishError`` or an ``error``."""
        loop = self._ensure_started()
        future = asyncio.run_coroutine_threadsafe(coro_fn(), loop)
        return _result(future, timeout + _GRACE, message, error)

    async def acall(self, coro_fn: Callable[[], Awaitable[Any]], timeout: float, message: str,
                    error: type[Exception] = PublishError) -> Any:
        """:meth:`call` for async callers: their own loop waits without blocking."""
        loop = self._ensure_started()
        future = asyncio.run_coroutine_threadsafe(coro_fn(), loop)
        return await _aresult(future, timeout + _GRACE, message, error)

    def run(self, coro_fn: Any, timeout: float | None = None) -> Any:
        """Run ``await coro_fn(nc)`` on the link's loop with its connected client (tools, checks)."""
        limit = self.timeout if timeout is None else timeout

        async def connected_call() -> Any:
            return await coro_fn(await self.wait_connected(limit))

        return self.call(connected_call, limit, "NATS operation timed out")

    # ----------------------------------------------------------------- loop side

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._wake_event_set)
        except RuntimeError:  # loop closed under us (close() raced): nothing to wake
            pass

    def _wake_event_set(self) -> None:
        self._pending.set()

    async def _main(self) -> None:
        import nats

        self._link_generation = 0
        self._pending = asyncio.Event()
        self._attempt_done = asyncio.Event()
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._errors_logged = 0.0

        async def disconnected_cb() -> None:
            self._link_generation += 1
            self._up.clear()
            self._down.set()
            if self._nc is not None and not self._nc.is_closed:
                logger.warning("telegraphy: disconnected from NATS, reconnecting (events are buffered)")

        async def reconnected_cb() -> None:
            self._down.clear()
            self._up.set()
            logger.info("telegraphy: reconnected to NATS")

        async def error_cb(exc: Exception) -> None:
            self._attempted.set()
            self._attempt_done.set()
            now = time.monotonic()
            if now - self._errors_logged >= _DROP_LOG_INTERVAL:
                self._errors_logged = now
                logger.warning("telegraphy: NATS connection error: %s", exc or type(exc).__name__)

        nc = nats.NATS()
        self._nc = nc
        options = {
            "name": "telegraphy-django",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": self.reconnect_wait,
            "connect_timeout": 2,
            "ping_interval": 20,
            "max_outstanding_pings": 2,
            **self.nats_options,
        }
        await nc.connect(
            servers=self.servers,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
            error_cb=error_cb,
            **options,
        )
        self._up.set()
        self._attempted.set()
        self._attempt_done.set()
        logger.info("telegraphy: connected to NATS")
        await self._pump(nc)

    async def wait_connected(self, timeout: float) -> Any:
        """The connected client, waiting only while the first connect attempt is still in progress."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            if not self._attempted.is_set():
                try:
                    await asyncio.wait_for(self._attempt_done.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            nc = self._nc
            if nc is None or not nc.is_connected:
                raise ConnectionError("NATS is not connected")
        return nc

    async def bucket(self, nc: Any, bucket: str, max_age: int, timeout: float) -> Any:
        """KV bucket ``bucket`` (cached): get, else create with ``max_age``, history 1 and ``KV_REPLICAS``
        (PROTOCOL section 4: whoever needs a bucket first creates it; a gateway may win the race)."""
        from nats.js.errors import BucketNotFoundError

        kv = self._buckets.get(bucket)
        if kv is None:
            js = nc.jetstream(timeout=timeout)
            try:
                kv = await js.key_value(bucket)
            except BucketNotFoundError:
                try:
                    kv = await js.create_key_value(bucket=bucket, history=1, ttl=max_age, replicas=self.kv_replicas)
                except Exception:
                    kv = await js.key_value(bucket)  # created concurrently by someone else
            self._buckets[bucket] = kv
        return kv

    def forget_bucket(self, bucket: str) -> None:
        """Drop the cached handle of ``bucket`` after a failure: the next use looks it up again (its JetStream
        leader may have moved, or someone deleted it)."""
        self._buckets.pop(bucket, None)

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        size = 0
        with self._lock:
            while self._buffer and len(batch) < _BATCH_ITEMS and size < _BATCH_BYTES:
                item = self._buffer[0]
                if item.future is not None and batch:
                    break  # acknowledged publishes go alone, after what came before them
                self._buffer.popleft()
                batch.append(item)
                size += len(item.payload)
                if item.future is not None:
                    break
            self._in_flight = len(batch)
        return batch

    def _settle(self, batch: list[_Item], delivered: bool) -> None:
        with self._lock:
            if delivered:
                self._published += len(batch)
                self._batches += 1
            else:
                self._buffer.extendleft(reversed(batch))
            self._in_flight = 0
            if not self._buffer:
                self._idle.notify_all()

    async def _pump(self, nc: Any) -> None:
        loop = asyncio.get_running_loop()
        last_batch = -_LINGER
        while True:
            # "up" is set by the connect/reconnect callbacks only: nats-py reports CONNECTED a moment before
            # its reconnected callback has run, and sending then would race the "down" signal.
            if not self._up.is_set():
                await self._up.wait()
                continue
            if not nc.is_connected:  # link just lost; disconnected_cb has not run yet
                self._up.clear()
                continue
            # At most one batch per _LINGER unless batches are full: while a loop of saves streams events in,
            # they leave in batches instead of this thread taking the GIL from the saving one for every few
            # events (issue 25). An event after a quiet moment leaves at once.
            wait = last_batch + _LINGER - loop.time()
            if wait > 0 and len(self._buffer) < _BATCH_ITEMS:
                await asyncio.sleep(wait)
                continue
            batch = self._take_batch()
            if not batch:
                self._pending.clear()
                with self._lock:
                    if self._buffer:
                        continue
                    self._sleeping = True  # the next enqueue wakes us; none does while we work
                await self._pending.wait()
                continue
            last_batch = loop.time()
            if batch[0].future is not None:
                await self._send_acked(nc, batch[0])
                self._settle([], True)
                continue
            delivered = await self._send(nc, batch)
            self._settle(batch, delivered)

    async def _send(self, nc: Any, batch: list[_Item]) -> bool:
        """Publish a batch and confirm that NATS has it; False means "send it again after a reconnect".

        nats-py's ``flush()`` is not proof on its own: its PING is written straight to the socket, ahead of
        publishes still in the client's pending buffer, and while the read loop is down (link lost, not yet
        reconnected) it returns at once without any round trip. So: two round trips (the second PING leaves
        after the publishes), and the link must not have dropped in between.
        """
        generation = self._link_generation
        try:
            for item in batch:
                await nc.publish(item.subject, item.payload, headers=item.message_headers())
            for _ in range(2):
                if not await self._round_trip(nc):
                    break
            else:
                if generation == self._link_generation and nc.is_connected:
                    return True
        except Exception as exc:
            logger.debug("telegraphy: publish failed, will retry: %s", exc)
        logger.debug("telegraphy: batch of %d not confirmed, will resend after reconnect", len(batch))
        return False

    async def _round_trip(self, nc: Any) -> bool:
        flush = asyncio.ensure_future(nc.flush(self.timeout))
        lost = asyncio.ensure_future(self._down.wait())
        try:
            done, _ = await asyncio.wait({flush, lost}, timeout=self.timeout + 1, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if flush in done and flush.exception() is None:
            return True
        flush.cancel()
        if flush.done() and not flush.cancelled():
            flush.exception()  # retrieved: no "exception never retrieved" noise
        return False

    async def _send_acked(self, nc: Any, item: _Item) -> None:
        from nats.js.errors import NoStreamResponseError

        future = item.future
        assert future is not None
        if not future.set_running_or_notify_cancel():
            return  # the caller gave up waiting
        try:
            ack = await nc.jetstream(timeout=self.timeout).publish(
                item.subject, item.payload, timeout=self.timeout, headers=item.message_headers()
            )
        except NoStreamResponseError:
            future.set_exception(
                PublishError(f"no JetStream stream captures subject {item.subject!r}: acknowledged publishing "
                             "needs a stream on it (or publish without ack=True)")
            )
        except Exception as exc:
            future.set_exception(PublishError(f"publish to {item.subject!r} failed: {type(exc).__name__}: {exc}"))
        else:
            with self._lock:
                self._published += 1
            future.set_result(ack)


def _failure(exc: BaseException, future: concurrent.futures.Future, timeout: float, message: str, error: type) -> BaseException:
    """The exception a caller of an awaited link operation sees for ``exc``."""
    if isinstance(exc, (concurrent.futures.TimeoutError, asyncio.TimeoutError)):
        future.cancel()
        return error(f"{message} within {timeout:g}s (is NATS reachable?)")
    if isinstance(exc, (PublishError, error)):
        return exc
    return error(f"{message}: {exc}")


def _result(future: concurrent.futures.Future, timeout: float, message: str, error: type = PublishError) -> Any:
    try:
        return future.result(timeout)
    except Exception as exc:
        failure = _failure(exc, future, timeout, message, error)
        if failure is exc:
            raise
        raise failure from exc


async def _aresult(future: concurrent.futures.Future, timeout: float, message: str, error: type = PublishError) -> Any:
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except Exception as exc:
        failure = _failure(exc, future, timeout, message, error)
        if failure is exc:
            raise
        raise failure from exc


# --------------------------------------------------------------------- the process's link

_global_lock = threading.Lock()
_link: NatsLink | None = None


def get_link() -> NatsLink:
    """The process's link, configured from ``TELEGRAPHY`` settings (created on first use)."""
    global _link
    link = _link
    if link is not None:
        return link
    with _global_lock:
        if _link is None:
            ts = telegraphy_settings
            _link = NatsLink(
                ts.nats_servers,
                buffer_size=ts.PUBLISH_BUFFER,
                timeout=ts.PUBLISH_TIMEOUT,
                reconnect_wait=ts.RECONNECT_WAIT,
                kv_replicas=ts.KV_REPLICAS,
                nats_options=ts.NATS_OPTIONS,
            )
        return _link


def reset_link() -> None:
    """Close the process's link; the next use opens one from the current settings."""
    global _link
    with _global_lock:
        old, _link = _link, None
    if old is not None:
        old.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """A changed ``TELEGRAPHY`` (``override_settings``, pytest-django's ``settings``) gets a fresh link. The
    settings cache reloads in :mod:`telegraphy.conf`'s own receiver, connected before this one (this module
    imports it first), so the next ``get_link()`` reads the new values."""
    if setting == "TELEGRAPHY":
        reset_link()


# At import, as Django Channels does for its channel layers: whoever uses the link has imported this module.
setting_changed.connect(_on_setting_changed, dispatch_uid="telegraphy-nats-link-settings-changed")


@atexit.register
def _flush_at_exit() -> None:
    """Scripts and workers exit right after publishing: give the buffer a bounded chance to reach NATS
    (wait for the first connect attempt if it is still running; never wait on a NATS known to be down)."""
    link = _link
    if link is None or link._pid != os.getpid() or link._thread is None or not link.stats()["buffered"]:
        return
    deadline = time.monotonic() + min(link.timeout, 5.0)
    link._attempted.wait(max(deadline - time.monotonic(), 0))
    if link.connected:
        link.flush(max(deadline - time.monotonic(), 0))
