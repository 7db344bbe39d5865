"""``{% load telegraphy %}``: the JS client, its config (gateway URL + a fresh token for the request's user).

    {% telegraphy_scripts %}   <script src=".../telegraphy.js"> and
                               <script id="telegraphy-config" type="application/json">{"url": ..., "token": ...}</script>
                               (+ "tokenUrl" and the request's "csrfToken" when telegraphy.urls is included);
                               in the page: const tg = Telegraphy.page();
    {% telegraphy_token %}     the token alone (empty when it could not be minted)

Anonymous visitors get no token unless ``ANONYMOUS_TOKENS`` is True: their config is ``{"url": ...}`` alone,
and the client connects without a token (accepted when the gateway's ``auth.anonymous_allow`` is set).
    {% telegraphy_ws_url %}    the gateway WebSocket URL
    {{ order|telegraphy_presence_channel }}
                               a model instance's presence channel: that of the one registered BaseEventModel of
                               its model with presence = True (TypeError when there is none, or several)

When NATS is unreachable the page still renders: the token is null, a warning is logged and the client shows
itself disconnected. The wait for the token's KV registration is bounded by ``TOKEN_TIMEOUT`` (2 s).

A page's token counts against ``TOKEN_RATE_LIMIT`` like one from the token endpoint (one budget per user, per
client address for anonymous visitors): past it the page renders with ``"token": null``, and a client with a
``tokenUrl`` asks that for one, which answers 429 with ``Retry-After`` until the window ends.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.templatetags.static import static
from django.middleware.csrf import get_token
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, json_script

from .. import ratelimit
from ..conf import telegraphy_settings
from ..events import BaseEventModel, registered
from ..exceptions import TokenRegistrationError
from ..minting import mint, token_allowed

register = template.Library()
logger = logging.getLogger("telegraphy")

CONFIG_ELEMENT_ID = "telegraphy-config"
SCRIPT_PATH = "telegraphy/telegraphy.js"
_CACHE_ATTR = "_telegraphy_token"


def _context_user(context: Any) -> Any:
    request = context.get("request")
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None else context.get("user")


def token_for_context(context: Any) -> str | None:
    """A fresh token for the context's user (one per request), or None when it cannot be registered now, the
    user is past ``TOKEN_RATE_LIMIT``, or the user is an anonymous visitor and ``ANONYMOUS_TOKENS`` is off."""
    request = context.get("request")
    if request is not None and hasattr(request, _CACHE_ATTR):
        return getattr(request, _CACHE_ATTR)
    user = _context_user(context)
    if not token_allowed(user):
        return None
    token: str | None = None
    # Counted before the KV write. A render without a request counts against its context's user (anonymous:
    # one shared budget, there is no address to tell them apart).
    retry_after = ratelimit.take_token(request, user)
    if retry_after is not None:
        logger.info("telegraphy: no token for this page, TOKEN_RATE_LIMIT reached (%s s left)", retry_after)
    else:
        try:
            token = mint(user, timeout=telegraphy_settings.TOKEN_TIMEOUT)
        except TokenRegistrationError as exc:
            logger.warning("telegraphy: no token for this page, the client will show disconnected: %s", exc)
    if request is not None:
        setattr(request, _CACHE_ATTR, token)
    return token


def client_config(context: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"url": telegraphy_settings.GATEWAY_URL}
    if telegraphy_settings.TRANSPORTS is not None:
        config["transports"] = list(telegraphy_settings.TRANSPORTS)
    if telegraphy_settings.SSE_URL is not None:
        config["sseUrl"] = telegraphy_settings.SSE_URL
    if not token_allowed(_context_user(context)):
        return config  # anonymous: connect without a token (the gateway's auth.anonymous_allow decides)
    config["token"] = token_for_context(context)
    try:
        config["tokenUrl"] = reverse("telegraphy-token")  # when telegraphy.urls is included
    except NoReverseMatch:
        return config
    request = context.get("request")
    if request is not None:
        config["csrfToken"] = get_token(request)  # the endpoint is POST with Django's CSRF check
    return config


@register.simple_tag(takes_context=True)
def telegraphy_scripts(context: Any) -> str:
    return format_html(
        '<script src="{}"></script>\n{}',
        static(SCRIPT_PATH),
        json_script(client_config(context), CONFIG_ELEMENT_ID),
    )


@register.simple_tag(takes_context=True)
def telegraphy_token(context: Any) -> str:
    return token_for_context(context) or ""


@register.simple_tag
def telegraphy_ws_url() -> str:
    return telegraphy_settings.GATEWAY_URL


@register.filter
def telegraphy_presence_channel(instance: Any) -> str:
    """``presence_channel(instance)`` of the one registered ``BaseEventModel`` with ``presence = True`` whose
    model is exactly ``type(instance)``. None or several is a ``TypeError``: the page would otherwise guess
    between channels (and allow patterns); pass ``MyEvents().presence_channel(obj)`` from the view instead."""
    model = type(instance)
    found = [e for e in registered() if isinstance(e, BaseEventModel) and e.presence is True and e.model is model]
    if len(found) != 1:
        label = getattr(getattr(model, "_meta", None), "label", model.__qualname__)
        which = ", ".join(type(e).__qualname__ for e in found) or "none"
        raise TypeError(
            f"telegraphy_presence_channel needs exactly one registered BaseEventModel with presence = True for "
            f"{label}, found {which}; pass the channel from the view (MyEvents().presence_channel(obj))"
        )
    return found[0].presence_channel(instance)
