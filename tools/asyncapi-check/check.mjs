// Validates an AsyncAPI document (JSON or YAML) with the official parser, @asyncapi/parser.
// Usage: node check.mjs FILE [--strict]. Prints every diagnostic; exits 1 when there is an error
// (with --strict: a warning too), 2 on bad usage or an unreadable file.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const args = process.argv.slice(2);
const strict = args.includes("--strict");
const files = args.filter((a) => a !== "--strict");
if (files.length !== 1) {
  console.error("usage: node check.mjs FILE [--strict]");
  process.exit(2);
}

let text;
try {
  text = await readFile(files[0], "utf8");
} catch (err) {
  console.error(`cannot read ${files[0]}: ${err.message}`);
  process.exit(2);
}

const names = { [DiagnosticSeverity.Error]: "error", [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info", [DiagnosticSeverity.Hint]: "hint" };
const { document, diagnostics } = await new Parser().parse(text);
for (const d of diagnostics) {
  console.log(`${names[d.severity] ?? d.severity} ${d.code} at /${(d.path ?? []).join("/")}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);
if (!document || errors.length || (strict && warnings.length)) {
  console.log(`invalid: ${errors.length} error(s), ${warnings.length} warning(s)`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channel(s), ` +
  `${warnings.length} warning(s)`);
