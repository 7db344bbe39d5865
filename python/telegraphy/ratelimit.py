"""A fixed-window counter per client in Django's cache (the token endpoint's ``TOKEN_RATE_LIMIT``).

``cache.add`` then ``cache.incr`` is atomic per key on a shared cache (Redis, Memcached, and per process on
the local-memory cache), so N web processes sharing a cache allow at most ``calls`` per window between them.
A window is ``period`` seconds aligned on the epoch; a client may get up to ``2 * calls`` in ``period``
seconds across a window boundary (the price of one counter per client instead of a log of calls).
"""

from __future__ import annotations

import hashlib
import math
import time

from django.core.cache import DEFAULT_CACHE_ALIAS, caches

KEY_PREFIX = "telegraphy:rate:"


def take(ident: str, rate: tuple[int, int], *, now: float | None = None) -> int | None:
    """Count one call of ``ident`` against ``rate`` = (calls, seconds). Returns None when it is allowed, else
    the whole seconds until the window ends (for ``Retry-After``, >= 1)."""
    calls, period = rate
    now = time.time() if now is None else now
    window = int(now // period)
    # Hashed: cache backends restrict key characters and length; the identity may be any user pk or address.
    digest = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
    key = f"{KEY_PREFIX}{digest}:{period}:{window}"
    cache = caches[DEFAULT_CACHE_ALIAS]
    count = 1
    if not cache.add(key, 1, timeout=period + 1):
        try:
            count = cache.incr(key)
        except ValueError:  # the entry expired between add and incr: a new window of our own
            cache.add(key, 1, timeout=period + 1)
    if count <= calls:
        return None
    return max(1, math.ceil((window + 1) * period - now))
