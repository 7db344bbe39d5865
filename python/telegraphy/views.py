"""``GET <mount>/token/``: a fresh connect token for the session's user, for the JS client's ``tokenUrl``
(it asks for one when its single-use token is spent and its resume token expired)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import telegraphy_settings
from .tokens import TokenRegistrationError, mint

logger = logging.getLogger("telegraphy")


@never_cache
@require_GET
def token(request: HttpRequest) -> JsonResponse:
    try:
        value = mint(getattr(request, "user", None), timeout=telegraphy_settings.TOKEN_TIMEOUT)
    except TokenRegistrationError as exc:
        logger.warning("telegraphy: token endpoint could not mint: %s", exc)
        return JsonResponse({"token": None, "error": "unavailable"}, status=503)
    return JsonResponse({"token": value, "expires_in": telegraphy_settings.TOKEN_TTL})
