"""RPC end to end (PROTOCOL.md section 14): a browser-side WebSocket client, the real gateway binary, NATS and
``manage.py telegraphy_worker`` subprocesses. The gateway stamps the sender from the token (never from the
frame) and maps the worker's envelopes to ``rpc_result``/``error``; no worker is ``unavailable``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from .helpers import GATEWAY_BIN, SECRET, Process, WsClient, free_port, wait_ready
from .test_rpc_worker import database, django_env  # noqa: F401  (the module's database fixture)


@pytest.fixture
def stack(nats_server, database):  # noqa: F811
    """(gateway base URL, mint(user, rpc patterns), start_worker) on a subject prefix of the test's own."""
    if not os.access(GATEWAY_BIN, os.X_OK):
        pytest.fail(f"gateway binary not found at {GATEWAY_BIN}: cargo build --bin telegraphy-gateway")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {**os.environ, "TELEGRAPHY_NATS__URL": nats_server.url, "TELEGRAPHY_AUTH__SECRET": SECRET,
           "TELEGRAPHY_HTTP__BIND": f"127.0.0.1:{port}", "TELEGRAPHY_NATS__SUBJECT_PREFIX": prefix,
           "TELEGRAPHY_NODE__NAME": "gw-py", "TELEGRAPHY_HISTORY__ENABLED": "false",
           "TELEGRAPHY_PRESENCE__ENABLED": "false", "TELEGRAPHY_LOG__LEVEL": "warn"}
    gateway = Process([GATEWAY_BIN], env=env)
    processes = [gateway]

    def mint(user: str, *rpc: str) -> str:
        argv = [GATEWAY_BIN, "token", "--user", user, "--allow", "test.>"]
        for pattern in rpc:
            argv += ["--rpc", pattern]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    def start_worker(*args: str) -> Process:
        proc = Process([sys.executable, "-m", "django", "telegraphy_worker", *args],
                       env=django_env(database, prefix, nats_server.url))
        processes.append(proc)
        proc.wait_for(r"telegraphy worker ready", timeout=60)
        return proc

    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield f"ws://127.0.0.1:{port}/ws", mint, start_worker
    finally:
        for proc in processes:
            proc.stop()


def rpc(client: WsClient, id: int, method: str, data: object = None) -> dict:
    client.send({"type": "rpc", "id": id, "method": method, "data": data})
    return client.recv(timeout=15)


def test_a_browser_rpc_reaches_the_django_handler_with_the_user_from_the_token(stack):
    ws, mint, start_worker = stack
    start_worker()
    alice = WsClient(ws, mint("1", "test.*"))
    assert alice.connected["type"] == "connected", alice.connected
    data = {"text": "hi", "user": "2", "sub": "2"}  # the client's claims about itself are only data
    answer = rpc(alice, 7, "test.echo", data)
    assert (answer["type"], answer["id"]) == ("rpc_result", 7), answer
    got = answer["data"]
    assert got["data"] == data
    assert (got["sub"], got["user"], got["authenticated"]) == ("1", "alice", True)
    assert (got["client"], got["session"], got["node"]) == (
        alice.connected["client"], alice.connected["session"], "gw-py")
    alice.close()


def test_handler_errors_permission_and_no_worker_reach_the_client_as_codes(stack):
    ws, mint, start_worker = stack
    start_worker("--method", "test.echo", "--method", "test.fail", "--method", "test.crash",
                 "--method", "test.staff", "--no-lifecycle")
    alice = WsClient(ws, mint("1", "test.*"))
    assert rpc(alice, 1, "test.fail") == {"type": "error", "id": 1, "code": "not_found", "message": "no such room"}
    crashed = rpc(alice, 2, "test.crash")
    assert (crashed["code"], crashed["message"]) == ("internal", "internal error")
    assert "hunter2" not in str(crashed)
    # The worker re-checks the permission with the current user: alice is not staff.
    assert rpc(alice, 3, "test.staff") == {"type": "error", "id": 3, "code": "forbidden", "message": "rpc not allowed"}
    bob = WsClient(ws, mint("2", "test.*"))
    assert rpc(bob, 4, "test.staff") == {"type": "rpc_result", "id": 4, "data": "staff"}
    # A method no worker serves: unavailable at once; one outside the token's grant: forbidden by the gateway.
    assert rpc(alice, 5, "test.rename")["code"] == "unavailable"
    assert rpc(alice, 6, "other.echo") == {"type": "error", "id": 6, "code": "forbidden",
                                           "message": "rpc not allowed"}
    alice.close()
    bob.close()
