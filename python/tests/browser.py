"""Headless Chromium driven over the DevTools protocol (CDP) with the websockets package: enough to open pages
with a session cookie, run JavaScript in them and await conditions, for the demo's browser test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

from .helpers import Process

CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN") or "/usr/bin/chromium"

# Resolves once `test()` (an expression) is truthy, checked at every DOM change; rejects after `ms`.
WAIT_JS = """(test, what, ms) => new Promise((resolve, reject) => {
  const check = () => { try { const v = test(); if (v) { observer.disconnect(); clearTimeout(timer); resolve(v); } }
                        catch (e) { observer.disconnect(); clearTimeout(timer); reject(e); } };
  const observer = new MutationObserver(check);
  const timer = setTimeout(() => { observer.disconnect(); reject(new Error(`not within ${ms} ms: ${what}`)); }, ms);
  observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  check();
})"""


class Chromium:
    def __init__(self) -> None:
        if not os.access(CHROMIUM_BIN, os.X_OK):
            raise AssertionError(f"chromium not found at {CHROMIUM_BIN} (Debian package chromium; or set CHROMIUM_BIN)")
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="tg-chromium-")
        self.proc = Process([
            CHROMIUM_BIN, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank",
        ])  # fmt: skip
        url = self.proc.wait_for(r"DevTools listening on (ws://\S+)", timeout=30).group(1)
        self.ws = connect(url, open_timeout=10, max_size=None).__enter__()  # plain connection, as WsClient
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, timeout: float = 15.0, **params: Any) -> dict:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.001)))
            if reply.get("id") != self.next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise AssertionError(f"{method}: {reply['error']}")
            return reply["result"]

    def wait_event(self, method: str, session: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.001))))

    def tab(self, cookies: list[dict]) -> "Tab":
        """A page in a browser context of its own (own cookie jar) holding ``cookies``."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        self.call("Storage.setCookies", cookies=cookies, browserContextId=context)
        target = self.call("Target.createTarget", url="about:blank", browserContextId=context)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session)
        self.call("Runtime.enable", session)
        return Tab(self, session)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.stop()
            shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def goto(self, url: str) -> None:
        self.browser.events = [e for e in self.browser.events if e.get("method") != "Page.loadEventFired"]
        self.browser.call("Page.navigate", self.session, url=url)
        self.browser.wait_event("Page.loadEventFired", self.session)

    def js(self, expression: str, timeout: float = 15.0) -> Any:
        """The value of ``expression`` (awaited when a promise); a thrown error fails the test."""
        result = self.browser.call(
            "Runtime.evaluate", self.session, timeout=timeout,
            expression=expression, awaitPromise=True, returnByValue=True,
        )  # fmt: skip
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait(self, test: str, what: str, ms: int = 5000) -> Any:
        """Await a JavaScript condition (an expression), re-checked at every DOM change, bounded."""
        return self.js(f"({WAIT_JS})(() => ({test}), {json.dumps(what)}, {ms})", timeout=ms / 1000 + 5)

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors so far."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(event["params"]["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
        return found
