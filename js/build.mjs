// Bundles the client (src/) with esbuild into the files users load:
// - dist/telegraphy.mjs: the ES module (the package's entry; src/index.js),
// - dist/telegraphy.global.js: a classic <script> defining ONE global, `Telegraphy` (src/global.js),
// - python/telegraphy/static/telegraphy/telegraphy.js: the same <script> build, shipped by the Django app.
// `node build.mjs` writes them; `node build.mjs --check` fails when one is out of date (esbuild's output is
// deterministic for a given esbuild version, which package-lock.json pins).
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
export const ESM = here("./dist/telegraphy.mjs");
export const GLOBAL = here("./dist/telegraphy.global.js");
export const DJANGO_COPY = here("../python/telegraphy/static/telegraphy/telegraphy.js");

const banner = "/* telegraphy-client: bundled from src/ by build.mjs (esbuild); do not edit. */";

async function bundle(entry, format) {
  const result = await esbuild.build({
    absWorkingDir: here("."), // the paths esbuild writes in comments: the same from any directory
    entryPoints: [entry],
    bundle: true,
    write: false,
    format,
    platform: "neutral",
    target: "es2022",
    charset: "utf8",
    legalComments: "none",
    banner: { js: banner },
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}

/** Each output file -> its text, as the sources build it now. */
export async function render() {
  const [esm, global] = await Promise.all([bundle("src/index.js", "esm"), bundle("src/global.js", "iife")]);
  return new Map([
    [ESM, esm],
    [GLOBAL, global],
    [DJANGO_COPY, global],
  ]);
}

/** The output files that differ from what the sources build now. */
export async function stale() {
  const out = [];
  for (const [file, text] of await render()) {
    let current = null;
    try {
      current = readFileSync(file, "utf8");
    } catch {}
    if (current !== text) out.push(file);
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes("--check")) {
    const files = await stale();
    for (const file of files) console.error(`${file} is out of date: run \`node build.mjs\` in js/`);
    if (files.length) process.exit(1);
  } else {
    for (const [file, text] of await render()) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
  }
}
