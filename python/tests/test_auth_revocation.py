"""Sessions end when permissions do (issue 11, part 4, Django side): logout, a password change, deactivation
and deletion revoke the user's gateway sessions (the revocation KV key, then 4003 at the real gateway); a
token minted right after is accepted; with NATS down saves and logouts go on."""

import logging
import secrets
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client

from telegraphy import tokens
from telegraphy.revocations import user_key

from .helpers import SECRET
from .helpers import WsClient as Ws
from .test_revocation import closed_code, refused

pytestmark = pytest.mark.django_db(transaction=True)  # revocations are written after the commit
BUCKET = "telegraphy_revocations"


def revoked_at(nats_client, user) -> int | None:
    """The revocation time stored for ``user``, None when there is none."""
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError

    async def get():
        try:
            kv = await nats_client.js.key_value(BUCKET)
            return int((await kv.get(user_key(user))).value)
        except (BucketNotFoundError, KeyNotFoundError):
            return None

    return nats_client.run(get())


def new_user(name: str) -> User:
    # A pk no other test uses: revocations stay in the session's nats-server for a day.
    return User.objects.create_user(name, password="old-password", id=10**9 + secrets.randbelow(10**9))


def test_logout_revokes_login_does_not(fresh_nats):
    _server, nats_client = fresh_nats
    ann = new_user("ann")
    client = Client()
    client.force_login(ann)  # saves last_login (update_fields): not an auth change
    assert revoked_at(nats_client, ann) is None
    before = int(time.time())
    client.logout()
    assert before <= revoked_at(nats_client, ann) <= time.time()


def test_password_change_deactivation_and_deletion_revoke(fresh_nats):
    _server, nats_client = fresh_nats
    pat, dan, del_, kim = (new_user(n) for n in ("pat", "dan", "del", "kim"))
    pat.set_password("new-password")
    pat.save()
    assert revoked_at(nats_client, pat) is not None, "password change"
    dan.is_active = False
    dan.save()
    assert revoked_at(nats_client, dan) is not None, "deactivation"
    User.objects.get(pk=del_.pk).delete()
    assert revoked_at(nats_client, del_) is not None, "deletion"

    kim.first_name = "Kim"
    kim.save()
    kim.password = User.objects.get(pk=kim.pk).password  # the same hash assigned again
    kim.save(update_fields=["password", "first_name"])
    kim.is_active = True
    kim.save()
    assert revoked_at(nats_client, kim) is None, "no revocation without an auth change"
    kim.is_active = False
    kim.save(update_fields=["first_name"])  # is_active not saved: nothing changed in the database
    assert revoked_at(nats_client, kim) is None


def test_setting_turns_it_off(fresh_nats, settings):
    _server, nats_client = fresh_nats
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REVOKE_ON_AUTH_CHANGE": False}
    lou = new_user("lou")
    client = Client()
    client.force_login(lou)
    client.logout()
    lou.set_password("new-password")
    lou.is_active = False
    lou.save()
    assert revoked_at(nats_client, lou) is None


def test_nats_down_never_breaks_a_save_or_a_logout(caplog):
    """tests.settings point NATS at a refusing port: the change is saved, the logout done, a warning logged."""
    caplog.set_level(logging.WARNING, logger="telegraphy")
    max_ = new_user("max")
    client = Client()
    client.force_login(max_)
    started = time.monotonic()
    client.logout()
    max_.set_password("new-password")
    max_.save()
    elapsed = time.monotonic() - started
    assert User.objects.get(pk=max_.pk).check_password("new-password")
    assert "_auth_user_id" not in client.session
    warnings = [r.getMessage() for r in caplog.records if "could not revoke" in r.getMessage()]
    assert len(warnings) == 2 and "logout" in warnings[0] and "a password change" in warnings[1], warnings
    assert elapsed < 2 * 2.0 + 1, f"bounded by TOKEN_TIMEOUT per revocation, took {elapsed:.2f}s"


def test_a_token_minted_right_after_a_revocation_postdates_it(fresh_nats):
    """PROTOCOL section 4: a token with iat <= the revocation time is refused, so this process mints the
    revoked user's next token in the following second (waiting for it: never dated ahead)."""
    from telegraphy import revoke_user

    sam = new_user("sam")
    at = revoke_user(sam)
    other_started = time.time()
    other = tokens.verify(tokens.mint("someone-else", allow=["chat.>"]), [SECRET])
    assert time.time() - other_started < 0.5 and other["iat"] <= time.time(), "other users do not wait"
    claims = tokens.verify(tokens.mint(sam, allow=["chat.>"]), [SECRET])
    assert at < claims["iat"] <= time.time()


# ---------------------------------------------------------------------------- through the real gateway


def test_logout_and_password_change_close_sockets_and_relogin_works(gateway, nats_settings):
    """alice's live socket is closed with 4003 when she logs out; logging in again at once gets a token (from
    the token endpoint, POST with CSRF) that the gateway accepts; a password change closes that one too,
    and her token from before the change is refused."""
    alice = new_user("alice")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    first = Ws(gateway["ws"], tokens.mint(alice, allow=["chat.>"]))
    try:
        assert first.connected["type"] == "connected", first.connected
        browser.logout()
        assert closed_code(first, time.monotonic() + 2.0) == 4003, "logout ends the live socket"

        browser.force_login(alice)  # at once: typically the same second as the revocation
        browser.cookies["csrftoken"] = csrf = "csrf" * 8
        response = browser.post("/rt/token/", HTTP_X_CSRFTOKEN=csrf)
        assert response.status_code == 200, response.content
        second = Ws(gateway["ws"], response.json()["token"])
        assert second.connected["type"] == "connected", f"the token after the logout: {second.connected}"
        unused = tokens.mint(alice, allow=["chat.>"])

        alice.set_password("new-password")
        alice.save()
        assert closed_code(second, time.monotonic() + 2.0) == 4003, "a password change ends the live socket"
        assert refused(gateway["ws"], token=unused) == 4001, "a token from before the change is refused"
    finally:
        first.close()
