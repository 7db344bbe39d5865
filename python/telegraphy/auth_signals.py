"""Sessions end when permissions do (issue 11): the user's gateway sessions are revoked (``revoke_user``) on
logout, on a password change, when ``is_active`` becomes False and when the user is deleted.

On by default; ``TELEGRAPHY["REVOKE_ON_AUTH_CHANGE"] = False`` turns it off. The revocation is written after
the transaction commits and waits at most ``TOKEN_TIMEOUT`` for NATS: with NATS down, the save or logout goes
on and a warning is logged (run ``manage.py telegraphy_revoke --user ...`` once NATS is back).

Clients that have a ``tokenUrl`` ask it for a new token after the revocation (close 4003): a user who is
still signed in (another device, the browser where the password was changed) gets one with their current
``allow``; a signed-out, deactivated or deleted user gets 403 and the client stops.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from .conf import telegraphy_settings
from .exceptions import RevocationError
from .revocations import revoke_user

logger = logging.getLogger("telegraphy")

_CHANGED_ATTR = "_telegraphy_auth_changed"


def _enabled() -> bool:
    return bool(telegraphy_settings.REVOKE_ON_AUTH_CHANGE)


def revoke_quietly(user: Any, why: str) -> None:
    """``revoke_user(user)``, bounded by ``TOKEN_TIMEOUT``; a failure is logged, never raised."""
    if user is None or getattr(user, "pk", None) is None:
        return
    try:
        revoke_user(user, timeout=telegraphy_settings.TOKEN_TIMEOUT)
    except (RevocationError, ValueError) as exc:
        logger.warning("telegraphy: could not revoke the gateway sessions of user %s after %s: %s",
                       user.pk, why, exc)


def _on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if _enabled():
        revoke_quietly(user, "logout")


def _tracked_fields(model: Any) -> list[str]:
    names = {f.attname for f in model._meta.concrete_fields}
    return [name for name in ("password", "is_active") if name in names]


def _before_save(sender: Any, instance: Any, raw: bool = False, using: str | None = None,
                 update_fields: Any = None, **kwargs: Any) -> None:
    """Compares the stored password hash and ``is_active`` with the ones about to be saved."""
    if raw or instance.pk is None or instance._state.adding or not _enabled():
        return
    fields = _tracked_fields(sender)
    if update_fields is not None:
        fields = [name for name in fields if name in update_fields]  # e.g. last_login on every login: no query
    if not fields:
        return
    stored = sender._default_manager.using(using).filter(pk=instance.pk).values(*fields).first()
    if stored is None:
        return
    changed = []
    if "password" in stored and stored["password"] != instance.password:
        changed.append("a password change")
    if "is_active" in stored and stored["is_active"] and not instance.is_active:
        changed.append("deactivation")
    setattr(instance, _CHANGED_ATTR, " and ".join(changed) or None)


def _after_save(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    why = instance.__dict__.pop(_CHANGED_ATTR, None)
    if why:
        # After the commit: a rolled-back change revokes nothing, and a token minted after the revocation
        # sees the committed user.
        transaction.on_commit(lambda: revoke_quietly(instance, why), using=using)


def _after_delete(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    if _enabled():
        pk = instance.pk
        if pk is not None:
            transaction.on_commit(lambda: revoke_quietly(_Deleted(pk), "deletion"), using=using)


class _Deleted:
    """A deleted user's pk (``instance.pk`` may be reset by Django after the delete)."""

    is_authenticated = True

    def __init__(self, pk: Any):
        self.pk = pk


def connect() -> None:
    model = settings.AUTH_USER_MODEL
    user_logged_out.connect(_on_logged_out, dispatch_uid="telegraphy-revoke-logout")
    pre_save.connect(_before_save, sender=model, dispatch_uid="telegraphy-revoke-pre-save")
    post_save.connect(_after_save, sender=model, dispatch_uid="telegraphy-revoke-post-save")
    post_delete.connect(_after_delete, sender=model, dispatch_uid="telegraphy-revoke-delete")
