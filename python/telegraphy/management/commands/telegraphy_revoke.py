"""``manage.py telegraphy_revoke --user <pk or username> | --session <sid>``: cut a user or a session off."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ...exceptions import RevocationError
from ...revocations import revoke_session, revoke_user, session_key, user_key


def find_user(value: str) -> Any:
    """The user whose pk or username (``USERNAME_FIELD``) is ``value``; CommandError if none or two differ."""
    model = get_user_model()
    found = {}
    try:
        pk = model._meta.pk.to_python(value)
    except ValidationError:
        pk = None
    if pk is not None:
        found.update({u.pk: u for u in model._default_manager.filter(pk=pk)})
    found.update({u.pk: u for u in model._default_manager.filter(**{model.USERNAME_FIELD: value})})
    if not found:
        raise CommandError(f"no user with pk or {model.USERNAME_FIELD} {value!r}")
    if len(found) > 1:
        raise CommandError(f"{value!r} is the pk of one user and the {model.USERNAME_FIELD} of another: "
                           "pass the pk of the one you mean")
    return next(iter(found.values()))


class Command(BaseCommand):
    help = ("Revoke a user (every token and live socket, on every gateway) or one session: writes the "
            "telegraphy_revocations KV key and waits until NATS acknowledged it.")

    def add_arguments(self, parser: Any) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--user", help="the user's pk or username")
        which.add_argument("--session", help="a session id (the `session` of a gateway's connected frame)")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait (default PUBLISH_TIMEOUT)")

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = options["timeout"]
        try:
            if options["user"] is not None:
                user = find_user(options["user"])
                key, revoked_at = user_key(user), revoke_user(user, timeout=timeout)
                what = f"user {user.pk} ({user.get_username()})"
            else:
                sid = options["session"]
                key, revoked_at = session_key(sid), revoke_session(sid, timeout=timeout)
                what = f"session {sid}"
        except (ValueError, RevocationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"revoked {what}: {key} = {revoked_at}")
