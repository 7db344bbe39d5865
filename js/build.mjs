// Generates dist/telegraphy.global.js (a classic <script> defining ONE global, `Telegraphy`) from the
// ES module telegraphy.js, without a bundler: strip the `export` keywords, wrap in a function.
// `node build.mjs` writes it and the copy the Django app ships (python/telegraphy/static/telegraphy/);
// `node build.mjs --check` fails when either is out of date.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
export const SOURCE = here("./telegraphy.js");
export const TARGET = here("./dist/telegraphy.global.js");
export const DJANGO_COPY = here("../python/telegraphy/static/telegraphy/telegraphy.js");

export function render(source) {
  const body = source.replace(/^export (?=(?:async )?(?:function|class|const|let) )/gm, "");
  const left = body.match(/^\s*export\b.*$/m);
  if (left) throw new Error(`build.mjs: unsupported export form: ${left[0].trim()}`);
  if (/^\s*import\b/m.test(body)) throw new Error("build.mjs: telegraphy.js must not import anything");
  return (
    "/* telegraphy-client: generated from telegraphy.js by build.mjs; do not edit. */\n" +
    "(function (global) {\n" +
    '  "use strict";\n' +
    body +
    "  global.Telegraphy = Telegraphy;\n" +
    '})(typeof globalThis !== "undefined" ? globalThis : this);\n'
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = render(readFileSync(SOURCE, "utf8"));
  if (process.argv.includes("--check")) {
    for (const target of [TARGET, DJANGO_COPY]) {
      let current = "";
      try {
        current = readFileSync(target, "utf8");
      } catch {}
      if (current !== out) {
        console.error(`${target} is out of date: run \`node build.mjs\` in js/`);
        process.exit(1);
      }
    }
  } else {
    mkdirSync(here("./dist"), { recursive: true });
    writeFileSync(TARGET, out);
    writeFileSync(DJANGO_COPY, out);
  }
}
