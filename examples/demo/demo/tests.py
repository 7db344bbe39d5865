"""Demo checks (``python examples/demo/manage.py test demo``); they need no NATS: a page renders without one."""

import json
import re
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.test import TestCase, override_settings

import telegraphy
from telegraphy import tokens
from telegraphy.names import contains
from telegraphy.rpc import RpcRequest, handlers

from . import rpc
from .events import ChatMessage, ChatTyping, ItemEvents
from .models import Item, Message

NO_KV = override_settings(
    TELEGRAPHY={"SECRET": "demo-tests-secret-0123456789abcdef0123", "REGISTER_TOKENS": False}
)


def json_script(html, element_id):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


class DemoTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.admin = User.objects.get(username="admin")  # created by migration 0002
        cls.alice = User.objects.get(username="alice")
        cls.bob = User.objects.create_user("bob", password="bob")
        cls.bobs = Item.objects.create(name="Bob's bike", price=Decimal("99.00"), owner=cls.bob)

    def page(self, user, url):
        self.client.force_login(user)
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        return html, json_script(html, "telegraphy-config"), json_script(html, "page-config")

    def test_demo_users_exist_with_their_passwords(self):
        self.assertTrue(self.client.login(username="admin", password="admin"))
        self.assertTrue(self.admin.is_staff)
        self.assertTrue(self.client.login(username="alice", password="alice"))
        self.assertFalse(self.alice.is_staff)

    def test_pages_need_a_login(self):
        self.assertRedirects(self.client.get("/"), "/accounts/login/?next=/")

    @NO_KV
    def test_staff_tracker_sees_everything_and_may_subscribe_to_it(self):
        html, config, page = self.page(self.admin, "/")
        self.assertEqual(page["pattern"], "demo.item.>")
        self.assertIn(f'data-pk="{self.bobs.pk}"', html)
        self.assertIn('id="tg-state"', html)
        self.assertEqual(html.count('id="telegraphy-config"'), 1, "the client config is rendered once")
        self.assertIn("const tg = Telegraphy.page();", html)
        allow = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])["allow"]
        self.assertTrue(any(contains(a, page["pattern"]) for a in allow), allow)

    @NO_KV
    def test_alice_sees_and_may_receive_only_her_own_items(self):
        html, config, page = self.page(self.alice, "/")
        self.assertEqual(page["pattern"], f"demo.mine.{self.alice.pk}.>")
        self.assertNotIn(f'data-pk="{self.bobs.pk}"', html)
        for item in Item.objects.filter(owner=self.alice):
            self.assertIn(f'data-pk="{item.pk}"', html)
        allow = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])["allow"]
        self.assertTrue(any(contains(a, page["pattern"]) for a in allow), allow)
        self.assertFalse(any(contains(a, "demo.item.>") for a in allow), "alice may not receive all items")
        self.assertFalse(any(contains(a, f"demo.mine.{self.bob.pk}.>") for a in allow))
        self.assertFalse(any(contains(a, f"demo.viewing.{self.bob.pk}.{self.bobs.pk}") for a in allow), "nor be present on his items")
        self.assertEqual(self.client.get(f"/items/{self.bobs.pk}/").status_code, 404)

    @NO_KV
    def test_item_page_subscribes_to_one_object(self):
        mine = Item.objects.filter(owner=self.alice).first()
        _, config, page = self.page(self.alice, f"/items/{mine.pk}/")
        self.assertEqual(page["pattern"], f"demo.mine.{self.alice.pk}.*.{mine.pk}")
        allow = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])["allow"]
        self.assertTrue(any(contains(a, page["pattern"]) for a in allow))
        # who else is viewing: one presence channel per item, allowed to its owner and to the staff
        self.assertEqual(page["viewers"], f"demo.viewing.{self.alice.pk}.{mine.pk}")
        self.assertTrue(any(contains(a, page["viewers"]) for a in allow), allow)
        _, config, page = self.page(self.admin, f"/items/{mine.pk}/")
        self.assertEqual(page["pattern"], f"demo.item.*.{mine.pk}")
        allow = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])["allow"]
        self.assertTrue(any(contains(a, f"demo.viewing.{self.alice.pk}.{mine.pk}") for a in allow), allow)

    @NO_KV
    def test_tracker_toggle_filters_rows_and_hands_the_page_the_same_lookups(self):
        html, _, page = self.page(self.admin, "/")
        self.assertEqual((page["sub"], page["user"], page["filter"]), ("tracker", self.admin.pk, {}))
        for selector in ('id="filter-all"', 'id="filter-mine"', 'id="filter-over"', 'id="filter-over-value"'):
            self.assertIn(selector, html)
        html, _, page = self.page(self.admin, "/?price__gt=12.50")
        self.assertEqual(page["filter"], {"price__gt": "12.50"}, "a decimal string, as event data carries the price")
        self.assertIn(f'data-pk="{self.bobs.pk}"', html)  # 99.00
        teapot = Item.objects.get(name="Teapot")  # 12.50, not over
        self.assertNotIn(f'data-pk="{teapot.pk}"', html)
        html, _, page = self.page(self.admin, f"/?owner={self.admin.pk}")
        self.assertEqual(page["filter"], {"owner": self.admin.pk}, "a number, as event data carries the owner")
        self.assertIn(f'data-pk="{teapot.pk}"', html)
        self.assertNotIn(f'data-pk="{self.bobs.pk}"', html)

    def test_item_list_gives_the_filtered_rows_as_event_data(self):
        self.client.force_login(self.admin)
        body = self.client.get("/items/", {"price__gt": "12.5"}).json()
        self.assertEqual(body["filter"], {"price__gt": "12.5"})
        self.assertEqual([item["pk"] for item in body["items"]], [self.bobs.pk])
        self.assertEqual(body["items"][0], json.loads(json.dumps(ItemEvents().to_dict(self.bobs), cls=DjangoJSONEncoder)))
        self.assertEqual(body["items"][0]["price"], "99.00")
        everything = self.client.get("/items/").json()
        self.assertEqual((everything["filter"], len(everything["items"])), ({}, Item.objects.count()))
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/items/", {"owner": self.bob.pk}).json()["items"], [], "only what alice may see")

    def test_bad_filter_values_are_refused(self):
        self.client.force_login(self.admin)
        for query in ({"price__gt": "abc"}, {"price__gt": "NaN"}, {"owner": "x"}):
            self.assertEqual(self.client.get("/items/", query).status_code, 400, query)
            self.assertEqual(self.client.get("/", query).status_code, 400, query)
        self.assertEqual(self.client.get("/items/", {"name": "x"}).json()["filter"], {}, "only the toggle's lookups")

    def test_saving_an_item_publishes_both_streams_after_commit(self):
        self.client.force_login(self.alice)
        with self.captureOnCommitCallbacks() as callbacks:
            response = self.client.post("/items/new/", {"name": "Kettle", "description": "", "price": "20.00"})
        self.assertRedirects(response, "/")
        item = Item.objects.get(name="Kettle")
        subjects = sorted(cb.args[0] for cb in callbacks)
        self.assertEqual(
            subjects,
            [f"telegraphy.demo.item.created.{item.pk}", f"telegraphy.demo.mine.{self.alice.pk}.created.{item.pk}"],
        )
        payload = json.loads(callbacks[0].args[1])
        self.assertEqual((payload["name"], payload["price"], payload["owner_name"]), ("Kettle", "20.00", "alice"))

    @NO_KV
    def test_chat_page_is_present_on_the_rooms_message_channel(self):
        _, config, page = self.page(self.alice, "/chat/lobby/")
        self.assertEqual(page["pattern"], "demo.chat.lobby.message", "one name for the messages and the presence")
        self.assertEqual(page["pattern"], ChatMessage.presence_channel(room="lobby"))
        allow = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])["allow"]
        self.assertTrue(any(contains(a, page["pattern"]) for a in allow), allow)

    def test_events_page_lists_the_catalog_from_the_gateway(self):
        html, config, _ = self.page(self.alice, "/events/")
        self.assertIn('id="events"', html)
        self.assertIn("tg.events()", html)
        self.assertIn('href="/events/"', html, "in the navigation")

    def test_pages_render_when_nats_is_down(self):
        html, config, _ = self.page(self.alice, "/chat/lobby/")
        self.assertIsNone(config["token"])
        self.assertEqual(config["tokenUrl"], "/rt/token/")

    def test_chat_send_fallback_without_javascript_saves_and_goes_back_to_the_room(self):
        self.client.force_login(self.alice)
        response = self.client.post("/chat/lobby/send/", {"text": " hello "})
        self.assertRedirects(response, "/chat/lobby/")
        self.assertEqual(list(Message.objects.values_list("room", "author", "text")), [("lobby", self.alice.pk, "hello")])
        self.assertContains(self.client.post("/chat/lobby/send/", {"text": "  "}), "say something", status_code=400)
        self.assertEqual(self.client.get("/chat/lobby/send/").status_code, 405)
        self.assertEqual(self.client.get("/chat/bad room/").status_code, 404)
        self.assertEqual(self.client.get(f"/chat/{'r' * 65}/").status_code, 404, "room names fit the model's field")
        self.client.logout()
        self.assertRedirects(self.client.post("/chat/lobby/send/", {"text": "x"}), "/accounts/login/?next=/chat/lobby/send/")
        self.assertEqual(Message.objects.count(), 1)

    @NO_KV
    def test_chat_page_grants_the_typing_names_and_chat_send_but_no_message_publish(self):
        html, config, page = self.page(self.alice, "/chat/lobby/")
        self.assertEqual(page["typing"], "demo.chat.lobby.typing")
        self.assertEqual(page["typing"], ChatTyping.event_name(room="lobby"))
        claims = tokens.verify(config["token"], ["demo-tests-secret-0123456789abcdef0123"])
        self.assertEqual(claims["publish_ephemeral"], ["demo.chat.*.typing"], "typing is ephemeral: never stored")
        self.assertNotIn("publish", claims, "nothing a client publishes is stored")
        self.assertTrue(any(contains(p, page["typing"]) for p in claims["publish_ephemeral"]))
        self.assertFalse(any(contains(p, page["pattern"]) for p in claims["publish_ephemeral"]),
                         "a page may not publish a message itself: only the chat.send handler does")
        self.assertIn("chat.send", claims["rpc"])
        self.assertTrue(any(contains(a, page["typing"]) for a in claims["allow"]), "the pages receive typing")
        self.assertIn('tg.rpc("chat.send"', html)
        self.assertIn("tg.publish(page.typing", html)

    def test_chat_page_shows_the_rooms_saved_messages_escaped(self):
        Message.objects.create(room="lobby", author=self.bob, text="<b>hi</b>")
        Message.objects.create(room="other", author=self.bob, text="elsewhere")
        html, _, _ = self.page(self.alice, "/chat/lobby/")
        self.assertIn("&lt;b&gt;hi&lt;/b&gt;", html)
        self.assertNotIn("<b>hi</b>", html)
        self.assertNotIn("elsewhere", html)

    def call_chat_send(self, user, data):
        request = RpcRequest(method="chat.send", data=data, user=user, sub=str(user.pk), client="zeWRwZWB0FcDVYYQ",
                             session="s-test")
        return handlers()["chat.send"].func(request)

    def test_chat_send_rpc_handler_saves_the_message(self):
        self.assertIs(handlers()["chat.send"].func, rpc.chat_send, "registered from demo/rpc.py")
        reply = self.call_chat_send(self.alice, {"room": "lobby", "text": "  hi there "})
        message = Message.objects.get()
        self.assertEqual(reply, {"id": message.pk})
        self.assertEqual((message.room, message.author, message.text), ("lobby", self.alice, "hi there"))

    def test_chat_send_rpc_handler_refuses_bad_requests_before_saving(self):
        cases = [
            ({"room": "lobby", "text": ""}, "empty", "say something"),
            ({"room": "lobby", "text": " \n\t"}, "empty", "say something"),
            ({"room": "lobby"}, "bad_text", "text must be a string"),
            ({"room": "lobby", "text": 7}, "bad_text", "text must be a string"),
            ({"room": "lobby", "text": "x" * 501}, "too_long", "at most 500 characters"),
            ({"room": "no room", "text": "hi"}, "bad_room", "room names are 1..64 characters of [A-Za-z0-9_-]"),
            ({"room": "r" * 65, "text": "hi"}, "bad_room", "room names are 1..64 characters of [A-Za-z0-9_-]"),
            ({"room": ["lobby"], "text": "hi"}, "bad_room", "room names are 1..64 characters of [A-Za-z0-9_-]"),
            ("hi", "bad_data", 'send {"room": ..., "text": ...}'),
        ]
        for data, code, message in cases:
            with self.subTest(data=data), self.assertRaises(telegraphy.RpcError) as raised:
                self.call_chat_send(self.alice, data)
            self.assertEqual((raised.exception.code, raised.exception.message), (code, message))
        self.assertEqual(self.call_chat_send(self.alice, {"room": "lobby", "text": "x" * 500})["id"],
                         Message.objects.get().pk, "500 characters are fine")

    def test_static_client_is_served(self):
        response = self.client.get("/static/telegraphy/telegraphy.js")
        self.assertEqual(response.status_code, 200)
