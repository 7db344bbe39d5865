// The Django demo site (examples/demo, owned by the Django side) run as a user would: migrate, then
// runserver; its gateway through `manage.py run_telegraph`; its RPC worker through `manage.py
// telegraphy_worker` (demo.startWorker()). Settings come from the environment
// variables its settings.py documents.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { start, within, freePort, Gateway } from "./stack.mjs";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const PYTHON = process.env.TELEGRAPHY_PYTHON || join(REPO, ".tools/venv/bin/python");
export const MANAGE = join(REPO, "examples/demo/manage.py");

function requireDemo() {
  if (!existsSync(PYTHON)) throw new Error(`python not found at ${PYTHON}: run scripts/bootstrap or set TELEGRAPHY_PYTHON`);
  if (!existsSync(MANAGE)) throw new Error(`the Django demo is missing: ${MANAGE}`);
}

/** Django settings of the demo for a given NATS server and secret. */
export function demoEnv(nats, secret, extra = {}) {
  return {
    TELEGRAPHY_NATS_URL: nats.url,
    TELEGRAPHY_SECRET: secret,
    DJANGO_DEBUG: "1",
    PYTHONUNBUFFERED: "1",
    ...extra,
  };
}

/**
 * The gateway as the demo runs it: `manage.py run_telegraph` (execs the binary with mapped settings);
 * `gatewayEnv`: more gateway settings (TELEGRAPHY_* variables, which reach the binary unchanged).
 */
export function startDemoGateway(nats, secret, gatewayEnv = {}) {
  requireDemo();
  return Gateway.start(nats, {
    command: [PYTHON, MANAGE, "run_telegraph"],
    bindEnv: ["TELEGRAPHY_GATEWAY_BIND"],
    env: demoEnv(nats, secret, gatewayEnv),
  });
}

export class DjangoDemo {
  static async start({ nats, secret, gatewayUrl }) {
    requireDemo();
    const demo = new DjangoDemo();
    demo.dir = mkdtempSync(join(tmpdir(), "tg-js-demo-"));
    const env = { ...process.env, ...demoEnv(nats, secret, { TELEGRAPHY_GATEWAY_URL: gatewayUrl, DEMO_DB: join(demo.dir, "db.sqlite3") }) };
    demo.env = env;
    await new Promise((resolve, reject) =>
      execFile(PYTHON, [MANAGE, "migrate", "--noinput"], { env, timeout: 120000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`demo migrate failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(),
      ),
    );
    const port = await freePort();
    demo.url = `http://127.0.0.1:${port}`;
    demo.proc = start(PYTHON, [MANAGE, "runserver", `127.0.0.1:${port}`, "--noreload"], env, /Quit the server with/, "Django runserver", 60000);
    await demo.proc.result;
    await within(15000, demo.#ready(), "the demo's login page");
    return demo;
  }

  async #ready() {
    for (;;) {
      try {
        if ((await fetch(`${this.url}/accounts/login/`)).status === 200) return;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop() {
    if (this.proc) {
      this.proc.child.kill("SIGTERM");
      await within(15000, this.proc.exited, "Django to exit").catch(() => this.proc.child.kill("SIGKILL"));
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  output() {
    return this.proc ? this.proc.output() : "";
  }

  /**
   * `manage.py telegraphy_worker` on the demo's database and NATS (serves demo/rpc.py's "chat.send"), ready
   * once it subscribed. stop() drains it with SIGTERM (SIGKILL after 15 s); a test process that dies kills it
   * too (stack.mjs kills its children on exit).
   */
  async startWorker() {
    requireDemo();
    const proc = start(PYTHON, [MANAGE, "telegraphy_worker", "--drain-timeout", "5"], this.env, /telegraphy worker ready/, "telegraphy_worker", 60000);
    await proc.result;
    let stopped;
    return {
      output: () => proc.output(),
      stop: () =>
        (stopped ??= (async () => {
          proc.child.kill("SIGTERM");
          const { code } = await within(15000, proc.exited, "telegraphy_worker to drain").catch(() => {
            proc.child.kill("SIGKILL");
            return { code: null };
          });
          return code;
        })()),
    };
  }
}
