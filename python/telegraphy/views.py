"""``POST <mount>/token/``: a fresh connect token for the session's user, for the JS client's ``tokenUrl``
(it asks for one when its single-use token is spent and its resume token expired, or after a revocation).

Each refusal comes before any NATS work (a token costs one JetStream KV write): GET and other methods 405;
a missing or wrong CSRF token 403 (Django's CSRF check, the client sends ``X-CSRFToken``); an anonymous
visitor 403 unless ``ANONYMOUS_TOKENS`` (and the event classes grant anonymous visitors something); more
than ``TOKEN_RATE_LIMIT`` tokens per window for one user (one client address for anonymous visitors, see
:mod:`telegraphy.client_ip`), counting the page tags' tokens too, 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from . import ratelimit
from .conf import telegraphy_settings
from .events import allow_patterns
from .exceptions import TokenRegistrationError
from .minting import mint, token_allowed
from .token_format import user_sub

logger = logging.getLogger("telegraphy")


def _refused(status: int, error: str) -> JsonResponse:
    return JsonResponse({"token": None, "error": error}, status=status)


@never_cache
@require_POST
@csrf_protect
def token(request: HttpRequest) -> JsonResponse:
    user = getattr(request, "user", None)
    if not token_allowed(user):
        return _refused(403, "forbidden")
    retry_after = ratelimit.take_token(request, user)
    if retry_after is not None:
        response = _refused(429, "rate_limited")
        response["Retry-After"] = str(retry_after)
        return response
    allow = allow_patterns(user)
    if not allow and not user_sub(user):
        return _refused(403, "forbidden")  # an anonymous token granting nothing would only hold a socket
    try:
        value = mint(user, allow=allow, timeout=telegraphy_settings.TOKEN_TIMEOUT)
    except TokenRegistrationError as exc:
        logger.warning("telegraphy: token endpoint could not mint: %s", exc)
        return _refused(503, "unavailable")
    return JsonResponse({"token": value, "expires_in": telegraphy_settings.TOKEN_TTL})
