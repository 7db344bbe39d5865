"""The demo project (examples/demo) passes its own checks and tests, in a subprocess (its own settings)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .browser import Chromium
from .helpers import REPO, SECRET, Process, WsClient, free_port

DEMO = REPO / "examples" / "demo"


def run_demo(*args: str, tmp_path, **extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "TELEGRAPHY_NATS_URL": "nats://127.0.0.1:1",  # NATS down: pages must still work
        "PYTHONPATH": str(REPO / "python"),
        **extra,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for name in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "TELEGRAPHY_SECRET"):
        if name not in extra:
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(DEMO / "manage.py"), *args], cwd=DEMO, env=env, capture_output=True, text=True, timeout=120
    )


def test_demo_checks_migrations_and_tests(tmp_path):
    check = run_demo("check", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    pending = run_demo("makemigrations", "--check", "--dry-run", tmp_path=tmp_path)
    assert pending.returncode == 0, "the demo's models and migrations differ:\n" + pending.stdout
    tests = run_demo("test", "demo", "-v", "1", tmp_path=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "OK" in tests.stderr


SHOW_KEYS = "from django.conf import settings as s; print(s.SECRET_KEY); print(s.TELEGRAPHY['SECRET'])"


def test_demo_secrets_come_from_the_environment(tmp_path):
    """No secret ships with the demo: without DEBUG it refuses to start without DJANGO_SECRET_KEY; with DEBUG
    (the default, local use) it makes a Django key per process and a Telegraphy secret kept next to the
    database, so that runserver and run_telegraph agree on it."""
    refused = run_demo("check", tmp_path=tmp_path, DJANGO_DEBUG="0", TELEGRAPHY_SECRET=SECRET)
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY is not set" in refused.stderr, refused.stderr
    no_secret = run_demo("check", tmp_path=tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" + "ey-" * 20 + "x")
    assert no_secret.returncode != 0 and "telegraphy.E001" in no_secret.stderr, no_secret.stderr
    assert not (tmp_path / ".telegraphy-secret").exists(), "no made-up secret without DEBUG"

    one, two = (run_demo("shell", "-c", SHOW_KEYS, tmp_path=tmp_path) for _ in range(2))
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    (key1, secret1), (key2, secret2) = one.stdout.split()[-2:], two.stdout.split()[-2:]
    assert key1.startswith("local-debug-only-") and key1 != key2, "a key per process, marked for local use"
    assert secret1 == secret2 == (tmp_path / ".telegraphy-secret").read_text().strip()
    from telegraphy.tokens import secret_weakness

    assert secret_weakness(secret1) is None
    given = run_demo("shell", "-c", SHOW_KEYS, tmp_path=tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="from-env-" + "k" * 40,
                     TELEGRAPHY_SECRET=SECRET)
    assert given.stdout.split()[-2:] == ["from-env-" + "k" * 40, SECRET], given.stderr


class Browser:
    """A cookie-keeping HTTP client that signs in and submits forms with their CSRF token (no JS)."""

    def __init__(self, base: str):
        import http.cookiejar
        import urllib.request

        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def sign_in(self, user: str) -> "Browser":
        self.post_form("/accounts/login/", {"username": user, "password": user})
        assert any(c.name == "sessionid" for c in self.jar), f"{user} is not signed in"
        return self

    def cookies(self) -> list[dict]:
        """The session, for a real browser (CDP Storage.setCookies)."""
        return [{"name": c.name, "value": c.value, "domain": c.domain, "path": c.path} for c in self.jar]

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post_form(self, path: str, fields: dict) -> str:
        import re
        import urllib.parse

        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(path)).group(1)
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": csrf}).encode()
        with self.opener.open(self.base + path, data=body, timeout=10) as response:
            return response.read().decode()


def json_script(html: str, element_id: str):
    import re

    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no #{element_id} in:\n{html[:2000]}"
    return json.loads(match.group(1))


@pytest.fixture(scope="session")
def migrated_demo_db(tmp_path_factory):
    """A migrated demo database (the demo users and two items), copied by each test that changes one."""
    path = tmp_path_factory.mktemp("demo-db") / "demo.sqlite3"
    migrate = run_demo("migrate", "-v", "0", tmp_path=path.parent)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return path


@pytest.fixture
def demo_site(gateway, nats_server, tmp_path, migrated_demo_db):
    """The demo under runserver with a fresh copy of the migrated database, wired to the test's nats-server
    and gateway (same secret)."""
    db = tmp_path / "demo.sqlite3"
    shutil.copyfile(migrated_demo_db, db)
    env = {
        **os.environ,
        "DEMO_DB": str(db),
        "TELEGRAPHY_NATS_URL": nats_server.url,
        "TELEGRAPHY_GATEWAY_URL": gateway["ws"],
        "TELEGRAPHY_SECRET": SECRET,
        "PYTHONPATH": str(REPO / "python"),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "demo-tests-" + "k" * 40,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    port = free_port()
    web = Process([sys.executable, str(DEMO / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"], env=env)
    try:
        web.wait_for(r"Quit the server with", timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()


def test_demo_live_through_the_gateway(demo_site, gateway):
    """alice's tracker page hands out a token that lets her follow her own items: creating one through the
    demo's form reaches a WebSocket client holding that token; the staff-wide pattern is refused to her."""
    alice = Browser(demo_site)
    alice.post_form("/accounts/login/", {"username": "alice", "password": "alice"})
    html = alice.get("/")
    config, page = json_script(html, "telegraphy-config"), json_script(html, "page-config")
    assert config["url"] == gateway["ws"] and config["token"], config
    client = WsClient(config["url"], config["token"])
    try:
        assert client.connected["type"] == "connected", client.connected
        assert client.subscribe("demo.item.>", id=2)["code"] == "forbidden"
        assert client.subscribe(page["pattern"], id=3)["type"] == "subscribed"
        alice.post_form("/items/new/", {"name": "Kettle", "description": "", "price": "20.00"})
        frame = client.recv()
        assert frame["type"] == "event" and frame["sub"] == page["pattern"]
        assert frame["name"].startswith(page["pattern"][:-1]) and frame["name"].split(".")[-2] == "created"
        assert (frame["data"]["name"], frame["data"]["price"], frame["data"]["owner_name"]) == ("Kettle", "20.00", "alice")
        assert f'data-pk="{frame["data"]["pk"]}"' in alice.get("/")
    finally:
        client.close()


