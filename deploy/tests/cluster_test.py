"""End-to-end checks against a running deploy/local-cluster.sh (3 NATS nodes, 3 gateways, optional nginx).

Real parts only: tokens minted by the gateway binary and by the Django app's package (python/telegraphy),
WebSocket clients (websockets), NATS clients (nats-py) logged in as the users of deploy/nats/auth.conf,
kill -9 of a NATS node. Every wait is bounded. Prints one TAP-like line per check and exits 1 when one
failed. Run by deploy/test.sh after `local-cluster.sh start`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
from nats.errors import NoServersError
from websockets.asyncio.client import connect as ws_connect

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
CLUSTER = str(DEPLOY / "local-cluster.sh")
PREFIX = "telegraphy"
PATTERN = "deploytest.>"
STREAM = "TELEGRAPHY"
FORBIDDEN = "deploy-test-forbidden"  # name of the NATS connections that try what their user may not do
DJANGO_USER = "deploy-django"
REVOKED_KEY = "user.ZGVwbG95LXRlc3Q"  # user.<base64url("deploy-test")>: the user of the client on gw-3
ENV: dict[str, str] = {}
PASSWORDS: dict[str, str] = {}  # NATS user -> password (local-cluster.sh's run dir)
results: list[str] = []


class Skip(Exception):
    pass


def report(status: str, name: str, why: str = "") -> None:
    results.append(status)
    print(f"{status} - {name}" + (f": {why}" if why else ""), flush=True)


async def check(name: str, coro) -> bool:
    try:
        await coro
    except Skip as e:
        report("skip", name, str(e))
        return True
    except AssertionError as e:
        report("not ok", name, str(e))
        return False
    except Exception as e:
        report("not ok", name, f"{type(e).__name__}: {e}")
        return False
    report("ok", name)
    return True


def cluster(*args: str, timeout: float = 30) -> str:
    proc = subprocess.run([CLUSTER, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"local-cluster.sh {args[0]}: {proc.stderr.strip()[-400:]}"
    return proc.stdout


def load_env() -> None:
    for line in cluster("env").splitlines():
        key, _, value = line.partition("=")
        ENV[key] = value
    for line in Path(ENV["LOCAL_CLUSTER_NATS_PASSWORDS"]).read_text().splitlines():
        key, _, value = line.partition("=")
        PASSWORDS[key.removeprefix("NATS_").removesuffix("_PASSWORD").lower()] = value


def nats_url(node: int, user: str | None, password: str | None = None) -> str:
    """NATS node `node`'s client URL, logged in as `user` (None: anonymous)."""
    port = ENV[f"NATS_{node}_PORT"]
    if user is None:
        return f"nats://127.0.0.1:{port}"
    return f"nats://{user}:{PASSWORDS[user] if password is None else password}@127.0.0.1:{port}"


