// Headless Debian chromium driven by playwright-core (never a browser download), and a place for
// screenshot artifacts.
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));

export async function launchBrowser() {
  if (!existsSync(CHROMIUM_BIN)) {
    throw new Error(`chromium not found at ${CHROMIUM_BIN}: apt-get install -y chromium, or set CHROMIUM_BIN`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    timeout: 30000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-gpu",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** Save a screenshot of page as test-artifacts/<name>.png; returns the path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Collect the page's console errors and uncaught exceptions (a test asserts there are none). */
export function pageProblems(page) {
  const problems = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  return problems;
}
