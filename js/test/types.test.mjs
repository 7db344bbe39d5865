// telegraphy.d.ts compiles under tsc --strict and describes what README.md shows (test/types/usage.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

test("the TypeScript declarations type-check a usage sample (tsc --strict)", { timeout: 60000 }, async () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const sample = fileURLToPath(new URL("./types/usage.ts", import.meta.url));
  const args = [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "es2022,dom", sample];
  const { code, output } = await new Promise((resolve) =>
    execFile(process.execPath, args, { timeout: 55000 }, (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, output: stdout + stderr })),
  );
  assert.equal(code, 0, output);
});
