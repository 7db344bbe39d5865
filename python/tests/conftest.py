from __future__ import annotations

import pytest

from telegraphy.publisher import reset_publisher

from .helpers import NatsClient, NatsServer


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
def _fresh_publisher():
    """Each test gets its own publisher (no buffered events or counters leak between tests)."""
    reset_publisher()
    yield
    reset_publisher()
