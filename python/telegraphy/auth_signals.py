"""Sessions end when permissions do (issues 11 and 20): a user's gateway sessions are revoked (``revoke_user``)
whenever what their tokens were granted may have changed:

- logout, a password change, ``is_active`` becoming False, deletion (the user can no longer sign in);
- ``is_staff`` or ``is_superuser`` changing, and any change of a field named in ``TELEGRAPHY["GRANT_FIELDS"]``
  (user model fields the project's ``allow_patterns`` reads; a many-to-many field there counts as below);
- group membership changing, from either side (``user.groups.add/remove/set/clear``,
  ``group.user_set.add/remove/set/clear``), the user's permissions changing (``user.user_permissions``,
  ``permission.user_set``), a group's permissions changing (``group.permissions``, ``permission.group_set``:
  every member) and a group being deleted (every member);
- :func:`grant_changed` called by the project for anything else ``allow_patterns`` reads (a profile, a team).

On by default; ``TELEGRAPHY["REVOKE_ON_AUTH_CHANGE"] = False`` turns all of it off. The revocation is written
after the transaction commits (a rolled-back change revokes nothing, and a token minted after it sees the
committed grant) and waits at most ``TOKEN_TIMEOUT`` for NATS: with NATS down, the save or logout goes on and a
warning is logged (run ``manage.py telegraphy_revoke --user ...`` once NATS is back).

Not seen, because Django sends no signal for them: ``QuerySet.update()``, ``bulk_update()``, ``bulk_create()``
of through rows and raw SQL. Call ``telegraphy.grant_changed(queryset)`` (after commit, logged) or
``telegraphy.revoke_users(queryset)`` (now, raising) after those.

Clients that have a ``tokenUrl`` ask it for a new token after the revocation (close 4003): a user who is
still signed in gets one with their current ``allow``; a signed-out, deactivated or deleted user gets 403 and
the client stops.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from .conf import telegraphy_settings
from .exceptions import RevocationError
from .revocations import user_subs, revoke_users

logger = logging.getLogger("telegraphy")

__all__ = ["grant_changed", "connect"]

_CHANGED_ATTR = "_telegraphy_auth_changed"
# The user model's own fields that change a grant: a changed value revokes (is_active only when it turns False).
_BUILT_IN_FIELDS = ("password", "is_active", "is_staff", "is_superuser")
# The user model's many-to-many fields that change a grant (with GRANT_FIELDS' many-to-many fields).
_BUILT_IN_M2M = ("groups", "user_permissions")
_REASONS = {"password": "a password change", "is_active": "deactivation"}


def _enabled() -> bool:
    return bool(telegraphy_settings.REVOKE_ON_AUTH_CHANGE)


def _quietly(subs: list[str], why: str) -> None:
    """``revoke_users(subs)``, bounded by ``TOKEN_TIMEOUT``; a failure is logged, never raised."""
    try:
        revoke_users(subs, timeout=telegraphy_settings.TOKEN_TIMEOUT)
    except (RevocationError, ValueError) as exc:
        shown = ", ".join(subs[:5]) + (f" and {len(subs) - 5} more" if len(subs) > 5 else "")
        logger.warning("telegraphy: could not revoke the gateway sessions of user %s after %s: %s", shown, why, exc)


def _after_commit(users: Any, why: str, using: str | None) -> None:
    """Revoke ``users`` (users, pks) once the current transaction on ``using`` commits (at once outside one)."""
    subs = user_subs(users)  # now: the pks as they are inside the transaction
    if subs:
        transaction.on_commit(lambda: _quietly(subs, why), using=using)


def grant_changed(users: Any, *, using: str | None = None) -> None:
    """Tell Telegraphy that what ``allow_patterns`` grants ``users`` may have changed: their gateway sessions
    are revoked once the current transaction (on database ``using``) commits, and their clients fetch tokens
    with the new grant from the token endpoint.

    ``users``: a user, a pk, or many (a QuerySet of the user model, read now, or an iterable). Call it from
    your own receivers (a ``post_save`` of the profile ``allow_patterns`` reads) and after
    ``QuerySet.update()``/``bulk_update()``/raw SQL, which send no signal (take the pks before an update that
    changes what its filter matches: ``filter(is_staff=True)`` matches nobody after ``update(is_staff=False)``).
    Like the automatic cases it honours ``REVOKE_ON_AUTH_CHANGE``, waits at most ``TOKEN_TIMEOUT`` and logs a
    failure instead of raising (``revoke_users`` is the immediate call that raises). ``ValueError`` for an
    anonymous or unsaved user.
    """
    subs = user_subs(users)
    if _enabled():
        _after_commit(subs, "grant_changed()", using)


# ---------------------------------------------------------------------------- logout, saves, deletion


def _on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if _enabled() and user is not None and getattr(user, "pk", None) is not None:
        _quietly(user_subs([user]), "logout")


def _grant_fields(model: Any, built_in: tuple[str, ...]) -> list[Any]:
    """The concrete fields of ``model`` named in ``built_in`` or in ``GRANT_FIELDS`` (unknown names skipped:
    the telegraphy.E019 check reports them)."""
    names = telegraphy_settings.GRANT_FIELDS
    extra = [n for n in names if isinstance(n, str)] if isinstance(names, (list, tuple)) else []
    fields = []
    for name in (*built_in, *extra):
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if field.concrete:
            fields.append(field)
    return fields


def _tracked_fields(model: Any) -> dict[str, str]:
    """attname -> field name of the user model's concrete fields whose change revokes."""
    return {f.attname: f.name for f in _grant_fields(model, _BUILT_IN_FIELDS) if not f.many_to_many}


