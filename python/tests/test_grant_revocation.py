"""Every change that can change a grant revokes the user's gateway sessions (issue 20, part 3): is_staff and
is_superuser flips, group membership from either side (add, remove, set, clear), user permissions, a group's
permissions (every member), a group's deletion, GRANT_FIELDS, and ``telegraphy.grant_changed()``; all after
the commit. What Django sends no signal for (``QuerySet.update``) is not seen: ``revoke_users(queryset)``.
Through the real gateway: a demoted user's live socket is closed with 4003 and its resume refused, while
another user's socket stays."""

import logging
import secrets
import time

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.db import transaction
from django.test import Client

import telegraphy
from telegraphy import BaseEvent, tokens
from telegraphy.events import unregister

from .helpers import WsClient as Ws
from .test_auth_revocation import revoked_at
from .test_revocation import closed_code, refused

pytestmark = pytest.mark.django_db(transaction=True)  # revocations are written after the commit


def user(name: str, **fields) -> User:
    # A pk no other test uses: revocations stay in the session's nats-server for a day.
    return User.objects.create_user(name, id=10**9 + secrets.randbelow(10**9), **fields)


def revoked(nats_client, *users) -> list[bool]:
    return [revoked_at(nats_client, u) is not None for u in users]


def member_of(group: Group, *users: User) -> None:
    """Memberships made without a signal (bulk_create of the through rows): set-up that revokes nothing."""
    through = User.groups.through
    through.objects.bulk_create([through(user_id=u.pk, group_id=group.pk) for u in users])


def perm(codename: str) -> Permission:
    return Permission.objects.get(codename=codename, content_type__app_label="testapp")


def test_staff_and_superuser_flips_revoke(fresh_nats):
    _server, nats_client = fresh_nats
    ann, bob = user("ann", is_staff=True), user("bob", is_superuser=True)
    cid, eve = user("cid"), user("eve", is_staff=True)
    ann.is_staff = False
    ann.save()
    bob.is_superuser = False
    bob.save(update_fields=["is_superuser"])
    cid.is_staff = True  # a promotion too: the live sessions hold the old, smaller grant
    cid.save()
    eve.first_name = "Eve"
    eve.save()
    eve.is_staff = False
    eve.save(update_fields=["first_name"])  # is_staff not saved: nothing changed in the database
    assert revoked(nats_client, ann, bob, cid, eve) == [True, True, True, False]
    assert User.objects.get(pk=eve.pk).is_staff, "the test's premise"


def test_group_membership_from_both_sides(fresh_nats):
    _server, nats_client = fresh_nats
    g1, g2, g3, g4, g5, g6 = (Group.objects.create(name=f"g{i}-{secrets.token_hex(4)}") for i in range(6))
    add_f, add_r, rem_f, rem_r, clr_f, clr_r1, clr_r2, set_f, bystander, no_groups = (
        user(n) for n in ("add_f", "add_r", "rem_f", "rem_r", "clr_f", "clr_r1", "clr_r2", "set_f", "by", "none")
    )
    member_of(g2, rem_f, rem_r)
    member_of(g3, clr_f)
    member_of(g4, clr_r1, clr_r2)
    member_of(g6, bystander)
    assert not any(revoked(nats_client, rem_f, clr_f, clr_r1, bystander)), "bulk_create sends no signal"

    add_f.groups.add(g1)
    g1.user_set.add(add_r)
    rem_f.groups.remove(g2)
    g2.user_set.remove(rem_r)
    clr_f.groups.clear()
    g4.user_set.clear()
    set_f.groups.set([g5])
    no_groups.groups.clear()  # had none: nothing changed
    g1.user_set.remove(no_groups)  # was not a member
    assert revoked(nats_client, add_f, add_r, rem_f, rem_r, clr_f, clr_r1, clr_r2, set_f) == [True] * 8
    assert revoked(nats_client, bystander, no_groups) == [False, False]


def test_user_permissions_from_both_sides(fresh_nats):
    _server, nats_client = fresh_nats
    add_book, change_book = perm("add_book"), perm("change_book")
    fwd, rev, cleared, bystander = user("fwd"), user("rev"), user("cleared"), user("by")
    User.user_permissions.through.objects.bulk_create(
        [User.user_permissions.through(user_id=u.pk, permission_id=change_book.pk) for u in (cleared, bystander)]
    )
    fwd.user_permissions.add(add_book)
    add_book.user_set.add(rev)
    cleared.user_permissions.clear()
    assert revoked(nats_client, fwd, rev, cleared, bystander) == [True, True, True, False]


