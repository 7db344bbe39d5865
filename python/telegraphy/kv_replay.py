"""Reading a JetStream KV bucket's current entries once (a watch replay that ends by itself).

One rule for every reader (presence snapshots, the event catalog): a watch delivers the last message of each
key under the filter, and the replay ends with the message whose ``delta`` (messages still pending) is 0.
nats-py's own end-of-replay marker (``None`` from ``updates()``) is not trusted: it compares the consumer's
pending count with the messages already received, and under load the server's answer can overtake the
deliveries, which ends the read before the first entry (seen in a loaded test run). Whether there is
anything at all is asked of the consumer itself (nothing delivered and nothing pending: an empty read).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator


async def current_entries(kv: Any, subject_filter: str, deadline: float) -> AsyncIterator[Any]:
    """Yields each current (not deleted or purged) entry of ``kv`` under ``subject_filter``, once, then ends.

    ``deadline`` is a time of the running loop; past it the read raises ``asyncio.TimeoutError`` (nats-py's
    ``TimeoutError``). A caller that stops early (a limit) just leaves the loop: the watch is stopped."""
    loop = asyncio.get_running_loop()

    def remaining() -> float:
        return max(deadline - loop.time(), 0.01)

    watcher = await asyncio.wait_for(kv.watch(subject_filter), remaining())
    try:
        info = await asyncio.wait_for(watcher._sub.consumer_info(), remaining())
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:
            return
        while True:
            entry = await watcher.updates(timeout=remaining())
            if entry is None:  # nats-py's marker: see the module's docstring
                continue
            if entry.operation not in ("DEL", "PURGE"):
                yield entry
            if entry.delta == 0:
                return
    finally:
        await watcher.stop()