def test_demo_tracker_filters_in_the_gateway(demo_site, gateway):
    """The tracker's toggle on the wire: the page's filter (?price__gt=10) subscribed under the page's name
    lets only items over 10 through; subscribing the same name with "only mine" replaces it."""
    admin, alice = Browser(demo_site).sign_in("admin"), Browser(demo_site).sign_in("alice")
    html = admin.get("/?price__gt=10")
    config, page = json_script(html, "telegraphy-config"), json_script(html, "page-config")
    assert (page["pattern"], page["sub"], page["filter"]) == ("demo.item.>", "tracker", {"price__gt": "10"})
    client = WsClient(config["url"], config["token"])
    try:
        assert client.connected["type"] == "connected", client.connected
        reply = client.subscribe(page["pattern"], id=2, sub=page["sub"], filter=page["filter"])
        assert (reply["type"], reply["sub"]) == ("subscribed", "tracker"), reply

        def next_item() -> tuple:
            frame = client.recv()
            assert frame["type"] == "event" and frame["sub"] == "tracker", frame
            return frame["name"].split(".")[-2], frame["data"]["name"], frame["data"]["price"]

        admin.post_form("/items/new/", {"name": "Cheap", "description": "", "price": "5.00"})
        admin.post_form("/items/new/", {"name": "Ten", "description": "", "price": "10.00"})
        alice.post_form("/items/new/", {"name": "Big", "description": "", "price": "10.01"})
        assert next_item() == ("created", "Big", "10.01"), "5.00 and 10.00 are not over 10"
        cheap = next(item for item in json.loads(admin.get("/items/"))["items"] if item["name"] == "Cheap")
        admin.post_form(f"/items/{cheap['pk']}/edit/", {"name": "Cheap", "description": "", "price": "50.00"})
        assert next_item() == ("updated", "Cheap", "50.00"), "an update that passes the filter"
        reply = client.subscribe(page["pattern"], id=3, sub="tracker", filter={"owner": page["user"]})
        assert (reply["type"], reply["sub"]) == ("subscribed", "tracker"), reply
        alice.post_form("/items/new/", {"name": "Alice's vase", "description": "", "price": "80.00"})
        admin.post_form("/items/new/", {"name": "Admin's cup", "description": "", "price": "1.00"})
        assert next_item() == ("created", "Admin's cup", "1.00"), "only mine now, whatever the price"
    finally:
        client.close()