class Violations:
    """A nats-py connection's asynchronous errors (the server's "Permissions Violation" answers)."""

    def __init__(self):
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    async def error_cb(self, e: Exception) -> None:
        self.errors.append(str(e))
        self.changed.set()

    async def wait_for(self, fragment: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not any(fragment.lower() in e.lower() for e in self.errors):
            left = deadline - time.monotonic()
            assert left > 0, f"no error mentioning {fragment!r} within {timeout}s (errors: {self.errors})"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


async def nats_as(user: str | None, node: int = 1, password: str | None = None, **options):
    return await nats.connect(servers=[nats_url(node, user, password)], connect_timeout=2,
                              allow_reconnect=False, max_reconnect_attempts=0, **options)


def mint(user: str) -> str:
    token = cluster("token", "--user", user, "--allow", PATTERN, "--ttl", "120", timeout=45).strip()
    assert token.startswith("tg1."), "no token printed"
    return token


def timed_mint(user: str) -> tuple[str, float]:
    start = time.monotonic()
    token = mint(user)
    return token, time.monotonic() - start


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def jsz(node: int) -> dict:
    with urllib.request.urlopen(f"{ENV[f'NATS_{node}_MONITOR']}/jsz?streams=true", timeout=2) as resp:
        return json.load(resp)


def stream_hosts(name: str) -> tuple[str | None, list[str]]:
    """(leader, every replica's server name) of a stream, as the NATS nodes report it."""
    for node in (1, 2, 3):
        try:
            doc = jsz(node)
        except OSError:
            continue
        for account in doc.get("account_details") or []:
            for s in account.get("stream_detail") or []:
                cluster_info = s.get("cluster") or {}
                if s.get("name") == name and cluster_info.get("leader"):
                    peers = [p["name"] for p in cluster_info.get("replicas") or []]
                    return cluster_info["leader"], [cluster_info["leader"], *peers]
    return None, []


def meta_leader() -> str | None:
    """The JetStream meta leader as a surviving node reports it."""
    for node in (1, 2, 3):
        try:
            leader = (jsz(node).get("meta_cluster") or {}).get("leader")
        except OSError:
            continue
        if leader:
            return leader
    return None


class Client:
    """A protocol v1 WebSocket client that keeps the frames it has not consumed yet."""

    def __init__(self, url: str):
        self.url = url
        self.ws = None
        self.next_id = 1

    async def open(self, **connect_frame) -> dict:
        self.ws = await ws_connect(self.url, open_timeout=5, close_timeout=2)
        return await self.request({"type": "connect", **connect_frame}, "connected")

    async def request(self, frame: dict, expect: str) -> dict:
        frame = {**frame, "id": self.next_id}
        self.next_id += 1
        await self.ws.send(json.dumps(frame))
        reply = await self.frame(lambda f: f.get("id") == frame["id"], 5)
        assert reply["type"] == expect, f"{frame['type']} answered {reply}"
        return reply

    async def frame(self, match, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no matching frame within {timeout}s on {self.url}"
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no matching frame within {timeout}s on {self.url}") from None
            f = json.loads(raw)
            if f.get("type") == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            if match(f):
                return f

    async def event(self, name: str, timeout: float = 10) -> dict:
        return await self.frame(lambda f: f.get("type") == "event" and f.get("name") == name, timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def publish(node: int, name: str, data: dict, timeout: float = 15) -> int:
    """JetStream publish of event `name` through NATS node `node` as the django user, retried until
    acknowledged (bounded): the ack means the R3 stream stored it. Returns the stream sequence."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        nc = None
        try:
            nc = await nats_as("django", node)
            ack = await nc.jetstream().publish(f"{PREFIX}.{name}", json.dumps(data).encode(), timeout=2)
            return ack.seq
        except Exception as e:  # no quorum yet, leader election...
            last = e
            await asyncio.sleep(0.2)
        finally:
            if nc is not None:
                await nc.close()
    raise AssertionError(f"publish {name} via nats-{node} not acknowledged within {timeout}s: {last!r}")


async def wait_for(what: str, predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def main() -> int:
    load_env()
    state: dict = {}

    async def token_and_subscribe():
        state["token"] = mint("deploy-test")
        c = state["gw3"] = Client(ENV["GW_3_WS"])
        connected = await c.open(token=state["token"])
        assert connected["node"] == "gw-3", connected
        state["resume"] = connected["resume"]
        sub = await c.request({"type": "subscribe", "event": PATTERN}, "subscribed")
        assert sub["event"] == PATTERN

    async def delivered_across_nodes():
        seq = state["seq1"] = await publish(2, "deploytest.one", {"n": 1})
        ev = state["ev1"] = await state["gw3"].event("deploytest.one")
        assert ev["data"] == {"n": 1} and ev["sub"] == PATTERN, ev
        assert ev.get("seq") == seq and ev.get("epoch"), f"history position {ev.get('epoch')}/{ev.get('seq')}, ack seq {seq}"

    async def presence_across_nodes():
        # Two clients present on one channel via gw-1 and gw-3 (the presence bucket with the gateway user's
        # permissions): the first sees the second join, the snapshot holds both, a close is a leave.
        room = "deploytest.room"
        a, b = Client(ENV["GW_1_WS"]), Client(ENV["GW_3_WS"])
        try:
            await a.open(token=mint("deploy-alice"))
            await a.request({"type": "subscribe", "event": room, "presence": True}, "subscribed")
            await b.open(token=mint("deploy-bob"))
            await b.request({"type": "subscribe", "event": room, "presence": True}, "subscribed")
            joined = await a.frame(lambda f: f.get("type") == "join", 10)
            assert joined["user"] == "deploy-bob", joined
            seen = await b.request({"type": "presence", "event": room}, "presence")
            assert sorted(c["user"] for c in seen["clients"]) == ["deploy-alice", "deploy-bob"], seen
            await b.close()
            left = await a.frame(lambda f: f.get("type") == "leave", 10)
            assert left["user"] == "deploy-bob", left
        finally:
            await a.close()
            await b.close()

    async def through_load_balancer():
        if "LB_WS" not in ENV:
            raise Skip("no load balancer (nginx not installed)")
        c = state["lb"] = Client(ENV["LB_WS"])
        connected = await c.open(token=mint("deploy-test-lb"))
        assert connected["node"] in ("gw-1", "gw-2", "gw-3"), connected
        await c.request({"type": "subscribe", "event": PATTERN}, "subscribed")
        await publish(1, "deploytest.lb", {"via": "nginx"})
        ev = await c.event("deploytest.lb")
        assert ev["data"] == {"via": "nginx"}

    async def no_anonymous_access():
        # Each attempt must fail on authorization (not on anything else, e.g. a closed port).
        for user, password, what in ((None, None, "anonymous"), ("gateway", "0" * 64, "wrong password"),
                                     ("nobody", PASSWORDS["gateway"], "unknown user")):
            seen = Violations()
            try:
                nc = await nats_as(user, 2, password, error_cb=seen.error_cb, name=FORBIDDEN)
            except (NoServersError, nats.errors.Error, OSError, asyncio.TimeoutError) as e:
                seen.errors.append(f"{type(e).__name__}: {e}")
            else:
                await nc.close()
                raise AssertionError(f"{what}: connection accepted")
            await seen.wait_for("authorization violation", 3)
        # The same URL with the right password works (the refusals above were about the credentials).
        nc = await nats_as("gateway", 2)
        await nc.close()

    async def publisher_publishes_only():
        seen = Violations()
        nc = await nats_as("publisher", 3, error_cb=seen.error_cb, name=FORBIDDEN)
        try:
            # Allowed: a core publish of an event; it goes through the stream to the WebSocket client.
            await nc.publish(f"{PREFIX}.deploytest.pub", json.dumps({"by": "publisher"}).encode())
            ev = await state["gw3"].event("deploytest.pub")
            assert ev["data"] == {"by": "publisher"}, ev
            # Refused: reading events, forging revocations / token registrations / live frames, the JetStream API.
            await nc.subscribe(f"{PREFIX}.>")
            await nc.flush(2)
            await seen.wait_for(f'subscription to "{PREFIX}.>"')
            forged = {
                f"$KV.telegraphy_revocations.{REVOKED_KEY}": "revocation",
                "$KV.telegraphy_tokens.0123456789abcdef0123456789abcdef": "token registration",
                f"{PREFIX}_live.deploytest.forged": "live frame",
                f"{PREFIX}_rpc.deploytest.echo": "RPC request (forged sender headers)",
                f"{PREFIX}_lifecycle.connect": "lifecycle event",
                f"$JS.API.STREAM.DELETE.{STREAM}": "stream deletion",
                f"$JS.API.STREAM.INFO.KV_telegraphy_tokens": "KV bucket lookup",
            }
            for subject in forged:
                await nc.publish(subject, b"1")
            await nc.flush(2)
            for subject, what in forged.items():
                await seen.wait_for(f'publish to "{subject}"')
        finally:
            await nc.close()
        await stream_and_revocations_intact()

    async def stream_and_revocations_intact():
        """As admin: the history stream still exists (same epoch) and nobody revoked the test user."""
        nc = await nats_as("admin", 1)
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info(STREAM)
            assert info.state.last_seq >= state["seq1"], f"stream state {info.state}"
            kv = await js.key_value("telegraphy_revocations")
            try:
                entry = await kv.get(REVOKED_KEY)
            except nats.js.errors.KeyNotFoundError:
                entry = None
            assert entry is None, f"revocation {REVOKED_KEY} was written: {entry}"
        finally:
            await nc.close()

    async def gateway_user_cannot_delete():
        seen = Violations()
        nc = await nats_as("gateway", 1, error_cb=seen.error_cb, name=FORBIDDEN)
        try:
            js = nc.jetstream(timeout=2)
            for attempt, subject in ((js.delete_stream, "DELETE"), (js.purge_stream, "PURGE")):
                try:
                    await attempt(STREAM)
                except (nats.errors.Error, asyncio.TimeoutError):
                    pass
                else:
                    raise AssertionError(f"stream {subject.lower()} answered as done")
                await seen.wait_for(f'publish to "$JS.API.STREAM.{subject}.{STREAM}"')
            kv = await js.key_value("telegraphy_revocations")  # allowed: the gateway watches it
            try:
                await kv.put(REVOKED_KEY, b"1")
            except (nats.errors.Error, asyncio.TimeoutError):
                pass
            await seen.wait_for('publish to "$KV.telegraphy_revocations.')
        finally:
            await nc.close()
        await stream_and_revocations_intact()
        assert state["gw3"].ws.close_code is None, f"the client on gw-3 was closed ({state['gw3'].ws.close_code})"

    async def django_role():
        # The Django app's own package as NATS user django: token registration (KV create), a presence read, an
        # acknowledged publish, a revocation (KV put) that the gateways act on.
        os.environ["TELEGRAPHY_NATS_URL"] = ",".join(nats_url(i, "django") for i in (1, 2, 3))
        os.environ["TELEGRAPHY_SECRET"] = Path(ENV["LOCAL_CLUSTER_SECRET_FILE"]).read_text()
        sys.path.insert(0, str(ROOT / "python"))
        from telegraphy import apublish
        from telegraphy.revocations import arevoke_user
        from telegraphy.tokens import amint

        token = await amint(DJANGO_USER, allow=[PATTERN], ttl=120, timeout=10)
        c = state["django"] = Client(ENV["GW_2_WS"])
        connected = await c.open(token=token)
        assert connected["node"] == "gw-2", connected
        await c.request({"type": "subscribe", "event": PATTERN}, "subscribed")
        # Presence read by the package (a short-lived KV watch on the presence bucket).
        await c.request({"type": "subscribe", "event": "deploytest.django-room", "presence": True}, "subscribed")
        from telegraphy import apresence

        present = await apresence("deploytest.django-room", timeout=10)
        assert [p["user"] for p in present["clients"]] == [DJANGO_USER], present
        ack = await apublish("deploytest.django", {"by": "django"}, ack=True, timeout=10)
        ev = await c.event("deploytest.django")
        assert ev["data"] == {"by": "django"} and ev["seq"] == ack.seq, (ev, ack)
        await arevoke_user(DJANGO_USER, timeout=10)
        try:
            await c.frame(lambda f: False, 5)
        except AssertionError:
            raise AssertionError("the revoked user's socket is still open after 5 s") from None
        except Exception:  # websockets' ConnectionClosed once the gateway closed the socket
            pass
        assert c.ws.close_code == 4003, f"closed with {c.ws.close_code}, expected 4003"

    async def client_actions_roles():
        # Client actions (PROTOCOL.md sections 13-14) with the deployment's NATS users: an RPC through gw-1 reaches a
        # worker connected to NATS node 2 as user django (a queue subscription, answering with allow_responses), and
        # a client publish through gw-1 reaches the client on gw-3 with the sender the gateway stamped.
        seen = Violations()
        worker = await nats_as("django", 2, error_cb=seen.error_cb)

        async def answer(msg):
            raw = msg.headers.get("Telegraphy-User", "")
            user = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            await msg.respond(json.dumps({"data": {"user": user, "node": msg.headers.get("Telegraphy-Node"),
                                                   "echo": json.loads(msg.data)}}).encode())

        c = Client(ENV["GW_1_WS"])
        try:
            await worker.subscribe(f"{PREFIX}_rpc.deploytest.echo", queue="telegraphy_workers", cb=answer)
            await worker.flush(2)
            token = cluster("token", "--user", "deploy-actions", "--allow", PATTERN, "--rpc", "deploytest.echo",
                            "--publish", "deploytest.typing", "--ttl", "120", timeout=45).strip()
            await c.open(token=token)
            result = await c.request({"type": "rpc", "method": "deploytest.echo", "data": {"n": 7}}, "rpc_result")
            assert result["data"] == {"user": "deploy-actions", "node": "gw-1", "echo": {"n": 7}}, result
            await c.request({"type": "publish", "event": "deploytest.typing", "data": {"user": "forged"}}, "published")
            ev = await state["gw3"].event("deploytest.typing")
            assert ev["data"] == {"user": "forged"} and ev["from"]["user"] == "deploy-actions", ev
            assert not seen.errors, f"the worker's NATS user was refused: {seen.errors}"
        finally:
            await c.close()
            await worker.close()

    async def catalog_roles():
        # The package (NATS user django) syncs its catalog entries (bucket created, create-only writes); every
        # gateway (NATS user gateway, a read-only watch) lists them in its `events` reply.
        from telegraphy import BaseEvent, catalog
        from telegraphy.events import unregister
        from telegraphy.tokens import amint

        class DeployTestSaid(BaseEvent):
            """Said in a deploy-test room."""

            name = "deploytest.{room}.said"

        try:
            report = await asyncio.to_thread(catalog.sync, owner="deploy-test", generation=1, timeout=15)
        finally:
            unregister(DeployTestSaid)
        assert report.written == ["deploy-test.deploytest.=.said"] and not report.problems, report
        for node in (1, 3):
            c = Client(ENV[f"GW_{node}_WS"])
            try:
                await c.open(token=await amint(DJANGO_USER + "-catalog", allow=[PATTERN], ttl=120, timeout=10))
                deadline = time.monotonic() + 10
                while True:  # the node's watch applies the put within milliseconds
                    reply = await c.request({"type": "events"}, "events")
                    if [e["name"] for e in reply["events"]] == ["deploytest.{room}.said"]:
                        break
                    assert time.monotonic() < deadline, f"gw-{node} never listed the synced entry: {reply}"
                    await asyncio.sleep(0.2)
            finally:
                await c.close()

    async def kill_nats_node():
        tokens_leader, tokens_hosts = stream_hosts("KV_telegraphy_tokens")
        history_leader, history_hosts = stream_hosts("TELEGRAPHY")
        assert len(history_hosts) == 3, f"history stream replicas {history_hosts}"
        # The history stream's leader: the R3 stream must elect another one and keep every event.
        victim = history_leader
        state["tokens_r1_on_victim"] = tokens_hosts == [victim]
        node = int(victim.rsplit("-", 1)[1])
        state["victim"] = node
        os.kill(int(ENV[f"NATS_{node}_PID"]), signal.SIGKILL)
        print(f"# killed nats-{node} (history leader {history_leader}, token bucket on {tokens_hosts})", flush=True)
        # Mint at once, while the streams that lost their leader elect another: the gateway's mint retries
        # until the token bucket answers (auth::MINT_RETRY_FOR). Checked by the last step.
        state["mint_after_kill"] = asyncio.get_running_loop().run_in_executor(None, timed_mint, "deploy-test-after-kill")

    async def gateways_ready_after_kill():
        urls = [ENV[f"GW_{i}_URL"] + "/readyz" for i in (1, 2, 3)]
        took = await wait_for("all gateways ready", lambda: all(http_status(u) == 200 for u in urls), 20)
        survivors = tuple(f"nats-{i}" for i in (1, 2, 3) if i != state["victim"])
        # Settled: the JetStream meta leader (stream API) and the history stream's leader are on survivors.
        # Until then history requests may time out and a `since` answers recovered:false (as specified).
        settled = await wait_for("JetStream meta leader and history stream leader on surviving nodes",
                                 lambda: meta_leader() in survivors and stream_hosts("TELEGRAPHY")[0] in survivors, 20)
        print(f"# gateways ready {took:.1f}s after the kill; JetStream settled after {settled:.1f}s more", flush=True)

    async def delivered_after_kill():
        survivor = next(i for i in (1, 2, 3) if i != state["victim"])
        seq = state["seq2"] = await publish(survivor, "deploytest.two", {"n": 2})
        assert seq > state["seq1"], f"sequence went from {state['seq1']} to {seq}"
        ev = await state["gw3"].event("deploytest.two", timeout=15)
        assert ev["data"] == {"n": 2} and ev["seq"] == seq and ev["epoch"] == state["ev1"]["epoch"], ev
        if "lb" in state:
            await state["lb"].event("deploytest.two", timeout=15)

    async def recovered_on_other_gateway():
        # What a client does after losing its socket: resume (no single-use token needed) on another replica
        # and subscribe with `since` = the last position it saw: it gets what it missed, exactly once.
        c = state["gw1"] = Client(ENV["GW_1_WS"])
        connected = await c.open(resume=state["resume"])
        assert connected["node"] == "gw-1", connected
        since = {"epoch": state["ev1"]["epoch"], "seq": state["ev1"]["seq"]}
        sub = await c.request({"type": "subscribe", "event": PATTERN, "since": since}, "subscribed")
        assert sub.get("recovered") is True, f"subscribed {sub}"
        replayed = await c.event("deploytest.two")
        assert replayed["seq"] == state["seq2"], replayed

    async def new_connection_after_kill():
        # A fresh single-use token needs the token bucket (JetStream KV); it was minted right after the kill.
        try:
            token, took = await state["mint_after_kill"]
            print(f"# token minted {took:.1f}s after the kill", flush=True)
            c = state["gw2"] = Client(ENV["GW_2_WS"])
            connected = await c.open(token=token)
            assert connected["node"] == "gw-2", connected
        except AssertionError as e:
            if state.get("tokens_r1_on_victim"):
                raise Skip(f"known gateway issue: KV bucket telegraphy_tokens has 1 replica, on the killed node ({e})") from None
            raise

    async def no_violations_by_the_product():
        # Every "Permissions Violation" the NATS nodes logged came from this test's deliberate attempts
        # (connection name FORBIDDEN): the gateways and the Django package needed nothing auth.conf refuses.
        violations = []
        for i in (1, 2, 3):
            for line in (Path(ENV["LOCAL_CLUSTER_DIR"]) / f"nats-{i}.log").read_text(errors="replace").splitlines():
                if "Violation" in line and FORBIDDEN not in line:
                    violations.append(f"nats-{i}: {line.strip()[-200:]}")
        assert not violations, "\n".join(violations[:10])

    def survivor() -> int:
        return next(i for i in (1, 2, 3) if i != state["victim"])

    async def admin_can_delete():
        import nats.errors
        import nats.js.errors

        nc = await nats_as("admin", survivor())
        try:
            js = nc.jetstream(timeout=10)
            for stream in (STREAM, "KV_telegraphy_tokens", "KV_telegraphy_revocations"):
                # A stream that lost its leader in the kill answers once its survivors elected another: on a
                # loaded machine that can take longer than one request's timeout. A retry after a timed-out
                # request may find the stream already gone (the first request did delete it).
                timed_out = False
                for _ in range(3):  # bounded: the step itself has 40 s
                    try:
                        assert await js.delete_stream(stream) is True, stream
                        break
                    except nats.errors.TimeoutError:
                        timed_out = True
                    except nats.js.errors.NotFoundError:
                        assert timed_out, f"{stream} was missing before the admin deleted it"
                        break
                else:
                    raise AssertionError(f"{stream}: no answer to 3 delete requests of 10 s")
        finally:
            await nc.close()

    async def django_creates_buckets():
        # Both buckets were just deleted: the Django package (user django) creates them again when it needs them.
        from telegraphy.conf import telegraphy_settings
        from telegraphy.publisher import reset_publisher
        from telegraphy.revocations import arevoke_user
        from telegraphy.tokens import amint

        # A new connection (forgetting the buckets it had looked up), to the surviving nodes only: a first
        # connect attempt on the killed node would fail the mint at once.
        os.environ["TELEGRAPHY_NATS_URL"] = ",".join(nats_url(i, "django") for i in (1, 2, 3) if i != state["victim"])
        telegraphy_settings.reload()
        reset_publisher()
        token = await amint(DJANGO_USER + "-2", allow=[PATTERN], ttl=120, timeout=15)
        assert token.startswith("tg1."), token
        await arevoke_user(DJANGO_USER + "-2", timeout=15)
        nc = await nats_as("admin", survivor())
        try:
            js = nc.jetstream(timeout=5)
            for bucket in ("telegraphy_tokens", "telegraphy_revocations"):
                info = await js.stream_info(f"KV_{bucket}")
                assert info.config.max_msgs_per_subject == 1, f"{bucket}: history {info.config.max_msgs_per_subject}"
        finally:
            await nc.close()

    async def no_secret_in_logs():
        logs = {p.name: p.read_text(errors="replace") for p in Path(ENV["LOCAL_CLUSTER_DIR"]).glob("*.log")}
        secret = Path(ENV["LOCAL_CLUSTER_SECRET_FILE"]).read_text()
        leaked = [(name, what) for name, text in logs.items()
                  for what, value in [("auth.secret", secret), *PASSWORDS.items()] if value in text]
        assert logs and not leaked, f"secrets in logs: {leaked}"

    ok = True
    for name, step in [
        ("mint a token with gw-1's settings, connect to gw-3 and subscribe", token_and_subscribe),
        ("an event published to NATS node 2 reaches the client on gw-3, with its stream seq/epoch", delivered_across_nodes),
        ("presence across gw-1 and gw-3: join, snapshot, leave (presence bucket as NATS user gateway)", presence_across_nodes),
        ("WebSocket through the nginx load balancer (deploy/nginx.conf) receives events", through_load_balancer),
        ("NATS refuses anonymous clients, a wrong password and an unknown user", no_anonymous_access),
        ("NATS user publisher: publishes events, cannot subscribe, write KV, forge live frames or call JetStream", publisher_publishes_only),
        ("NATS user gateway: cannot delete or purge the history stream nor write revocations", gateway_user_cannot_delete),
        ("NATS user django (python/telegraphy): mints a token, reads presence, publishes with ack, revokes the user (4003)", django_role),
        ("client actions: an RPC via gw-1 answered by a worker as NATS user django; a client publish reaches gw-3", client_actions_roles),
        ("catalog: NATS user django syncs its entries, gw-1 and gw-3 (user gateway) list them in `events`", catalog_roles),
        ("kill -9 one NATS node", kill_nats_node),
        ("the 3 gateways are ready (stayed or recovered); JetStream elects leaders on the survivors", gateways_ready_after_kill),
        ("events published after the kill reach the connected clients, same epoch, next seq", delivered_after_kill),
        ("resume on gw-1 with since: recovered, the missed event replayed", recovered_on_other_gateway),
        ("a new token can be minted and used after the kill", new_connection_after_kill),
        ("NATS user admin can delete the history stream and the KV buckets", admin_can_delete),
        ("NATS user django (python/telegraphy) creates the KV buckets when missing", django_creates_buckets),
        ("no permission violation by the gateways or the Django package in the NATS logs", no_violations_by_the_product),
        ("no NATS password and no auth.secret in any log of the run", no_secret_in_logs),
    ]:
        if not ok:
            report("not ok", name, "not run: an earlier step failed")
            continue
        ok = await check(name, asyncio.wait_for(step(), 40))
    for key in ("gw1", "gw2", "gw3", "lb", "django"):
        if key in state:
            try:
                await asyncio.wait_for(state[key].close(), 3)
            except Exception:
                pass
    if "telegraphy.publisher" in sys.modules:  # the Django package's NATS connection (its own thread)
        sys.modules["telegraphy.publisher"].reset_publisher()
    return 1 if "not ok" in results else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