def test_group_permissions_revoke_every_member(fresh_nats):
    _server, nats_client = fresh_nats
    add_book, delete_book = perm("add_book"), perm("delete_book")
    g1, g2, g3, g4, g5 = (Group.objects.create(name=f"p{i}-{secrets.token_hex(4)}") for i in range(5))
    m1, m2, m3, m4, m5, m6, outsider = (user(n) for n in ("m1", "m2", "m3", "m4", "m5", "m6", "outsider"))
    member_of(g1, m1, m2)
    member_of(g2, m3)
    member_of(g3, m4)
    member_of(g4, m5)
    member_of(g5, m6)
    g5.permissions.remove(delete_book)  # g5 never had it: nothing changes
    delete_book.group_set.remove(g5)
    assert revoked(nats_client, m6) == [False]
    through = Group.permissions.through
    through.objects.bulk_create([through(group_id=g3.pk, permission_id=delete_book.pk)])

    g1.permissions.add(add_book)  # from the group's side: every member
    assert revoked(nats_client, m1, m2, m3, outsider) == [True, True, False, False]
    add_book.group_set.add(g2)  # from the permission's side
    g3.permissions.clear()
    assert revoked(nats_client, m3, m4, m5, outsider) == [True, True, False, False]
    g4.delete()  # the memberships go without an m2m signal
    assert revoked(nats_client, m5, outsider) == [True, False]


def test_grant_fields_setting(fresh_nats, settings):
    """GRANT_FIELDS: user model fields the project's allow_patterns reads (a change revokes, as is_staff)."""
    _server, nats_client = fresh_nats
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GRANT_FIELDS": ["email"]}
    changed, untouched = user("changed", email="a@example.com"), user("untouched", email="b@example.com")
    changed.email = "c@example.com"
    changed.save()
    untouched.last_name = "Same"
    untouched.save()
    assert revoked(nats_client, changed, untouched) == [True, False]


def test_grant_changed_is_after_commit_and_a_rollback_revokes_nothing(fresh_nats):
    _server, nats_client = fresh_nats
    a, b, c, d, e = (user(n) for n in "abcde")
    with transaction.atomic():
        telegraphy.grant_changed(a)
        assert revoked(nats_client, a) == [False], "not before the commit"
    assert revoked(nats_client, a) == [True]

    with pytest.raises(RuntimeError), transaction.atomic():
        b.is_staff = True
        b.save()
        c.groups.add(Group.objects.create(name="rolled-back"))
        telegraphy.grant_changed(c)
        raise RuntimeError("rollback")
    telegraphy.grant_changed(User.objects.filter(pk__in=[d.pk, e.pk]))  # a queryset: its pks, now
    assert revoked(nats_client, b, c, d, e) == [False, False, True, True]
    with pytest.raises(ValueError, match="anonymous"):
        telegraphy.grant_changed(AnonymousUser())


def test_queryset_update_is_not_seen_revoke_users_covers_it(fresh_nats):
    """QuerySet.update() sends no signal (documented): revoke_users(queryset) is the call to make."""
    _server, nats_client = fresh_nats
    staff = [user(f"s{i}", is_staff=True) for i in range(3)]
    kept = user("kept", is_staff=True)
    demoted = User.objects.filter(pk__in=[u.pk for u in staff])
    demoted.update(is_staff=False)
    assert revoked(nats_client, *staff) == [False] * 3
    revoked_at_ = telegraphy.revoke_users(demoted)
    assert revoked_at_ is not None and revoked(nats_client, *staff, kept) == [True, True, True, False]
    assert telegraphy.revoke_users(User.objects.none()) is None
    assert telegraphy.revoke_users([]) is None


def test_the_switch_turns_it_all_off(fresh_nats, settings):
    _server, nats_client = fresh_nats
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "REVOKE_ON_AUTH_CHANGE": False}
    a, b = user("a", is_staff=True), user("b")
    a.is_staff = False
    a.save()
    b.groups.add(Group.objects.create(name=f"off-{secrets.token_hex(4)}"))
    telegraphy.grant_changed(b)
    assert revoked(nats_client, a, b) == [False, False]


