from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from telegraphy.publisher import reset_publisher

from .helpers import GATEWAY_BIN, NatsClient, NatsServer, Process, wait_ready


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats-store")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(settings, tmp_path):
    """A nats-server of the test's own (no streams left by other tests or a gateway), TELEGRAPHY pointed at it."""
    server = NatsServer(tmp_path / "nats-store").start()
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "NATS_URL": server.url}
    client = NatsClient(server.url)
    yield server, client
    client.close()
    reset_publisher()
    server.stop()


@pytest.fixture
def nats_settings(settings, nats_server):
    """Point TELEGRAPHY at the session's nats-server (the publisher is recreated for it)."""
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "NATS_URL": nats_server.url}
    yield settings.TELEGRAPHY
    reset_publisher()


@pytest.fixture
def nats_client(nats_server):
    client = NatsClient(nats_server.url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _empty_rate_limits():
    """TOKEN_RATE_LIMIT counts in the default (local-memory) cache, and user pks repeat between tests."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_publisher():
    """Each test gets its own publisher (no buffered events or counters leak between tests)."""
    reset_publisher()
    yield
    reset_publisher()


@pytest.fixture(scope="session")
def gateway(nats_server):
    if not os.access(GATEWAY_BIN, os.X_OK):
        pytest.fail(
            f"gateway binary not found at {GATEWAY_BIN}: build it with `cargo build --bin telegraphy-gateway` "
            "or set TELEGRAPHY_GATEWAY_BIN"
        )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "TELEGRAPHY_GATEWAY_BIN": GATEWAY_BIN,
        "TEST_TELEGRAPHY_NATS_URL": nats_server.url,
        "TEST_TELEGRAPHY_GATEWAY_BIND": "127.0.0.1:0",
    }
    proc = Process([sys.executable, "-m", "django", "run_telegraph"], env=env)
    try:
        addr = proc.wait_for(r"listening on http://(\S+)", timeout=20).group(1)
        wait_ready(f"http://{addr}")
        yield {"ws": f"ws://{addr}/ws", "http": f"http://{addr}"}
    finally:
        proc.stop()