def test_demo_tracker_toggle_in_a_browser(demo_site, gateway):
    """The tracker page in headless Chromium: each toggle re-subscribes under the same name with its filter,
    reloads the matching rows, and from then on shows only the live changes that pass it."""
    admin, alice = Browser(demo_site).sign_in("admin"), Browser(demo_site).sign_in("alice")
    chromium = Chromium()
    try:
        tab = chromium.tab(admin.cookies())
        tab.goto(demo_site + "/")
        names = "[...document.querySelectorAll('#tracker li[data-pk] .name')].map((a) => a.textContent)"

        def live(filter: dict) -> list[str]:
            text = json.dumps(json.dumps(filter, separators=(",", ":")))
            tab.wait(f"document.querySelector('#tracker[data-state=live]')?.dataset.filter === {text}", f"live {text}")
            return tab.js(names)

        def shows(name: str) -> None:
            tab.wait(f"{names}.includes({json.dumps(name)})", f"the row {name}")

        assert live({}) == ["Teapot", "Alice's notebook"]
        me = tab.js("JSON.parse(document.getElementById('page-config').textContent).user")

        tab.js("document.getElementById('filter-over-value').value = '10'; document.getElementById('filter-over').click()")
        assert live({"price__gt": "10"}) == ["Teapot"], "12.50 is over 10, 3.20 is not"
        assert tab.js("location.search") == "?price__gt=10"
        admin.post_form("/items/new/", {"name": "Cheapo", "description": "", "price": "2.00"})
        admin.post_form("/items/new/", {"name": "Pricey", "description": "", "price": "20.00"})
        shows("Pricey")
        assert "Cheapo" not in tab.js(names), "Cheapo's event came first and was filtered out by the gateway"

        tab.js("document.getElementById('filter-mine').click()")
        assert live({"owner": me}) == ["Teapot", "Cheapo", "Pricey"]
        alice.post_form("/items/new/", {"name": "Lamp", "description": "", "price": "99.00"})
        admin.post_form("/items/new/", {"name": "Pen", "description": "", "price": "1.00"})
        shows("Pen")
        assert "Lamp" not in tab.js(names), "alice's item is not mine"

        tab.js("document.getElementById('filter-all').click()")
        assert live({}) == ["Teapot", "Alice's notebook", "Cheapo", "Pricey", "Lamp", "Pen"]
        assert tab.js("location.search") == ""
        assert tab.problems() == []
    finally:
        chromium.close()


def test_demo_chat_send_through_a_real_worker(nats_server, tmp_path, migrated_demo_db):
    """The demo's ``chat.send`` (examples/demo/demo/rpc.py) served by ``manage.py telegraphy_worker`` on a real
    nats-server: this test plays the gateway (PROTOCOL.md section 14: the request on ``telegraphy_rpc.chat.send``
    with the sender in the ``Telegraphy-*`` headers). The handler saves the message and publishes it on
    ``telegraphy.demo.chat.lobby.message``; a refused one is an error envelope, nothing saved, nothing sent."""
    import base64

    from .helpers import NatsClient, next_message

    db = tmp_path / "demo.sqlite3"
    shutil.copyfile(migrated_demo_db, db)
    env = {"DEMO_DB": str(db), "TELEGRAPHY_SECRET": SECRET, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "demo-tests-" + "k" * 40}

    def shell(code: str) -> str:
        result = run_demo("shell", "-c", code, tmp_path=tmp_path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip().splitlines()[-1]  # after what Django 5.2's shell says it imported

    alice = shell("from django.contrib.auth.models import User; print(User.objects.get(username='alice').pk)")
    worker_env = {**os.environ, **env, "TELEGRAPHY_NATS_URL": nats_server.url, "PYTHONPATH": str(REPO / "python")}
    worker_env.pop("DJANGO_SETTINGS_MODULE", None)
    worker = Process([sys.executable, str(DEMO / "manage.py"), "telegraphy_worker", "--drain-timeout", "5"], env=worker_env)
    client = NatsClient(nats_server.url)
    try:
        worker.wait_for(r"telegraphy worker ready", timeout=60)
        published = client.subscribe("telegraphy.demo.chat.lobby.message")
        headers = {"Telegraphy-User": base64.urlsafe_b64encode(alice.encode()).decode().rstrip("="),
                   "Telegraphy-Client": "zeWRwZWB0FcDVYYQ", "Telegraphy-Session": "s-demo", "Telegraphy-Node": "gw-test"}

        def call(data: object) -> dict:
            reply = client.run(client.nc.request("telegraphy_rpc.chat.send", json.dumps(data).encode(), timeout=10,
                                                 headers=headers), timeout=15)
            return json.loads(reply.data)

        reply = call({"room": "lobby", "text": "  hello from the worker "})
        assert set(reply) == {"data"}, reply
        event = json.loads(next_message(published, timeout=10).data)
        assert event["id"] == reply["data"]["id"]
        assert (event["user"], event["text"]) == ("alice", "hello from the worker"), event
        saved = shell("from demo.models import Message; print([(m.pk, m.room, m.author.username, m.text) "
                      "for m in Message.objects.all()])")
        assert saved == repr([(reply["data"]["id"], "lobby", "alice", "hello from the worker")])

        assert call({"room": "lobby", "text": "   "}) == {"error": {"code": "empty", "message": "say something"}}
        assert call({"room": "a.b", "text": "hi"})["error"]["code"] == "bad_room"
        assert call({"room": "lobby", "text": "x" * 501})["error"]["code"] == "too_long"
        # an anonymous sender (no Telegraphy-User) is refused by the method's allow before the handler runs
        del headers["Telegraphy-User"]
        assert call({"room": "lobby", "text": "hi"})["error"]["code"] == "forbidden"
        headers["Telegraphy-User"] = base64.urlsafe_b64encode(alice.encode()).decode().rstrip("=")
        second = call({"room": "lobby", "text": "second"})["data"]["id"]
        # the worker's events leave in order: the next one on the subject is this, none came from the refusals
        assert json.loads(next_message(published, timeout=10).data)["id"] == second
        assert shell("from demo.models import Message; print(Message.objects.count())") == "2"
    finally:
        client.close()
        worker.stop()