def _before_save(sender: Any, instance: Any, raw: bool = False, using: str | None = None,
                 update_fields: Any = None, **kwargs: Any) -> None:
    """Compares the stored values of the tracked fields with the ones about to be saved."""
    if raw or instance.pk is None or instance._state.adding or not _enabled():
        return
    fields = _tracked_fields(sender)
    if update_fields is not None:
        # e.g. last_login on every login: no query
        fields = {att: name for att, name in fields.items() if name in update_fields or att in update_fields}
    if not fields:
        return
    stored = sender._default_manager.using(using).filter(pk=instance.pk).values(*fields).first()
    if stored is None:
        return
    changed = []
    for attname, name in fields.items():
        old, new = stored[attname], getattr(instance, attname)
        if old == new or (attname == "is_active" and not old):
            continue  # activation grants nothing a token could already hold
        changed.append(_REASONS.get(attname, f"a change of {name}"))
    setattr(instance, _CHANGED_ATTR, " and ".join(changed) or None)


def _after_save(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    why = instance.__dict__.pop(_CHANGED_ATTR, None)
    if why:
        _after_commit([instance], why, using)


def _after_delete(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    if _enabled() and instance.pk is not None:
        _after_commit([instance.pk], "deletion", using)  # the pk: Django may reset instance.pk after the delete


# ---------------------------------------------------------------------------- groups and permissions


def _user_m2m_fields(user_model: Any) -> dict[Any, str]:
    """through model -> name of the user model's many-to-many field whose change revokes."""
    return {f.remote_field.through: f.name for f in _grant_fields(user_model, _BUILT_IN_M2M) if f.many_to_many}


def _group_model() -> Any:
    return apps.get_model("auth", "Group") if apps.is_installed("django.contrib.auth") else None


def _pks(user_model: Any, using: str | None, **lookup: Any) -> list[Any]:
    """The pks of the users matching ``lookup`` (distinct), as the transaction sees them now."""
    return list(user_model._default_manager.using(using).filter(**lookup).values_list("pk", flat=True).distinct())


def _has_groups(user_model: Any) -> bool:
    """False for a custom user model without groups (no PermissionsMixin): group changes grant it nothing."""
    return "groups" in _user_m2m_fields(user_model).values()


def _on_m2m_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any,
                    using: str | None = None, **kwargs: Any) -> None:
    """post_add with the pks added; pre_remove and pre_clear while the rows still exist, counting only the
    relations that exist (Django passes a removal's pks as given)."""
    if action not in ("post_add", "pre_remove", "pre_clear") or (action != "pre_clear" and not pk_set):
        return
    if not _enabled():
        return
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    field = _user_m2m_fields(user_model).get(sender)
    group = _group_model()
    going = action != "post_add"
    given = {"pk__in": pk_set} if pk_set else {}
    if field is not None:
        why = f"a change of {field}"
        if not reverse:  # instance is the user, pk_set the related objects (groups, permissions)
            if going and not getattr(instance, field).using(using).filter(**given).exists():
                return
            users = [instance]
        else:  # instance is e.g. a group, pk_set the users
            users = _pks(user_model, using, **{field: instance}, **given) if going else list(pk_set)
    elif group is not None and sender is group.permissions.through and _has_groups(user_model):
        why = "a change of a group's permissions"
        if not reverse:  # instance is the group, pk_set the permissions: every member
            if going and not instance.permissions.using(using).filter(**given).exists():
                return
            users = _pks(user_model, using, groups=instance)
        else:  # instance is the permission, pk_set the groups (one filter(): the same group row)
            lookup = {"groups__in": pk_set} if pk_set else {}
            if going:
                lookup["groups__permissions"] = instance
            users = _pks(user_model, using, **lookup)
    else:
        return
    _after_commit(users, why, using)


def _before_group_delete(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    """Deleting a group deletes its memberships without an m2m_changed signal: its members, before they go."""
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    if _enabled() and instance.pk is not None and _has_groups(user_model):
        _after_commit(_pks(user_model, using, groups=instance), "the deletion of a group", using)


def connect() -> None:
    model = settings.AUTH_USER_MODEL
    user_logged_out.connect(_on_logged_out, dispatch_uid="telegraphy-revoke-logout")
    pre_save.connect(_before_save, sender=model, dispatch_uid="telegraphy-revoke-pre-save")
    post_save.connect(_after_save, sender=model, dispatch_uid="telegraphy-revoke-post-save")
    post_delete.connect(_after_delete, sender=model, dispatch_uid="telegraphy-revoke-delete")
    # Every m2m change: the receiver looks its sender up (GRANT_FIELDS may name more through models).
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="telegraphy-revoke-m2m")
    if apps.is_installed("django.contrib.auth"):
        pre_delete.connect(_before_group_delete, sender="auth.Group", dispatch_uid="telegraphy-revoke-group-delete")
