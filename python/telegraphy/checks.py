"""Django system checks for the TELEGRAPHY settings and the registered event classes (``manage.py check``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import client_ip, events, names, validation
from .conf import CLIENT_TRANSPORTS, DEFAULTS, parse_rate, redact_url, user_settings
from .filters import DEFAULT_LIMITS as FILTER_LIMITS
from .token_format import MAX_TTL, MIN_SECRET_BYTES, secret_weakness

NATS_SCHEMES = ("nats", "tls", "ws", "wss")
GATEWAY_SCHEMES = ("ws", "wss", "http", "https")
SECRET_HINT = (
    "Use a random string of at least 32 bytes shared with the gateway (auth.secret), e.g. "
    "python -c 'import secrets; print(secrets.token_urlsafe(48))' or openssl rand -hex 32."
)
WEAKNESS = {
    "placeholder": "it contains a placeholder word such as 'change' or 'example'",
    "repetitive": "it repeats a shorter pattern",
    "low_entropy": "too few distinct characters",
}
HINT = "Set it in the TELEGRAPHY settings dict (see telegraphy.conf for the documented defaults)."


def _url_ok(url: Any, schemes: tuple[str, ...]) -> bool:
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    raw = user_settings()
    if not isinstance(raw, dict):
        return [Error("TELEGRAPHY must be a dict.", hint=HINT, id="telegraphy.E000")]
    conf = {**DEFAULTS, **raw}
    errors: list = []

    secret = conf["SECRET"]
    if not isinstance(secret, str) or len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        errors.append(
            Error(
                f'TELEGRAPHY["SECRET"] is missing or shorter than {MIN_SECRET_BYTES} bytes.',
                hint=SECRET_HINT,
                id="telegraphy.E001",
            )
        )
    else:
        weakness = secret_weakness(secret)
        if weakness is not None:  # the message names the rule, never the secret
            errors.append(
                Error(
                    f'TELEGRAPHY["SECRET"] is too weak ({WEAKNESS[weakness]}); the gateway refuses it too.',
                    hint=SECRET_HINT,
                    id="telegraphy.E001",
                )
            )

    servers = conf["NATS_URL"]
    servers = [s.strip() for s in servers.split(",")] if isinstance(servers, str) else servers
    if not isinstance(servers, (list, tuple)) or not servers or not all(_url_ok(s, NATS_SCHEMES) for s in servers):
        errors.append(
            Error(
                f'TELEGRAPHY["NATS_URL"] is not a NATS URL: {redact_url(conf["NATS_URL"])!r}.',
                hint="Expected e.g. nats://127.0.0.1:4222 (schemes nats, tls, ws, wss; a list or a comma-separated "
                "string for a cluster).",
                id="telegraphy.E002",
            )
        )

    gateway_url = conf["GATEWAY_URL"]
    same_origin_path = (
        isinstance(gateway_url, str) and gateway_url.startswith("/") and not gateway_url.startswith("//")
        and not any(c.isspace() for c in gateway_url)
    )
    if not (same_origin_path or _url_ok(gateway_url, GATEWAY_SCHEMES)):
        errors.append(
            Error(
                f'TELEGRAPHY["GATEWAY_URL"] is not a WebSocket URL: {gateway_url!r}.',
                hint="Expected the gateway's URL as browsers reach it, e.g. ws://127.0.0.1:8080/ws, "
                "wss://example.com/ws, or a path such as /ws when a proxy serves it on the site's origin.",
                id="telegraphy.E003",
            )
        )

    prefix = conf["SUBJECT_PREFIX"]
    if not names.is_valid_name(prefix):
        errors.append(
            Error(
                f'TELEGRAPHY["SUBJECT_PREFIX"] is not a valid name without wildcards: {prefix!r}.',
                hint="Tokens of [A-Za-z0-9_-] joined by '.', like the gateway's nats.subject_prefix.",
                id="telegraphy.E004",
            )
        )

    ttl = conf["TOKEN_TTL"]
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
        errors.append(
            Error(
                f'TELEGRAPHY["TOKEN_TTL"] must be an integer in 1..{MAX_TTL} seconds, got {ttl!r}.',
                id="telegraphy.E005",
            )
        )

    buffer = conf["PUBLISH_BUFFER"]
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        errors.append(
            Error(f'TELEGRAPHY["PUBLISH_BUFFER"] must be a positive integer, got {buffer!r}.', id="telegraphy.E006")
        )

    for key in ("PUBLISH_TIMEOUT", "TOKEN_TIMEOUT", "RECONNECT_WAIT"):
        if not _positive_number(conf[key]):
            errors.append(
                Error(f'TELEGRAPHY["{key}"] must be a positive number of seconds, got {conf[key]!r}.', id="telegraphy.E007")
            )

    http_url = conf["GATEWAY_HTTP_URL"]
    if http_url is not None and not _url_ok(http_url, ("http", "https")):
        errors.append(
            Error(f'TELEGRAPHY["GATEWAY_HTTP_URL"] is not an http(s) URL: {http_url!r}.', id="telegraphy.E008")
        )

    if not isinstance(conf["NATS_OPTIONS"], dict) or not isinstance(conf["GATEWAY_ENV"], dict):
        errors.append(Error('TELEGRAPHY["NATS_OPTIONS"] and ["GATEWAY_ENV"] must be dicts.', id="telegraphy.E009"))

    replicas = conf["KV_REPLICAS"]
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        errors.append(
            Error(
                f'TELEGRAPHY["KV_REPLICAS"] must be an integer in 1..5, got {replicas!r}.',
                hint="1, or 3 on a 3-node NATS cluster (like the gateway's history.replicas).",
                id="telegraphy.E010",
            )
        )

    try:
        parse_rate(conf["TOKEN_RATE_LIMIT"])
    except ValueError as exc:
        errors.append(Error(f'TELEGRAPHY["TOKEN_RATE_LIMIT"]: {exc}.', hint='e.g. "30/60": 30 tokens per 60 s.',
                            id="telegraphy.E011"))

    for key in ("ANONYMOUS_TOKENS", "REVOKE_ON_AUTH_CHANGE"):
        if not isinstance(conf[key], bool):
            errors.append(Error(f'TELEGRAPHY["{key}"] must be True or False, got {conf[key]!r}.', id="telegraphy.E012"))

    errors.extend(_check_filter_limits(conf["FILTER_LIMITS"]))
    errors.extend(_check_client_transports(conf["TRANSPORTS"], conf["SSE_URL"]))
    errors.extend(_check_token_info(conf["TOKEN_INFO"]))
    errors.extend(_check_client_ip(conf["TRUSTED_PROXIES"], conf["CLIENT_IP_HEADER"]))
    errors.extend(_check_grant_fields(conf["GRANT_FIELDS"]))
    errors.extend(_check_validate_data(conf["VALIDATE_DATA"]))

    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        errors.append(
            Warning(
                f"Unknown TELEGRAPHY setting(s): {', '.join(unknown)}.",
                hint=f"Known settings: {', '.join(DEFAULTS)}.",
                id="telegraphy.W001",
            )
        )
    return errors


def _check_validate_data(value: Any) -> list:
    """VALIDATE_DATA: None (follow DEBUG) or a bool; checking needs jsonschema."""
    if value is not None and not isinstance(value, bool):
        return [Error("TELEGRAPHY['VALIDATE_DATA'] must be None (follow DEBUG), True or False.",
                      id="telegraphy.E020")]
    if validation.wanted() and not validation.available():
        return [Warning("Outgoing event data is not checked against its JSON Schema: jsonschema is not installed.",
                        hint="pip install jsonschema (or set TELEGRAPHY['VALIDATE_DATA'] = False).",
                        id="telegraphy.W002")]
    return []


def _check_filter_limits(limits: Any) -> list:
    """FILTER_LIMITS: a dict of the gateway's filter limit settings (its keys as in ``limits.*``), each an
    integer the gateway would accept too (``max_regex_conditions`` at least 1)."""
    hint = (
        f"A dict with some of {', '.join(FILTER_LIMITS)}, set to the gateway's limits.* values "
        f"(defaults {FILTER_LIMITS})."
    )
    if not isinstance(limits, dict):
        return [Error(f'TELEGRAPHY["FILTER_LIMITS"] must be a dict, got {limits!r}.', hint=hint, id="telegraphy.E013")]
    errors = []
    for key, value in limits.items():
        least = 1 if key == "max_regex_conditions" else 0
        if key not in FILTER_LIMITS:
            problem = "is not a filter limit"
        elif isinstance(value, bool) or not isinstance(value, int) or value < least:
            problem = f"must be an integer >= {least}, got {value!r}"
        else:
            continue
        errors.append(Error(f'TELEGRAPHY["FILTER_LIMITS"][{key!r}] {problem}.', hint=hint, id="telegraphy.E013"))
    return errors


def _check_client_transports(transports: Any, sse_url: Any) -> list:
    """TRANSPORTS: None or a non-empty list of distinct transports the JS client knows; SSE_URL: None, an
    http(s) URL or an absolute path (the page's own origin)."""
    errors = []
    known = ", ".join(repr(t) for t in CLIENT_TRANSPORTS)
    if transports is not None and not (
        isinstance(transports, (list, tuple))
        and transports
        and all(isinstance(t, str) and t in CLIENT_TRANSPORTS for t in transports)
        and len(set(transports)) == len(transports)
    ):
        errors.append(
            Error(
                f'TELEGRAPHY["TRANSPORTS"] must be None or a list of distinct transports among {known}, '
                f"got {transports!r}.",
                hint='e.g. ["websocket", "sse"] (the client\'s default order), or ["sse"] behind a proxy that '
                "breaks WebSockets.",
                id="telegraphy.E014",
            )
        )
    if sse_url is not None and not (
        _url_ok(sse_url, ("http", "https")) or (isinstance(sse_url, str) and sse_url.startswith("/"))
    ):
        errors.append(
            Error(
                f'TELEGRAPHY["SSE_URL"] must be None, an http(s) URL or an absolute path, got {sse_url!r}.',
                id="telegraphy.E014",
            )
        )
    return errors


def _check_token_info(hook: Any) -> list:
    """TOKEN_INFO: None, a callable, or the dotted path of one (imported here, so a typo shows at start-up)."""
    if hook is None or callable(hook):
        return []
    problem = f"must be None, a callable or its dotted path, got {hook!r}"
    if isinstance(hook, str):
        try:
            target = import_string(hook)
        except ImportError as exc:
            problem = f"{hook!r} cannot be imported: {exc}"
        else:
            if callable(target):
                return []
            problem = f"{hook!r} is not callable"
    return [
        Error(
            f'TELEGRAPHY["TOKEN_INFO"] {problem}.',
            hint='e.g. "myapp.presence.token_info", a function of the user returning a small dict such as '
            '{"name": user.get_full_name()} (at most 256 bytes of JSON).',
            id="telegraphy.E015",
        )
    ]


def _check_client_ip(trusted: Any, header: Any) -> list:
    """TRUSTED_PROXIES: a list of IPs/CIDRs; CLIENT_IP_HEADER: None or a header name (the gateway's
    http.trusted_proxies / http.client_ip_header)."""
    errors = []
    for key, parse in (("TRUSTED_PROXIES", client_ip.parse_trusted), ("CLIENT_IP_HEADER", client_ip.check_header)):
        try:
            parse(trusted if key == "TRUSTED_PROXIES" else header)
        except ValueError as exc:
            errors.append(
                Error(
                    f'TELEGRAPHY["{key}"] {exc}.',
                    hint='e.g. "TRUSTED_PROXIES": ["10.0.0.0/8", "::1"], "CLIENT_IP_HEADER": "X-Forwarded-For" '
                    "(the right-most address that is not a trusted proxy) or \"X-Real-IP\".",
                    id="telegraphy.E018",
                )
            )
    return errors


def _check_grant_fields(grant_fields: Any) -> list:
    """GRANT_FIELDS: a list of the user model's field names (concrete or many-to-many)."""
    from django.contrib.auth import get_user_model
    from django.core.exceptions import FieldDoesNotExist

    hint = ("The user model's fields that allow_patterns reads, e.g. [\"team\", \"plan\"]; for other models call "
            "telegraphy.grant_changed(user) from their receivers.")
    if isinstance(grant_fields, str) or not isinstance(grant_fields, (list, tuple)):
        return [Error(f'TELEGRAPHY["GRANT_FIELDS"] must be a list of field names, got {grant_fields!r}.', hint=hint,
                      id="telegraphy.E019")]
    model = get_user_model()
    errors = []
    for name in grant_fields:
        try:
            field = model._meta.get_field(name) if isinstance(name, str) else None
        except FieldDoesNotExist:
            field = None
        if field is None or not field.concrete:
            errors.append(Error(f'TELEGRAPHY["GRANT_FIELDS"]: {name!r} is not a field of {model._meta.label}.',
                                hint=hint, id="telegraphy.E019"))
    return errors


@register(Tags.compatibility)
def check_events(app_configs: Any = None, **kwargs: Any) -> list:
    """The registered event classes' ``presence``: True or False (a truthy string would read as on to a reader
    and is off to the code), and a ``BaseEvent`` with presence on must not name a parameter like one of
    ``present()``'s own keywords (``present(room=..., limit=...)`` could not say which is which)."""
    errors = []
    for event in events.registered():
        cls = type(event)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(cls.presence, bool):
            errors.append(
                Error(
                    f"{where}.presence must be True or False, got {cls.presence!r}.",
                    hint="presence = True gives the class's events a presence channel (PROTOCOL section 11).",
                    obj=cls,
                    id="telegraphy.E016",
                )
            )
        elif cls.presence and isinstance(event, events.BaseEvent):
            clashing = [p for p in cls._template.params if p in events.PRESENT_KEYWORDS]
            if clashing:
                errors.append(
                    Error(
                        f"{where}.name {cls.name!r} uses the parameter(s) {', '.join(clashing)}, which "
                        f"{cls.__qualname__}.present() takes as its own keywords.",
                        hint=f"Rename the parameter(s); {', '.join(events.PRESENT_KEYWORDS)} are present()'s.",
                        obj=cls,
                        id="telegraphy.E017",
                    )
                )
    return errors
