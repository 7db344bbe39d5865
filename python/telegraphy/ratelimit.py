"""A fixed-window counter per client in Django's cache: ``TOKEN_RATE_LIMIT``, shared by the token endpoint
and the page tags (one budget of tokens per user, per client address for anonymous visitors).

``cache.add`` then ``cache.incr`` is atomic per key on a shared cache (Redis, Memcached, and per process on
the local-memory cache), so N web processes sharing a cache allow at most ``calls`` per window between them.
A window is ``period`` seconds aligned on the epoch; a client may get up to ``2 * calls`` in ``period``
seconds across a window boundary (the price of one counter per client instead of a log of calls).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches

from .client_ip import client_ip, rate_key
from .conf import parse_rate, telegraphy_settings
from .token_format import user_sub

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


def token_client(request: Any, user: object) -> str:
    """Whose tokens a request counts against: the user; an anonymous visitor by client address (a session
    cookie costs nothing to drop), behind ``TRUSTED_PROXIES`` the one ``CLIENT_IP_HEADER`` names."""
    sub = user_sub(user)
    if sub:
        return f"user:{sub}"
    meta = getattr(request, "META", None) or {}
    return f"ip:{rate_key(client_ip(meta))}"


def take_token(request: Any, user: object) -> int | None:
    """Count one connect token for the request's user against ``TOKEN_RATE_LIMIT``: None when it may be
    minted (or there is no limit), else the seconds until the window ends."""
    rate = parse_rate(telegraphy_settings.TOKEN_RATE_LIMIT)
    if rate is None:
        return None
    return take(token_client(request, user), rate)
