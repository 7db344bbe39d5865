"""``manage.py telegraphy_worker`` (PROTOCOL.md sections 14 and 15) as real subprocesses on a real nats-server.
Each test plays the gateway's documented role with a raw nats-py request: subject ``<prefix>_rpc.<method>``,
the sender in the ``Telegraphy-*`` headers, the client's data as the payload, a reply envelope back."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from .helpers import NatsClient, Process, load_vectors, next_message

PYTHON_DIR = Path(__file__).resolve().parents[1]
RPC = load_vectors("rpc.json")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def django_env(db: Path, prefix: str, nats_url: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.rpc_settings", "PYTHONPATH": str(PYTHON_DIR),
            "TEST_TELEGRAPHY_DB": str(db), "TEST_TELEGRAPHY_PREFIX": prefix, "TEST_TELEGRAPHY_NATS_URL": nats_url}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A database file shared with the workers: alice (pk 1), staff bob (pk 2), inactive carol (pk 3)."""
    db = tmp_path_factory.mktemp("rpc-db") / "db.sqlite3"
    env = django_env(db, "unused", "nats://127.0.0.1:1")
    run = lambda *argv: subprocess.run([sys.executable, "-m", "django", *argv], env=env, check=True,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    run("migrate", "--run-syncdb", "-v", "0")
    run("shell", "-c", "from django.contrib.auth.models import User\n"
                       "User.objects.create_user('alice', first_name='Alice')\n"
                       "User.objects.create_user('bob', is_staff=True)\n"
                       "User.objects.create_user('carol', is_active=False)")
    return db


class Gateway:
    """Plays the gateway's side of section 14 for one subject prefix."""

    def __init__(self, client: NatsClient, prefix: str):
        self.client, self.prefix = client, prefix

    def headers(self, sub: str | None, session: str = "s-test", client: str = "zeWRwZWB0FcDVYYQ",
                info: dict | None = None) -> dict[str, str]:
        headers = {"Telegraphy-Client": client, "Telegraphy-Session": session, "Telegraphy-Node": "gw-test"}
        if sub:
            headers["Telegraphy-User"] = b64(sub)
        if info is not None:
            headers["Telegraphy-Info"] = b64(json.dumps(info, separators=(",", ":")))
        return headers

    async def arequest(self, method: str, data: object = None, sub: str | None = "1", timeout: float = 10.0,
                       **sender: object) -> dict:
        msg = await self.client.nc.request(f"{self.prefix}_rpc.{method}", json.dumps(data).encode(),
                                           timeout=timeout, headers=self.headers(sub, **sender))
        return json.loads(msg.data)

    def request(self, method: str, data: object = None, sub: str | None = "1", timeout: float = 10.0,
                **sender: object) -> dict:
        return self.client.run(self.arequest(method, data, sub, timeout, **sender), timeout + 5)

    def start(self, method: str, data: object = None, sub: str | None = "1", timeout: float = 20.0):
        """A request in flight: a concurrent.futures.Future of its reply."""
        return asyncio.run_coroutine_threadsafe(self.arequest(method, data, sub, timeout), self.client.loop)


@pytest.fixture
def setup(nats_server, nats_client, database):
    """(gateway role, start_worker) on a prefix of the test's own; workers stop at the end."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    workers: list[Process] = []

    def start_worker(*args: str) -> Process:
        proc = Process([sys.executable, "-m", "django", "telegraphy_worker", *args],
                       env=django_env(database, prefix, nats_server.url))
        workers.append(proc)
        proc.wait_for(r"telegraphy worker ready", timeout=60)
        return proc

    yield Gateway(nats_client, prefix), start_worker
    for proc in workers:
        proc.stop()


def test_a_request_gets_the_answer_with_the_sender_from_the_headers(setup):
    gw, start_worker = setup
    start_worker()
    reply = gw.request("test.echo", {"text": "hi"}, sub="1", session="s-abc", info={"name": "Zoë"})
    data = reply["data"]
    assert set(reply) == {"data"}
    assert data["data"] == {"text": "hi"}
    assert (data["sub"], data["user"], data["authenticated"]) == ("1", "alice", True)
    assert (data["client"], data["session"], data["info"], data["node"]) == (
        "zeWRwZWB0FcDVYYQ", "s-abc", {"name": "Zoë"}, "gw-test")
    anonymous = gw.request("test.echo", None, sub=None)["data"]
    assert (anonymous["sub"], anonymous["authenticated"], anonymous["data"]) == ("", False, None)


def test_the_vector_headers_decode_to_the_vector_sender(setup):
    """rpc.json's sender headers (a non-ASCII sub and info) reach the handler as the sender they encode."""
    gw, start_worker = setup
    start_worker()
    sender = RPC["sender"]
    msg = gw.client.run(gw.client.nc.request(f"{gw.prefix}_rpc.test.echo", b"null", timeout=10,
                                             headers=sender["headers"]))
    data = json.loads(msg.data)["data"]
    assert (data["sub"], data["client"], data["session"], data["info"], data["node"]) == (
        sender["sub"], sender["client"], sender["session"], sender["info"], RPC["node"])
    assert data["authenticated"] is False  # "zoë" is no user's pk here: AnonymousUser, not an error


def test_handler_errors_reach_the_client_as_their_code_and_crashes_as_internal(setup):
    gw, start_worker = setup
    worker = start_worker()
    assert gw.request("test.fail") == {"error": {"code": "not_found", "message": "no such room"}}
    crashed = gw.request("test.crash")
    assert crashed == {"error": {"code": "internal", "message": "internal error"}}
    assert "hunter2" not in json.dumps(crashed)
    worker.wait_for(r"rpc test.crash raised", timeout=10)  # the worker's log says which handler failed


def test_replies_the_gateway_would_refuse_are_answered_internal_by_the_worker(setup):
    """A reply over the gateway's rpc.max_reply_bytes default, or a value JSON cannot hold: the client gets a
    clear `internal` at once (not a gateway-side `bad rpc reply`), and the worker's log says why."""
    gw, start_worker = setup
    worker = start_worker()
    assert gw.request("test.big") == {"error": {"code": "internal", "message": "rpc reply too large"}}
    worker.wait_for(r"rpc test.big reply is 7\d{4} bytes, over 65536", timeout=10)
    assert gw.request("test.unencodable") == {"error": {"code": "internal", "message": "internal error"}}
    worker.wait_for(r"rpc test.unencodable returned a value that is not JSON", timeout=10)


def test_the_worker_refuses_a_method_nobody_registered(nats_server, database):
    done = subprocess.run([sys.executable, "-m", "django", "telegraphy_worker", "--method", "test.nope"],
                          env=django_env(database, "unused", nats_server.url), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "no handler registered for test.nope" in done.stderr


def test_the_worker_checks_the_permission_again_with_the_current_user(setup):
    gw, start_worker = setup
    start_worker()
    assert gw.request("test.staff", sub="2") == {"data": "staff"}
    forbidden = {"error": {"code": "forbidden", "message": "rpc not allowed"}}
    assert gw.request("test.staff", sub="1") == forbidden  # alice is not staff
    assert gw.request("test.rename", {"first_name": "x"}, sub=None) == forbidden  # default: authenticated only
    assert gw.request("test.rename", {"first_name": "x"}, sub="3") == forbidden  # carol is inactive
    assert gw.request("test.rename", {"first_name": "x"}, sub="999") == forbidden  # no such user


def test_a_sync_handler_uses_the_orm(setup, database):
    gw, start_worker = setup
    start_worker()
    assert gw.request("test.rename", {"first_name": "Alicia"}, sub="1") == {"data": {"username": "alice", "users": 3}}
    with sqlite3.connect(database) as db:
        assert db.execute("select first_name from auth_user where username = 'alice'").fetchone() == ("Alicia",)


def test_a_method_nobody_serves_has_no_responders(setup):
    """The gateway answers `unavailable` on NATS "no responders": a worker subscribes per method, so an
    unknown method gets that at once instead of a timeout."""
    gw, start_worker = setup
    start_worker()
    with pytest.raises(NoRespondersError):
        gw.request("test.nothing", timeout=5)
    with pytest.raises(NoRespondersError):  # a subscription per method: no wildcard catches a longer name
        gw.client.run(gw.client.nc.request(f"{gw.prefix}_rpc.test.echo.more", b"null", timeout=5))


def test_only_the_given_methods_are_served(setup):
    gw, start_worker = setup
    start_worker("--method", "test.echo", "--no-lifecycle")
    assert gw.request("test.echo", 1)["data"]["data"] == 1
    with pytest.raises(NoRespondersError):
        gw.request("test.fail", timeout=5)


def test_requests_go_on_when_one_worker_of_the_queue_group_is_killed(setup):
    gw, start_worker = setup
    first, second = start_worker(), start_worker()
    pids = {first.proc.pid: first, second.proc.pid: second}
    seen = set()
    for _ in range(100):
        seen.add(gw.request("test.echo", sub=None)["data"]["pid"])
        if seen == set(pids):
            break
    assert seen == set(pids), "the queue group shares the requests between both workers"

    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    answered = None
    for _ in range(20):  # until the server has noticed the dead connection (a request sent to it is lost)
        try:
            answered = gw.request("test.echo", sub=None, timeout=2)["data"]["pid"]
            break
        except NatsTimeout:
            continue
    assert answered == second.proc.pid
    assert {gw.request("test.echo", sub=None, timeout=5)["data"]["pid"] for _ in range(10)} == {second.proc.pid}


def test_sigterm_drains_the_request_in_flight_then_exits(setup):
    gw, start_worker = setup
    worker = start_worker()
    pending = gw.start("test.slow", {"seconds": 1.5, "tag": "in-flight"})
    worker.wait_for(r"slow started in-flight", timeout=20)
    os.killpg(worker.proc.pid, signal.SIGTERM)
    worker.wait_for(r"telegraphy worker unsubscribed: 1 requests in flight", timeout=10)
    with pytest.raises(NoRespondersError):  # drained: new requests go elsewhere (here: nowhere)
        gw.request("test.echo", sub=None, timeout=5)
    assert pending.result(20)["data"]["tag"] == "in-flight"
    assert worker.proc.wait(20) == 0
    worker.wait_for(r"telegraphy worker stopped", timeout=5)


def test_concurrency_is_bounded(setup):
    gw, start_worker = setup
    start_worker("--concurrency", "2")
    pending = [gw.start("test.slow", {"seconds": 0.4, "tag": str(i)}, timeout=60) for i in range(6)]
    replies = [p.result(70)["data"] for p in pending]
    assert sorted(r["tag"] for r in replies) == [str(i) for i in range(6)]  # every request answered
    assert max(r["peak"] for r in replies) == 2  # two at once, never more


def test_a_disconnect_lifecycle_message_reaches_on_disconnect(setup):
    gw, start_worker = setup
    start_worker()
    received = gw.client.subscribe(f"{gw.prefix}.test.lifecycle.disconnect")
    vector = next(v for v in RPC["lifecycle"] if v["kind"] == "disconnect")
    payload = {**json.loads(vector["payload"]), "user": "1"}
    gw.client.run(gw.client.nc.publish(f"{gw.prefix}_lifecycle.disconnect", json.dumps(payload).encode()))
    seen = json.loads(next_message(received, timeout=20).data)
    assert seen == {"user": "alice", "code": 1000, "client": payload["client"], "session": payload["session"]}


def test_a_worker_with_nothing_to_serve_says_so(nats_server, database):
    env = django_env(database, "unused", nats_server.url)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"  # no rpcapp: no handler
    done = subprocess.run([sys.executable, "-m", "django", "telegraphy_worker"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "nothing to serve" in done.stderr


def test_a_worker_waits_for_nats_and_stops_on_sigterm_meanwhile(database):
    """NATS unreachable at start: the worker logs it and keeps trying; SIGTERM still ends it (exit 0)."""
    worker = Process([sys.executable, "-m", "django", "telegraphy_worker"],
                     env=django_env(database, "unused", "nats://127.0.0.1:1"))
    try:
        worker.wait_for(r"NATS connection error", timeout=60)
        os.killpg(worker.proc.pid, signal.SIGTERM)
        assert worker.proc.wait(20) == 0
        worker.wait_for(r"stopped before NATS was reached", timeout=5)
    finally:
        worker.stop()
