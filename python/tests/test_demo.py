"""The demo project (examples/demo) passes its own checks and tests, in a subprocess (its own settings)."""

import os
import subprocess
import sys

import pytest

from .helpers import REPO, SECRET, Process, WsClient, free_port

DEMO = REPO / "examples" / "demo"


def run_demo(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "TELEGRAPHY_NATS_URL": "nats://127.0.0.1:1",  # NATS down: pages must still work
        "PYTHONPATH": str(REPO / "python"),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
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


class Browser:
    """A cookie-keeping HTTP client that signs in and submits forms with their CSRF token (no JS)."""

    def __init__(self, base: str):
        import http.cookiejar
        import urllib.request

        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

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
    import json
    import re

    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no #{element_id} in:\n{html[:2000]}"
    return json.loads(match.group(1))


@pytest.fixture
def demo_site(gateway, nats_server, tmp_path):
    """The demo under runserver, wired to the test's nats-server and gateway (same secret)."""
    env = {
        **os.environ,
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "TELEGRAPHY_NATS_URL": nats_server.url,
        "TELEGRAPHY_GATEWAY_URL": gateway["ws"],
        "TELEGRAPHY_SECRET": SECRET,
        "PYTHONPATH": str(REPO / "python"),
        "DJANGO_DEBUG": "0",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(DEMO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=120)
    port = free_port()
    web = Process([*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], env=env)
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
