"""Settings: one dict ``TELEGRAPHY`` in Django settings, read through ``telegraphy_settings``.

Every key is optional except ``SECRET``::

    TELEGRAPHY = {
        "NATS_URL": "nats://127.0.0.1:4222",   # str or list of str (nats://, tls://, ws://, wss://)
        "NATS_OPTIONS": {},                     # extra keyword arguments for nats.connect (user, password, tls...)
        "SUBJECT_PREFIX": "telegraphy",         # events go to NATS subject "<prefix>.<event name>"
        "GATEWAY_URL": "ws://127.0.0.1:8080/ws",  # as browsers reach the gateway: ws(s)://, http(s):// or /path
        "GATEWAY_HTTP_URL": None,               # base URL for /readyz; default: derived from GATEWAY_URL
        "SECRET": None,                         # required, >= 32 bytes, shared with the gateway (auth.secret)
        "TOKEN_TTL": 60,                        # seconds, 1..3600
        "REGISTER_TOKENS": True,                # store each token id in KV (gateway auth.single_use)
        "TOKENS_BUCKET": "telegraphy_tokens",   # gateway auth.tokens_bucket
        "REVOCATIONS_BUCKET": "telegraphy_revocations",  # gateway auth.revocations_bucket
        "PRESENCE_BUCKET": "telegraphy_presence",  # gateway presence.bucket (read by telegraphy.presence)
        "KV_REPLICAS": 1,                       # replicas of a KV bucket created here (gateway history.replicas)
        "PUBLISH_BUFFER": 10000,                # events kept while NATS is unreachable; more are dropped
        "PUBLISH_TIMEOUT": 5.0,                 # seconds: acknowledged publishes, flush(), mint()
        "TOKEN_TIMEOUT": 2.0,                   # seconds a page render waits for token registration
        "RECONNECT_WAIT": 1.0,                  # seconds between NATS reconnect attempts
        "GATEWAY_BINARY": None,                 # run_telegraph: path; else $TELEGRAPHY_GATEWAY_BIN or PATH
        "GATEWAY_BIND": None,                   # run_telegraph: TELEGRAPHY_HTTP__BIND (None: gateway default)
        "GATEWAY_ENV": {},                      # run_telegraph: extra environment for the gateway
        "ANONYMOUS_TOKENS": False,              # tokens for anonymous visitors (page tags, token endpoint)
        "TOKEN_RATE_LIMIT": "30/60",            # token endpoint: "<calls>/<seconds>" per user (IP if anonymous); None = off
        "REVOKE_ON_AUTH_CHANGE": True,          # revoke a user's gateway sessions when their grant may change (logout...)
        "GRANT_FIELDS": [],                     # more user model fields allow_patterns reads: a change revokes too
        "TRUSTED_PROXIES": [],                  # proxies (IPs/CIDRs) whose CLIENT_IP_HEADER names the client
        "CLIENT_IP_HEADER": None,               # "X-Forwarded-For" or "X-Real-IP"; None: REMOTE_ADDR always
        "FILTER_LIMITS": {"max_filter_conditions": 16, "max_regex_conditions": 4},  # filters.check: the gateway's limits.*
        "TRANSPORTS": None,                     # the page client's transports, e.g. ["websocket", "sse"]; None: its default
        "SSE_URL": None,                        # the page client's SSE URL (http(s):// or /path); None: from GATEWAY_URL
        "TOKEN_INFO": None,                     # callable(user) -> dict | None, or its dotted path: tokens' presence info
        "VALIDATE_DATA": None,                  # check outgoing event data against its JSON Schema; None: when DEBUG
    }

Outside a configured Django project (a plain script), the defaults apply, overridden by the environment
variables ``TELEGRAPHY_NATS_URL``, ``TELEGRAPHY_SUBJECT_PREFIX`` and ``TELEGRAPHY_SECRET``.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from . import constants

# The two filter limits a gateway may change (its limits.* settings), with the protocol's defaults
# (proto/constants.json); telegraphy.filters applies them.
DEFAULT_FILTER_LIMITS: dict[str, int] = {
    "max_filter_conditions": constants.FILTERS_LIMITS_MAX_CONDITIONS,
    "max_regex_conditions": constants.FILTERS_LIMITS_MAX_REGEX_CONDITIONS,
}

DEFAULTS: dict[str, Any] = {
    "NATS_URL": "nats://127.0.0.1:4222",
    "NATS_OPTIONS": {},
    "SUBJECT_PREFIX": "telegraphy",
    "GATEWAY_URL": "ws://127.0.0.1:8080/ws",
    "GATEWAY_HTTP_URL": None,
    "SECRET": None,
    "TOKEN_TTL": 60,
    "REGISTER_TOKENS": True,
    "TOKENS_BUCKET": constants.BUCKETS_TOKENS_NAME,
    "REVOCATIONS_BUCKET": constants.BUCKETS_REVOCATIONS_NAME,
    "PRESENCE_BUCKET": constants.PRESENCE_BUCKET_NAME,
    "KV_REPLICAS": 1,
    "PUBLISH_BUFFER": 10000,
    "PUBLISH_TIMEOUT": 5.0,
    "TOKEN_TIMEOUT": 2.0,
    "RECONNECT_WAIT": 1.0,
    "GATEWAY_BINARY": None,
    "GATEWAY_BIND": None,
    "GATEWAY_ENV": {},
    "ANONYMOUS_TOKENS": False,
    "TOKEN_RATE_LIMIT": "30/60",
    "REVOKE_ON_AUTH_CHANGE": True,
    "GRANT_FIELDS": [],
    "TRUSTED_PROXIES": [],
    "CLIENT_IP_HEADER": None,
    "FILTER_LIMITS": dict(DEFAULT_FILTER_LIMITS),  # a dict given here overrides these keys one by one
    "TRANSPORTS": None,
    "SSE_URL": None,
    "TOKEN_INFO": None,
    "VALIDATE_DATA": None,
}

# The transports the JS client knows (proto/PROTOCOL.md section 10), in its default order.
CLIENT_TRANSPORTS: tuple[str, ...] = ("websocket", "sse")

_RATE = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,8})")


def parse_rate(value: Any) -> tuple[int, int] | None:
    """``"30/60"`` -> ``(30, 60)`` (calls, seconds); ``None`` -> ``None`` (no limit). Raises ``ValueError``."""
    if value is None:
        return None
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f'expected "<calls>/<seconds>" with positive integers, or None; got {value!r}')
    return int(match.group(1)), int(match.group(2))


_ENV_FALLBACK = ("NATS_URL", "SUBJECT_PREFIX", "SECRET")


def user_settings() -> Any:
    """The raw ``TELEGRAPHY`` value from Django settings (``{}`` when unset or Django is not configured)."""
    from django.conf import settings

    if not settings.configured:
        return {k: os.environ[f"TELEGRAPHY_{k}"] for k in _ENV_FALLBACK if f"TELEGRAPHY_{k}" in os.environ}
    return getattr(settings, "TELEGRAPHY", {})


class TelegraphySettings:
    """Attribute access to the merged settings (``telegraphy_settings.NATS_URL``...), cached until Django's
    ``setting_changed`` signal says ``TELEGRAPHY`` changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._merged: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        merged = self._merged
        if merged is None:
            raw = user_settings()
            merged = dict(DEFAULTS)
            if isinstance(raw, dict):
                merged.update(raw)
            with self._lock:
                self._merged = merged
        return merged

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in DEFAULTS:
            raise AttributeError(f"no telegraphy setting {key!r}")
        return self.as_dict()[key]

    @property
    def secret_bytes(self) -> bytes:
        secret = self.as_dict()["SECRET"]
        if not secret:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured('TELEGRAPHY["SECRET"] is not set (see the telegraphy.E001 check)')
        return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)

    @property
    def nats_servers(self) -> list[str]:
        url = self.as_dict()["NATS_URL"]
        if isinstance(url, str):
            return [u.strip() for u in url.split(",") if u.strip()]
        return list(url)

    def reload(self) -> None:
        with self._lock:
            self._merged = None


telegraphy_settings = TelegraphySettings()


def redact_url(url: Any) -> Any:
    """``NATS_URL`` (a string or a list) with every server's credentials (``user:password@``, ``token@``)
    replaced by ``***@``, for messages and logs; the gateway redacts its ``nats.url`` the same way."""
    if isinstance(url, (list, tuple)):
        return [redact_url(u) for u in url]
    if not isinstance(url, str):
        return url
    out = []
    for server in url.split(","):
        scheme, sep, rest = server.partition("://")
        if not sep:
            scheme, rest = "", server
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, end)
        out.append(server if at < 0 else f"{scheme}{sep}***@{rest[at + 1:]}")
    return ",".join(out)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # The NATS link connects a receiver of its own (telegraphy.nats_link), connected after this one: it
    # closes the link, and the next use opens one with the settings reloaded here.
    if setting == "TELEGRAPHY":
        telegraphy_settings.reload()


def connect_signals() -> None:
    from django.core.signals import setting_changed

    setting_changed.connect(_on_setting_changed, dispatch_uid="telegraphy-settings-changed")


connect_signals()