def test_nats_down_never_breaks_a_group_change(caplog):
    """tests.settings point NATS at a refusing port: the membership is saved, a warning logged, bounded."""
    caplog.set_level(logging.WARNING, logger="telegraphy")
    group = Group.objects.create(name="down")
    a, b = user("a"), user("b")
    started = time.monotonic()
    group.user_set.add(a, b)
    elapsed = time.monotonic() - started
    assert set(group.user_set.all()) == {a, b}
    warnings = [r.getMessage() for r in caplog.records if "could not revoke" in r.getMessage()]
    assert len(warnings) == 1 and "a change of groups" in warnings[0], warnings
    assert str(a.pk) in warnings[0] and str(b.pk) in warnings[0]
    assert elapsed < 2.0 + 1, f"bounded by TOKEN_TIMEOUT once for the batch, took {elapsed:.2f}s"


# ---------------------------------------------------------------------------- through the real gateway


@pytest.fixture
def ops_events():
    """ops.<topic> for members of the group "ops": a grant allow_patterns reads from group membership."""

    class OpsEvent(BaseEvent):  # registered when defined
        name = "ops.{topic}"

        def allowed(self, user):
            return bool(getattr(user, "is_authenticated", False)) and user.groups.filter(name="ops").exists()

    yield
    unregister(OpsEvent)


def test_demoted_users_socket_is_closed_and_resume_refused_others_stay(gateway, nats_settings, ops_events):
    """sam loses is_staff, olga leaves the group "ops": their live sockets close with 4003, their resume
    tokens are refused (4001), kim's socket stays; a token from the endpoint carries the new, smaller grant."""
    ops = Group.objects.get_or_create(name="ops")[0]
    sam, olga, kim = user("sam", is_staff=True), user("olga"), user("kim", is_staff=True)
    member_of(ops, olga, kim)
    sockets = {u.username: Ws(gateway["ws"], tokens.mint(u)) for u in (sam, olga, kim)}
    try:
        assert [s.connected["type"] for s in sockets.values()] == ["connected"] * 3
        assert sockets["sam"].subscribe("testapp.book.>")["type"] == "subscribed", "staff reads books"
        assert sockets["olga"].subscribe("ops.*")["type"] == "subscribed", "a member of ops"
        assert sockets["kim"].subscribe("testapp.book.>")["type"] == "subscribed"

        sam.is_staff = False
        sam.save()
        ops.user_set.remove(olga)
        deadline = time.monotonic() + 5.0
        assert closed_code(sockets["sam"], deadline) == 4003, "demoted from staff"
        assert closed_code(sockets["olga"], deadline) == 4003, "removed from the group"
        assert refused(gateway["ws"], resume=sockets["sam"].connected["resume"]) == 4001
        assert refused(gateway["ws"], resume=sockets["olga"].connected["resume"]) == 4001
        assert sockets["kim"].subscribe("ops.*", id=3)["type"] == "subscribed", "kim's socket stays open"

        browser = Client(enforce_csrf_checks=True)
        browser.force_login(sam)
        browser.cookies["csrftoken"] = csrf = "csrf" * 8
        response = browser.post("/rt/token/", HTTP_X_CSRFTOKEN=csrf)
        assert response.status_code == 200, response.content
        again = Ws(gateway["ws"], response.json()["token"])
        sockets["sam-again"] = again
        assert again.connected["type"] == "connected", again.connected
        assert again.subscribe("testapp.book.>")["code"] == "forbidden", "the new token has the new grant"
    finally:
        for socket in sockets.values():
            socket.close()


def test_revoke_users_writes_many_keys_under_one_timeout(fresh_nats):
    """More users than PUTS_IN_FLIGHT: every key written (one KV message each), duplicates once; async too."""
    import asyncio

    from telegraphy.revocations import PUTS_IN_FLIGHT

    _server, nats_client = fresh_nats
    subs = [f"bulk-{i}" for i in range(2 * PUTS_IN_FLIGHT + 7)]
    at = telegraphy.revoke_users(subs + subs[:10], timeout=10)
    assert at is not None and at <= time.time()

    async def messages() -> int:
        return (await nats_client.js.stream_info("KV_telegraphy_revocations")).state.messages

    assert nats_client.run(messages()) == len(subs)
    assert revoked_at(nats_client, subs[-1]) == at
    a, b = user("async-a"), user("async-b")
    assert asyncio.run(telegraphy.arevoke_users([a, b.pk])) is not None
    assert revoked(nats_client, a, b) == [True, True]
